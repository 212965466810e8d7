"""The ``orbit`` subcommands that drive Dagster (``run``, ``flywheel``, ``home``, ``round`` ...).

They reach Dagster through the code location (``orbit_assets``); ``orbit yields`` and ``orbit sql``
only query the lake with DuckDB and are defined in ``orbit_cli.main``, the entry point, which runs
them without importing this module or Dagster.
"""

import argparse
import json
import sys

import duckdb

from orbit_cli.main import add_envs_command, add_query_commands, query
from orbit_cli.main import print_table as _print_table
from orbit.io import lake
from orbit.io.home import ensure_home, lake_root
from orbit.query import FLYWHEEL_HEADLINE_SQL, FLYWHEEL_SQL, SUMMARY_SQL  # noqa: F401


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
    query(f"{SUMMARY_SQL} WHERE source = 'all'")
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
    """Round r0000 samples the base SmolLM2 behind llama.cpp; each later round a LoRA-SFT checkpoint of it."""
    from orbit.training.llm import LLMTrainSettings, serve_base, stop_all_servers
    from orbit_assets.runner import run_flywheel
    from resources import resources_for
    from resources.policies import PolicyResource

    settings = LLMTrainSettings(**json.loads(args.llm_json or "{}"))
    if envs:
        settings.envs = tuple(envs)
    resources = resources_for()
    current = resources["policies"]
    flags = {"temperature": args.temperature, "timeout_s": 300.0, "concurrency": args.concurrency or 1,
             "constrained": args.constrained or "json_object"}  # llama-cpp-python: one request at a time, JSON mode
    if args.max_tokens:
        flags["max_tokens"] = args.max_tokens
    resources["policies"] = PolicyResource(**{**{k: getattr(current, k) for k in PolicyResource.model_fields}, **flags})
    checkpoints = resources["settings"].checkpoints_path()
    train_config = {"ops": {"policy_checkpoint": {"config": {
        "trainer": "llm", "llm_json": json.dumps({k: v for k, v in vars(settings).items()
                                                  if k not in ("envs", "extra")} | {"envs": list(settings.envs)})}}}}
    try:
        base = serve_base(checkpoints, settings)
        print(f"serving the base model for r0000: {base['policy']}")
        run_flywheel(args.rounds, envs, sizes=_sizes(args), run_config=config, resources=resources,
                     first_policy=base["policy"], train_config=train_config, checkpoint_prefix=settings.alias)
    finally:
        stopped = stop_all_servers(checkpoints)
        if stopped:
            print(f"stopped the llama.cpp servers of {', '.join(stopped)}")


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

    entries = RoundRegistry(lake_root()).entries()
    _print_table([f.name for f in fields(RoundEntry)], [astuple(e) for e in entries], args.format)
    return 0


def cmd_home(args) -> int:
    import os

    if args.shell:
        print(f"export ORBIT_HOME={os.environ['ORBIT_HOME']}\nexport DAGSTER_HOME={os.environ['DAGSTER_HOME']}\n"
              "export DAGSTER_DISABLE_TELEMETRY=1")
        return 0
    print(f"ORBIT_HOME={os.environ['ORBIT_HOME']}\nDAGSTER_HOME={os.environ['DAGSTER_HOME']}\nlake={lake_root()}")
    return 0


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
    ls = rounds.add_parser("list", help="print the round registry")
    ls.add_argument("--format", choices=["table", "csv", "json"], default="table")
    ls.set_defaults(func=cmd_round_list)

    add_query_commands(sub)
    add_envs_command(sub)
    home = sub.add_parser("home", help="create ORBIT_HOME (lake, DAGSTER_HOME with telemetry off) and print it")
    home.add_argument("--shell", action="store_true",
                      help="print export lines, for the plain dagster CLI: eval \"$(orbit home --shell)\"")
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
