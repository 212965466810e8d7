"""The ``orbit`` subcommands that drive Dagster (``run``, ``flywheel``, ``home``, ``round`` ...).

They reach Dagster through the code location (``orbit_assets``); ``orbit yields`` and ``orbit sql``
only query the lake with DuckDB and are defined in ``orbit_cli.main``, the entry point, which runs
them without importing this module or Dagster.
"""

import argparse
import json
import os
import sys

import duckdb

from orbit_cli.main import add_envs_command, add_query_commands, query
from orbit_cli.main import print_table as _print_table
from orbit.io import lake
from orbit.io.home import EVENT_BATCH_SIZE, ensure_home
from orbit.io.lakefs import lake_path, lake_root
from orbit.query import FLYWHEEL_HEADLINE_SQL, FLYWHEEL_SQL, SUMMARY_SQL  # noqa: F401
from orbit.stages.yields import HEADLINE_QUALIFY


def _policy_resources(args) -> dict | None:
    """Deployment resources with the policy flags applied (None when no flag is given)."""
    flags = {"concurrency": args.concurrency, "constrained": args.constrained,
             "prompt_price_per_mtok": args.prompt_price, "completion_price_per_mtok": args.completion_price}
    flags = {k: v for k, v in flags.items() if v is not None}
    if not flags:
        return None
    from resources import PolicyResource, resources_for

    resources = resources_for()
    current = resources["policies"]
    resources["policies"] = PolicyResource(**{**{k: getattr(current, k) for k in PolicyResource.model_fields}, **flags})
    return resources


def _add_policy_flags(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--concurrency", type=int, help="requests in flight per endpoint (llama-cpp-python: 1)")
    parser.add_argument("--constrained", choices=["auto", "json_schema", "json_object", "off"],
                        help="constrained decoding of game moves (default auto: probe the server)")
    parser.add_argument("--prompt-price", type=float, help="price per million prompt tokens (with --completion-price)")
    parser.add_argument("--completion-price", type=float, help="price per million completion tokens")


def _sizes(args) -> dict:
    """The round size given on the command line (recorded in the registry for new rounds)."""
    sizes = {"num_tasks": getattr(args, "tasks", None), "samples_per_task": getattr(args, "samples_per_task", None),
             "best_of": getattr(args, "best_of", None), "budget": getattr(args, "budget", None)}
    return {k: v for k, v in sizes.items() if v is not None}


def cmd_run(args) -> int:
    from orbit_assets.runner import raw_samples_config, round_keys, run_rounds

    envs = args.envs.split(",") if args.envs else None
    if args.policy:
        from orbit.policies.uri import parse_policy_uri

        parse_policy_uri(args.policy)
    # the flags are the round's size when it is new, and this run's explicit config either way
    config = raw_samples_config(num_tasks=args.tasks, samples_per_task=args.samples_per_task, policy=args.policy,
                                best_of=args.best_of, budget=args.budget)
    run_rounds(round_keys(args.rounds, args.start), envs, run_config=config, policy=args.policy,
               sizes=_sizes(args), resources=_policy_resources(args))
    query(f"{SUMMARY_SQL} {HEADLINE_QUALIFY}")
    return 0


def cmd_flywheel(args) -> int:
    from orbit_assets.runner import run_flywheel

    envs = args.envs.split(",") if args.envs else None
    config = {"ops": {"verified_samples": {"config": {"noise_epsilon": args.noise}}}} if args.noise else None
    if args.policy == "llm":
        _flywheel_llm(args, envs, config)
    else:
        run_flywheel(args.rounds, envs, sizes=_sizes(args), resources=_policy_resources(args), run_config=config)
    print_flywheel_summary()
    return 0


def _flywheel_llm(args, envs, config) -> None:
    """Round r0000 samples the base SmolLM2 behind llama.cpp; each later round a LoRA-SFT checkpoint of it.

    Resumable: a round whose sampling, held-out evaluation or training finished (``reports/flywheel_llm.json``,
    the checkpoint's manifest) is not redone; a round's server is started again on the port it was registered
    with. Each stage's wall time per round is kept in that file and printed at the end."""
    import time
    from pathlib import Path

    from orbit.envs import env_names
    from orbit.flywheel import heldout
    from orbit.flywheel.checkpoints import ManifestMissing, latest_version, read_checkpoint
    from orbit.flywheel.rounds import RoundRegistry
    from orbit.io.keys import round_key, validate_env
    from orbit.policies.llama_server import served_models
    from orbit.policies.uri import parse_policy_uri
    from orbit.training.llm import (GGUF_NAME, SERVERS_DIR, LLMTrainSettings, checkpoint_name, serve_gguf,
                                    stop_all_servers, stop_server)
    from orbit_assets.runner import Runner
    from resources import resources_for
    from resources.policies import PolicyResource

    settings = LLMTrainSettings(**json.loads(args.llm_json or "{}"))
    if envs:
        settings.envs = tuple(envs)
    settings.heldout_items = args.heldout_items  # the trainer skips exactly the items the evaluation scores
    envs = [validate_env(e, env_names()) for e in settings.envs]
    resources = resources_for()
    current = resources["policies"]
    flags = {"temperature": args.temperature, "timeout_s": 300.0, "concurrency": args.concurrency or 1,
             "constrained": args.constrained or "json_object"}  # llama-cpp-python: one request at a time, JSON mode
    if args.max_tokens:
        flags["max_tokens"] = args.max_tokens
    resources["policies"] = PolicyResource(**{**{k: getattr(current, k) for k in PolicyResource.model_fields}, **flags})
    checkpoints = Path(resources["settings"].checkpoints_path())
    lake_root = lake_path(resources["settings"].lake_path())
    train_config = {"ops": {"policy_checkpoint": {"config": {
        "trainer": "llm", "llm_json": json.dumps({k: v for k, v in vars(settings).items()
                                                  if k not in ("envs", "extra")} | {"envs": list(settings.envs)})}}}}
    progress_path = lake.report_file(lake_root, "flywheel_llm.json")
    try:
        progress = json.loads(progress_path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        progress = {"rounds": {}}
    progress["settings"] = {"envs": envs, "rounds": args.rounds, "sizes": _sizes(args), "noise": args.noise,
                            "temperature": args.temperature, "heldout_items": args.heldout_items,
                            "trainer": {k: v for k, v in vars(settings).items() if k != "extra"}}

    def save() -> None:
        lake.write_text(json.dumps(progress, indent=1, sort_keys=True, default=str) + "\n", progress_path)

    def ensure_served(r: str, gguf: Path, alias: str, policy: str | None) -> str:
        """The round's policy URI with a live server behind it (restarted on its registered port)."""
        if policy:
            uri = parse_policy_uri(policy)
            try:
                if uri.model in served_models(uri.base_url, timeout_s=3.0):
                    return policy
            except Exception:  # not up (an interrupted run stopped it): start it again below
                pass
            from urllib.parse import urlsplit

            port = urlsplit(uri.base_url).port or 0
            record = serve_gguf(gguf, checkpoints, r, uri.model, settings, log_dir=log_dir(r, gguf), port=port)
            print(f"{r}: serving {gguf.name} again on {record['url']}")
            return record["policy"]
        record = serve_gguf(gguf, checkpoints, r, alias, settings, log_dir=log_dir(r, gguf))
        return record["policy"]

    def log_dir(r: str, gguf: Path) -> Path:
        """A checkpoint's server logs beside it; the base model's in the checkpoints' .servers folder."""
        return gguf.parent if gguf.parent.parent == checkpoints else checkpoints / SERVERS_DIR

    runner = Runner(None, resources)
    registry = RoundRegistry(lake_root)
    runner.ensure_cfr(envs)
    try:
        for t in range(args.rounds):
            r = round_key(t)
            state = progress["rounds"].setdefault(r, {})
            entry = registry.get(r)
            if t == 0:
                gguf, alias = settings.resolved_base(), f"{settings.alias}-base"
                checkpoint = None
            else:
                # the version the round sampled from (registered), else the newest of its name
                newest = latest_version(checkpoints, checkpoint_name(settings.alias, r))
                name = entry.checkpoint if entry is not None and entry.checkpoint else \
                    (newest.name if newest is not None else checkpoint_name(settings.alias, r))
                checkpoint = read_checkpoint(checkpoints / name)
                gguf, alias = checkpoint.path / GGUF_NAME, checkpoint.name
            registered = entry.policy if entry else (checkpoint.policy if checkpoint else None)
            done_heldout = heldout.read_heldout(lake_root, r)
            if state.get("sampled") and (not args.heldout_items or done_heldout):
                print(f"{r}: sampled and evaluated already (resumed)")
            else:
                policy = ensure_served(r, gguf, alias, registered)
                if entry is None:
                    entry = runner.register(r, policy, _sizes(args), note="flywheel start" if t == 0 else
                                            checkpoint.note, **({} if t == 0 else {
                                                "checkpoint": checkpoint.name, "parent_round": checkpoint.parent_round}))
                if not state.get("sampled"):
                    t0 = time.perf_counter()
                    runner.round(r, envs, config, {"orbit/round": r, "orbit/policy": entry.policy})
                    state.update(sampled=True, sample_verify_export_seconds=round(time.perf_counter() - t0, 1))
                    save()
                if args.heldout_items:
                    t0 = time.perf_counter()
                    result = heldout.evaluate(lake_root, r, entry.policy, envs, args.heldout_items,
                                              temperature=args.heldout_temperature)
                    state["heldout_seconds"] = round(time.perf_counter() - t0, 1)
                    state["heldout"] = {e: f"{v['passes']}/{v['n']}" for e, v in result["envs"].items()}
                    save()
            if t + 1 < args.rounds:
                nxt = round_key(t + 1)
                try:
                    read_checkpoint(checkpoints / checkpoint_name(settings.alias, nxt))
                    print(f"{r}: checkpoint {checkpoint_name(settings.alias, nxt)} trained already (resumed)")
                except ManifestMissing:
                    if not state.get("sampled"):
                        raise RuntimeError(f"{r} is not sampled; cannot train on it")
                    ensure_served(r, gguf, alias, entry.policy if entry else registered)  # the trainer stops it
                    t0 = time.perf_counter()
                    runner.execute("train_job", f"train_job {r}", partition_key=r,
                                   tags={"orbit/round": r, "orbit/policy": entry.policy}, run_config=train_config)
                    manifest = read_checkpoint(checkpoints / checkpoint_name(settings.alias, nxt))
                    train = json.loads((manifest.path / "train_stats.json").read_text(encoding="utf-8"))
                    state.update(train_job_seconds=round(time.perf_counter() - t0, 1), train={
                        k: train.get(k) for k in ("examples", "steps", "epochs", "tokens", "load_seconds",
                                                  "train_seconds", "export_seconds", "tokens_per_s", "loss_first",
                                                  "loss_last")})
                    counts = json.loads((manifest.path / "examples_counts.json").read_text(encoding="utf-8")) \
                        if (manifest.path / "examples_counts.json").is_file() else {}
                    state["examples"] = counts
                    save()
            else:
                stop_server(checkpoints, r)
        runner.report()
    finally:
        save()
        stopped = stop_all_servers(checkpoints)
        if stopped:
            print(f"stopped the llama.cpp servers of {', '.join(stopped)}")
    print_llm_stages(progress)
    if args.heldout_items:
        print_heldout(lake_root, [round_key(t) for t in range(args.rounds)])


def print_llm_stages(progress: dict) -> None:
    cols = ["round", "sample_verify_export_s", "heldout_s", "train_job_s", "load_s", "train_s", "gguf_export_s",
            "examples", "steps", "tokens", "loss_first", "loss_last", "heldout"]
    rows = []
    for r, s in sorted(progress.get("rounds", {}).items()):
        train = s.get("train") or {}
        rows.append((r, s.get("sample_verify_export_seconds"), s.get("heldout_seconds"), s.get("train_job_seconds"),
                     train.get("load_seconds"), train.get("train_seconds"), train.get("export_seconds"),
                     train.get("examples"), train.get("steps"), train.get("tokens"),
                     None if train.get("loss_first") is None else round(train["loss_first"], 3),
                     None if train.get("loss_last") is None else round(train["loss_last"], 3),
                     json.dumps(s.get("heldout")) if s.get("heldout") else None))
    print("\nWall time per stage per round (seconds; training = the train_job: model load, LoRA steps, GGUF "
          "export, serving):")
    _print_table(cols, rows)


def print_heldout(lake_root, rounds: list[str]) -> None:
    from orbit.flywheel import heldout

    rows = heldout.table(lake_root, rounds)
    if not rows:
        return
    print("\nHeld-out p per round (fixed items of every env, never trained on; greedy unless set; 95% Wilson):")
    cols = ["env", "round", "n", "passes", "p", "p_low", "p_high", "seconds"]
    _print_table(cols, [tuple(round(r[c], 3) if isinstance(r[c], float) else r[c] for c in cols) for r in rows])
    cmp_rows = heldout.compare(rows)
    items = max(r["n"] for r in rows)
    for row in cmp_rows:
        row["majority_answer"], row["majority_share"] = heldout.majority_baseline(row["env"], items)
        row["top_replies_last"] = json.dumps(heldout.reply_profile(lake_root, row["last_round"]).get(row["env"]))
    print("\nHeld-out, last round against the first (rose = the intervals do not overlap):")
    cols = ["env", "first_round", "p_first", "last_round", "p_last", "rose_non_overlapping", "fell_non_overlapping",
            "z", "p_value", "majority_answer", "majority_share"]
    _print_table(cols, [tuple(round(r[c], 4) if isinstance(r[c], float) else r[c] for c in cols) for r in cmp_rows])
    print("(majority_share: what always answering the most common oracle answer scores on these items)")
    for row in cmp_rows:
        print(f"{row['env']} {row['last_round']}: most common replies (reply, times, passed): {row['top_replies_last']}")
    from orbit.flywheel.report import heldout_fits

    growth = heldout_fits(rows)
    print("\nHeld-out growth: one constant g fitted on the held-out p per round (95% interval):")
    cols = ["env", "rounds", "p_first", "p_last", "g", "g_low", "g_high", "constant_g_rejected", "p_ceiling_test"]
    _print_table(cols, [tuple(round(r[c], 3) if isinstance(r[c], float) else r[c] for c in cols) for r in growth])
    lake.write_text(json.dumps({"rounds": rows, "compare": cmp_rows, "growth": growth}, indent=1, sort_keys=True)
                    + "\n", lake.report_file(lake_root, "heldout") / "summary.json")


def print_flywheel_summary() -> None:
    """The flywheel's p and g per round, the constant-g fit and its test, and where to look next."""
    from orbit.flywheel.report import per_round

    rounds = per_round(lake_root())
    print("\nThe flywheel's p per round: the policy's own samples (source = policy), not all sources;")
    print("g_round = this round's odds over the previous round's, with 95% intervals:")
    cols = ["env", "source", "round", "attempts", "passes", "pass_rate", "pass_rate_low", "pass_rate_high",
            "g_round", "g_round_low", "g_round_high"]
    _print_table(cols, [tuple(round(v, 3) if isinstance(v, float) else v for v in (r[c] for c in cols))
                        for r in rounds.to_pylist()])
    print("\nOne constant g fitted over all rounds, tested against a ceiling (rejected = the data say no):")
    query(FLYWHEEL_SQL)
    print("\nWhat the data say, per env:")
    query(FLYWHEEL_HEADLINE_SQL)
    print(f"\nNext: the chart {lake.report_file(lake_root(), 'flywheel.png')}; "
          "`make ui` (Dagster UI, http://127.0.0.1:3000: runs, assets, p and g per materialization); "
          "`.venv/bin/orbit yields --by-source` (every source's p, self-play bots included).")


def cmd_policy_serve(args) -> int:
    from orbit.policies.server import serve

    serve(args.checkpoint, args.host, args.port)
    return 0


def cmd_round_add(args) -> int:
    from orbit_assets.rounds import register_round

    entry = register_round(args.policy, note=args.note or "", key=args.round, sizes=_sizes(args) or None)
    print(f"registered {entry.round}: {entry.policy} (size {entry.sizes}); the automation sensor runs it "
          "while the Dagster daemon is up (make ui)")
    return 0


def cmd_round_list(args) -> int:
    from dataclasses import astuple, fields

    from orbit.flywheel.rounds import RoundEntry, RoundRegistry

    from orbit.flywheel.checkpoints import stale_rounds
    from orbit.io.home import orbit_home

    entries = RoundRegistry(lake_root()).entries()
    stale = stale_rounds(entries, orbit_home() / "checkpoints")
    _print_table([f.name for f in fields(RoundEntry)] + ["stale"],
                 [astuple(e) + (stale.get(e.round, ""),) for e in entries], args.format)
    return 0


def cmd_round_remove(args) -> int:
    """Remove a round partition key that holds nothing: an invalid key (``r5`` from the UI), or a valid round
    never registered and without data. Registered rounds and rounds with data are refused (their data stay)."""
    import dagster as dg

    from orbit.flywheel.rounds import RoundRegistry
    from orbit.io.keys import is_round_key
    from orbit_assets.partitions import ROUNDS

    instance = dg.DagsterInstance.get()
    key = args.key
    if not instance.has_dynamic_partition(ROUNDS, key):
        print(f"orbit: no round partition {key!r} in the instance at {os.environ['DAGSTER_HOME']}", file=sys.stderr)
        return 1
    if is_round_key(key):
        if RoundRegistry(lake_root()).get(key) is not None or any(lake_root().glob(f"*/{key}")):
            print(f"orbit: round {key} is registered or has data in the lake; it is kept", file=sys.stderr)
            return 1
    instance.delete_dynamic_partition(ROUNDS, key)
    print(f"removed the round partition key {key!r}")
    return 0


def cmd_home(args) -> int:
    import os

    from orbit.io.home import (InvalidPostgresURL, dagster_home, postgres_storage_url, storage_setting,
                               use_postgres)

    if args.password_env and args.postgres is None:
        print("orbit: --password-env goes with --postgres URL", file=sys.stderr)
        return 2
    if args.postgres is not None or args.sqlite:
        try:
            setting = use_postgres(None if args.sqlite else args.postgres, args.password_env)
        except InvalidPostgresURL as exc:
            print(f"orbit: invalid PostgreSQL URL: {exc}", file=sys.stderr)
            return 2
        if setting is not None and not _check_postgres(args.postgres, setting):
            return 1
    setting = storage_setting()
    if args.shell:
        print(f"export ORBIT_HOME={os.environ['ORBIT_HOME']}\nexport DAGSTER_HOME={os.environ['DAGSTER_HOME']}\n"
              f"export DAGSTER_DISABLE_TELEMETRY=1\nexport DAGSTER_EVENT_BATCH_SIZE={EVENT_BATCH_SIZE}")
        return 0
    if setting is None:
        storage = f"sqlite under {dagster_home()}"
    else:
        storage = postgres_storage_url(setting) + (f" (password from ${setting['password_env']})"
                                                   if setting["password_env"] else "")
    print(f"ORBIT_HOME={os.environ['ORBIT_HOME']}\nDAGSTER_HOME={os.environ['DAGSTER_HOME']}\nlake={lake_root()}\n"
          f"storage={storage}")
    return 0


def _check_postgres(url: str, setting: dict) -> bool:
    """Connect once to the new storage and create Dagster's tables; says what is missing when it cannot.
    The URL's password is used for this check only (never stored or printed)."""
    import os
    from urllib.parse import unquote, urlsplit

    from orbit.io.home import postgres_storage_url

    name = setting["password_env"]
    given = urlsplit(url).password
    given = unquote(given) if given is not None else None  # a URL's %40 is the password's @
    where = postgres_storage_url(setting)
    if name and not os.environ.get(name):
        if given is None:
            print(f"orbit: {where} takes its password from ${name}, which is not set: export it in every "
                  "process of this instance (webserver, daemon, orbit commands)", file=sys.stderr)
            return False
        os.environ[name] = given  # this process only
        print(f"orbit: the password is not stored: export {name}=<password> in every process of this instance "
              "(webserver, daemon, orbit commands)", file=sys.stderr)
    try:
        init_instance()
    except Exception as exc:  # noqa: BLE001 - any driver error: said without a traceback, never with the password
        message = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        for secret in filter(None, (given, os.environ.get(name) if name else None)):
            message = message.replace(secret, "***")
        hint = "" if name else " (if the server wants a password: --password-env NAME, or put it in the URL once)"
        print(f"orbit: dagster.yaml now points at {where}, but connecting failed: {message[:400]}{hint}",
              file=sys.stderr)
        return False
    return True


def _size_flags(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--tasks", type=int, help="tasks per partition (default: each env's own)")
    parser.add_argument("--samples-per-task", type=int, help="generation passes per task")
    group = parser.add_mutually_exclusive_group()
    group.add_argument("--best-of", type=int, help="fixed N policy samples per task")
    group.add_argument("--budget", type=int, help="adaptive best-of-N: total policy samples per partition")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="orbit", description="Orbit: verified synthetic data, round after round.")
    sub = parser.add_subparsers(dest="command", required=True)

    run = sub.add_parser("run", help="materialize rounds through Dagster and print the yield table")
    run.add_argument("--rounds", type=int, default=1, help="number of rounds (default 1)")
    run.add_argument("--start", type=int, default=0, help="first round index (default 0)")
    run.add_argument("--envs", help="comma-separated envs (default: all)")
    run.add_argument("--policy", help="the rounds' policy URI (openai:<base_url>#<model>, embedded:uniform or "
                     "embedded:<checkpoint>); default: the registered one, else the newest checkpoint's")
    _size_flags(run)
    _add_policy_flags(run)
    run.set_defaults(func=cmd_run)

    fly = sub.add_parser("flywheel", help="turn the flywheel: sample, verify, filter, train, next round")
    fly.add_argument("--rounds", type=int, default=5, help="number of rounds (default 5)")
    fly.add_argument("--envs", help="comma-separated envs (default: all)")
    _size_flags(fly)
    fly.add_argument("--policy", choices=["table", "llm"], default="table",
                     help="table: the embedded table policy (fast); llm: SmolLM2-135M fine-tuned with LoRA (TRL) "
                     "each round and served by llama.cpp (needs the tool venvs: make flywheel-llm)")
    fly.add_argument("--llm-json", help="LLM trainer settings as JSON (max_examples, max_length, epochs, "
                     "max_steps, batch_size, learning_rate, lora_r, threads, ...)")
    fly.add_argument("--max-tokens", type=int, help="cap on completion tokens per LLM turn (default: each env's own)")
    fly.add_argument("--temperature", type=float, default=1.0, help="LLM sampling temperature (default 1.0)")
    fly.add_argument("--heldout-items", type=int, default=0, help="--policy llm: fixed held-out items per env, "
                     "scored every round and never trained on (0: none)")
    fly.add_argument("--heldout-temperature", type=float, default=0.0,
                     help="--policy llm: sampling temperature of the held-out evaluation (default 0: greedy)")
    fly.add_argument("--noise", type=float, default=0.0, help="verifier noise: flip each verdict with this "
                     "probability (the kept data are noisy; default 0)")
    _add_policy_flags(fly)
    fly.set_defaults(func=cmd_flywheel)

    policy = sub.add_parser("policy", help="policies").add_subparsers(dest="policy_command", required=True)
    serve = policy.add_parser("serve", help="serve the embedded policy over the OpenAI chat-completions protocol")
    serve.add_argument("--checkpoint", help="table policy checkpoint (Parquet); uniform when omitted")
    serve.add_argument("--host", default="127.0.0.1")
    serve.add_argument("--port", type=int, default=8000)
    serve.set_defaults(func=cmd_policy_serve)

    rounds = sub.add_parser("round", help="the round registry").add_subparsers(dest="round_command", required=True)
    add = rounds.add_parser("add", help="register the next round with its policy (and add its partition)")
    add.add_argument("--policy", help="policy URI of the round (default: the newest checkpoint's, else "
                     "the settings' default policy)")
    add.add_argument("--round", help="round key (default: the next free one)")
    add.add_argument("--note", help="free text kept with the round")
    _size_flags(add)
    add.set_defaults(func=cmd_round_add)
    rm = rounds.add_parser("remove", help="remove a round partition key that holds nothing (an invalid key "
                           "such as r5 added in the UI, or an unregistered round without data)")
    rm.add_argument("key", help="the partition key, exactly as the UI shows it")
    rm.set_defaults(func=cmd_round_remove)
    ls = rounds.add_parser("list", help="print the round registry")
    ls.add_argument("--format", choices=["table", "csv", "json"], default="table")
    ls.set_defaults(func=cmd_round_list)

    add_query_commands(sub)
    add_envs_command(sub)
    home = sub.add_parser("home", help="create ORBIT_HOME (lake, DAGSTER_HOME with telemetry off) and print it")
    home.add_argument("--shell", action="store_true",
                      help="print export lines, for the plain dagster CLI: eval \"$(orbit home --shell)\"")
    storage = home.add_mutually_exclusive_group()
    storage.add_argument("--postgres", metavar="URL",
                         help="keep the Dagster instance in PostgreSQL (postgresql://user@host:5432/db, or a socket: "
                         "postgresql://user@/db?host=/run/postgresql): written into the storage section of "
                         "dagster.yaml; a password is never stored, the yaml reads it from $ORBIT_POSTGRES_PASSWORD")
    storage.add_argument("--sqlite", action="store_true", help="back to SQLite under DAGSTER_HOME (the default)")
    home.add_argument("--password-env", metavar="NAME",
                      help="the environment variable the yaml reads the password from (default "
                      "ORBIT_POSTGRES_PASSWORD when the URL has one; with a URL without one, the password still "
                      "comes from NAME)")
    home.set_defaults(func=cmd_home)
    return parser


def init_instance() -> None:
    """Create the Dagster instance's databases under the init lock (two first commands never race)."""
    import dagster as dg

    from orbit.io.home import init_lock

    with init_lock():
        dg.DagsterInstance.get().get_runs(limit=1)


# commands that write rounds: one at a time per ORBIT_HOME
LOCKED = {"run", "flywheel", "round"}


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    from orbit.io.home import orbit_home
    from orbit_cli.main import where_looked

    created = not orbit_home().exists()
    ensure_home()
    if created:  # a command that creates a home says where
        print(f"orbit: created a new Orbit home at {orbit_home()} ({where_looked()})", file=sys.stderr)
    from orbit.io.home import HomeBusy, home_lock
    from orbit.io.keys import InvalidKey
    from orbit.io.locks import LockPathError
    from orbit.policies.uri import InvalidPolicyURI
    from orbit.flywheel.rounds import RoundError
    from orbit_assets.runner import DaemonRunning, RunFailed

    try:
        if args.command in LOCKED and not (args.command == "round" and args.round_command == "list"):
            with home_lock(args.command):
                init_instance()
                return args.func(args)
        return args.func(args)
    except (RunFailed, InvalidKey, InvalidPolicyURI, HomeBusy, DaemonRunning, RoundError, LockPathError) as exc:  # tracebacks stay in the Dagster run logs
        print(f"orbit: {exc}", file=sys.stderr)
        return 1
    except duckdb.Error as exc:
        print(f"orbit: query failed: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
