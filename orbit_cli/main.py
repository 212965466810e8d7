"""The ``orbit`` command's entry point.

The query subcommands (``orbit yields``, ``orbit sql``) only read the lake with
DuckDB, and ``orbit envs`` only reads the env registry, so they run here without
importing Dagster and start in a fraction of a second. Every other subcommand is handed to ``orbit_cli.commands``, which drives
Dagster through the code location (``orbit_assets``).
"""

import argparse
import csv
import importlib
import json
import sys

QUERY_COMMANDS = ("yields", "sql")
LIGHT_COMMANDS = QUERY_COMMANDS + ("envs",)
FORMATS = ["table", "csv", "json"]


def print_table(columns: list[str], rows: list[tuple], fmt: str = "table", out=None) -> None:
    out = out or sys.stdout
    if fmt == "csv":
        writer = csv.writer(out)
        writer.writerow(columns)
        writer.writerows(rows)
        return
    if fmt == "json":
        out.write(json.dumps([dict(zip(columns, r)) for r in rows], default=str, indent=1) + "\n")
        return
    cells = [[("" if v is None else str(v)) for v in r] for r in rows]
    widths = [max([len(c)] + [len(r[i]) for r in cells]) for i, c in enumerate(columns)]
    out.write("  ".join(c.ljust(w) for c, w in zip(columns, widths)).rstrip() + "\n")
    out.write("  ".join("-" * w for w in widths) + "\n")
    for r in cells:
        out.write("  ".join(v.ljust(w) for v, w in zip(r, widths)).rstrip() + "\n")
    out.write(f"({len(rows)} rows)\n")


def query(sql: str, fmt: str = "table", views: bool = True) -> None:
    """Run ``sql`` over the lake (views + ``yields_by_round``) and print the result."""
    from orbit.io.lakefs import lake_root
    from orbit.query import connect

    con = connect(lake_root(), views=views)
    try:
        cur = con.execute(sql)
        columns = [d[0] for d in cur.description] if cur.description else []
        print_table(columns, cur.fetchall(), fmt)
    finally:
        con.close()


def cmd_yields(args) -> int:
    from orbit.query import SUMMARY_SQL

    from orbit.stages.yields import HEADLINE_QUALIFY

    # the headline p (the policy's own samples where a partition has them, else all sources), as the UI, the
    # flywheel report and `make run` show it; --by-source adds every source's row
    where = f" {HEADLINE_QUALIFY}" if not args.by_source else ""
    query(f"{SUMMARY_SQL}{where}", args.format, views=False)
    return 0


READ_ONLY_STATEMENTS = ("SELECT",)  # DuckDB statement types `orbit sql` runs without --write


def write_statements(sql: str) -> list[str]:
    """The DuckDB statement types in ``sql`` that are not read-only queries (COPY, CREATE, ATTACH, ...)."""
    import duckdb

    con = duckdb.connect()
    try:
        types = [s.type.name for s in con.extract_statements(sql)]
    finally:
        con.close()
    return [t for t in types if t not in READ_ONLY_STATEMENTS]


def cmd_sql(args) -> int:
    if not args.write:
        writes = write_statements(args.sql)
        if writes:
            print(f"orbit: `orbit sql` runs read-only statements (SELECT, DESCRIBE, SHOW, SUMMARIZE); this one has "
                  f"{', '.join(dict.fromkeys(writes))}: add --write to run it", file=sys.stderr)
            return 2
    query(args.sql, args.format)
    return 0


def add_query_commands(sub) -> None:
    """The ``yields`` and ``sql`` subparsers (shared with ``orbit_cli.commands``'s full parser)."""
    yields = sub.add_parser("yields", help="print the yield table from DuckDB")
    yields.add_argument("--by-source", action="store_true", help="one row per source (default: the headline row of "
                        "each round x env: source policy where the round sampled a policy, else all)")
    yields.add_argument("--format", choices=FORMATS, default="table")
    yields.set_defaults(func=cmd_yields)

    sql = sub.add_parser("sql", help="run a SQL query over the lake views")
    sql.add_argument("sql")
    sql.add_argument("--format", choices=FORMATS, default="table")
    sql.add_argument("--write", action="store_true",
                     help="also run statements that write (COPY, CREATE, ATTACH, ...); without it only queries run")
    sql.set_defaults(func=cmd_sql)


def add_envs_command(sub) -> None:
    envs = sub.add_parser("envs", help="list the envs: built in, declared in the envs file, and inactive ones")
    envs.add_argument("--format", choices=FORMATS, default="table")
    envs.set_defaults(func=cmd_envs)


def cmd_envs(args) -> int:
    """The env table: name, family, description, source, status. An env the lake holds data of that is
    not declared any more is listed as inactive (its data is kept)."""
    from orbit.envs import envs, envs_file, inactive_envs
    from orbit.io.lakefs import lake_root

    rows = [(spec.name, spec.family, spec.description, spec.source, "active") for spec in envs().values()]
    rows += [(name, "", "not declared any more; its partitions stay in the lake", "", "inactive")
             for name in inactive_envs(lake_root())]
    print_table(["env", "family", "description", "source", "status"], rows, args.format)
    if args.format == "table":
        path = envs_file()
        print(f"envs file: {path}" + ("" if path.exists() else " (none: the built-in envs only)"), file=sys.stderr)
    return 0


def where_looked() -> str:
    """Which setting named the home or lake a command uses."""
    import os

    if os.environ.get("ORBIT_LAKE"):
        return "from ORBIT_LAKE"
    if os.environ.get("ORBIT_HOME"):
        return "from ORBIT_HOME"
    return "the default home ./.orbit: ORBIT_HOME is not set"


def run_query_command(args) -> int:
    """Run a parsed query subcommand; a failing query is reported on stderr with exit code 2."""
    import duckdb

    from orbit.io.lakefs import lake_root

    root = lake_root()
    if not root.is_dir():  # a query reads: it never invents a home (nor writes to one, read-only say)
        print(f"orbit: no Orbit lake at {root} ({where_looked()}); nothing to query. Run this in the project "
              f"folder, or point at a home with ORBIT_HOME=<home> (or at a lake with ORBIT_LAKE=<lake>); "
              f"`orbit run` or `make run` creates one.", file=sys.stderr)
        return 2
    from orbit.query import refresh_report_db

    note = refresh_report_db(root)  # a moved or copied home: <lake>/orbit.duckdb's views follow it (never created)
    if note:
        print(f"orbit: {note}", file=sys.stderr)
    try:
        return args.func(args)
    except duckdb.Error as exc:
        print(f"orbit: query failed: {exc}", file=sys.stderr)
        return 2


def main(argv: list[str] | None = None) -> int:
    from orbit.envs.registry import EnvsFileError

    argv = list(sys.argv[1:] if argv is None else argv)
    try:
        if argv and argv[0] in LIGHT_COMMANDS:
            parser = argparse.ArgumentParser(prog="orbit")
            sub = parser.add_subparsers(dest="command", required=True)
            add_query_commands(sub)
            add_envs_command(sub)
            args = parser.parse_args(argv)
            return args.func(args) if args.command == "envs" else run_query_command(args)
        return importlib.import_module("orbit_cli.commands").main(argv)
    except EnvsFileError as exc:  # a bad envs file: named file, env and key, no traceback
        print(f"orbit: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
