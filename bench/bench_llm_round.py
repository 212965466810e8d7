"""One real-LLM flywheel round on this machine, split into its stages, with the table policy as baseline.

A round of ``orbit flywheel --policy llm`` does: sample the served model (best-of-N games against the
env's opponent, verified in the loop), verify every sample again (the verified_samples stage), generate
the env's own self-play winners, train (LoRA SFT with TRL in the tool venv: load, steps, GGUF export) on
the round's passed conversations, and serve the new GGUF with llama.cpp. This bench runs exactly those
engine calls (no Dagster) for one env and prints the wall time of each stage, the sampling throughput
(prompt and completion tokens per second, from the usage each record keeps) and the training throughput
(tokens per second over the training steps). Baseline, same run: the embedded table policy sampling the
same tasks and training on the same rows.

    .venv/bin/python bench/bench_llm_round.py [--env tic_tac_toe] [--tasks 6] [--best-of 2] [--max-examples 12]

Needs the tool venvs and the model (``make llm-tools``); skipped (exit 0) without them.
"""

import argparse
import json
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import Row, environment_note, print_table, scratch_dir  # noqa: E402


def usage_of(records) -> dict:
    """Requests and tokens the policy used, from each record's metadata (``usage``)."""
    total = {"calls": 0, "prompt_tokens": 0, "completion_tokens": 0}
    for r in records:
        usage = json.loads(r["metadata"] or "{}").get("usage") or {}
        for k in total:
            total[k] += int(usage.get(k) or 0)
    return total


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--env", default="tic_tac_toe")
    ap.add_argument("--tasks", type=int, default=6)
    ap.add_argument("--best-of", type=int, default=2)
    ap.add_argument("--max-examples", type=int, default=12)
    ap.add_argument("--max-tokens", type=int, default=16)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--keep", help="keep the scratch folder here")
    args = ap.parse_args()

    import pyarrow as pa

    from orbit.envs import GenerationRequest, env_spec, family_of
    from orbit.io.keys import round_base_seed
    from orbit.policies.table_policy import TablePolicy
    from orbit.policies.uri import load_policy
    from orbit.stages.generate import SamplingPlan, run_sampling
    from orbit.training.llm import (LLMTrainSettings, prepare_examples, run_trainer, serve_base, serve_gguf,
                                    stop_all_servers)
    from orbit.stages.verify import verify_record

    spec = env_spec(args.env)
    family = family_of(spec)
    verifier = family.verifier(spec)
    request = GenerationRequest(env=spec, round_key="r0000", num_tasks=args.tasks, samples_per_task=args.best_of,
                                base_seed=round_base_seed(0))
    settings = LLMTrainSettings(max_examples=args.max_examples, max_length=640, threads=args.threads,
                                envs=(args.env,))
    try:
        settings.resolved_python(), settings.resolved_base()
    except FileNotFoundError as exc:  # like bench_model: nothing to measure without the tools
        print(f"bench_llm_round: skipped ({exc})")
        return 0
    work, cleanup = scratch_dir("orbit-bench-llm-", args.keep)
    ckpts = work / "checkpoints"
    rows: list[Row] = []
    try:
        t0 = time.perf_counter()
        base = serve_base(ckpts, settings)
        serve_base_s = time.perf_counter() - t0

        policy = load_policy(base["policy"], max_tokens=args.max_tokens, temperature=1.0, concurrency=1,
                             timeout_s=300.0, constrained="json_object")
        t0 = time.perf_counter()
        records, stats = run_sampling(request, family, verifier, spec.pass_threshold, policy,
                                      SamplingPlan(best_of=args.best_of))
        sample_s = time.perf_counter() - t0
        policy.close()
        usage = usage_of(records)

        table = TablePolicy()
        t0 = time.perf_counter()
        table_records, table_stats = run_sampling(request, family, verifier, spec.pass_threshold, table,
                                                  SamplingPlan(best_of=args.best_of))
        table_sample_s = time.perf_counter() - t0

        t0 = time.perf_counter()
        verdicts = [verify_record(r, verifier, spec.pass_threshold) for r in records]
        verify_s = time.perf_counter() - t0

        t0 = time.perf_counter()
        selfplay = [row for batch in family.generate(request) for row in pa.Table.from_batches([batch]).to_pylist()]
        selfplay_s = time.perf_counter() - t0
        sp_passed = [r for r in selfplay if verify_record(r, verifier, spec.pass_threshold)[1]]
        passed = [r for r, (_, ok, _) in zip(records, verdicts) if ok] + sp_passed

        examples, counts = prepare_examples([{"messages": r["messages"]} for r in passed], [args.env],
                                            args.max_examples)
        t0 = time.perf_counter()
        train = run_trainer(examples, settings.resolved_base(), ckpts / "smollm2-r0001", settings)
        train_s = time.perf_counter() - t0
        t0 = time.perf_counter()
        TablePolicy.train([{**r, "passed": True} for r in passed], name="bench")
        table_train_s = time.perf_counter() - t0

        t0 = time.perf_counter()
        serve_gguf(ckpts / "smollm2-r0001" / "model.gguf", ckpts, "r0001", "smollm2-r0001", settings)
        serve_s = time.perf_counter() - t0

        total = sample_s + verify_s + selfplay_s + train_s + serve_s
        p = stats.passes / stats.attempts if stats.attempts else 0.0
        rows += [
            Row(f"sample: {stats.attempts} LLM games ({usage['calls']} requests), p = {p:.3f}", sample_s, "s",
                baseline=table_sample_s, ratio=sample_s / table_sample_s if table_sample_s else None,
                note="baseline: the table policy on the same tasks"),
            Row("sampling: prompt tokens per second", usage["prompt_tokens"] / sample_s if sample_s else None, "tok/s"),
            Row("sampling: completion tokens per second", usage["completion_tokens"] / sample_s if sample_s else None,
                "tok/s"),
            Row(f"verify: {len(records)} samples", verify_s, "s"),
            Row(f"self-play generation: {len(selfplay)} games", selfplay_s, "s"),
            Row(f"train: {train['examples']} conversations, {train['steps']} steps (wall, incl. load+export)",
                train_s, "s", baseline=table_train_s, ratio=train_s / table_train_s if table_train_s else None,
                note="baseline: training the table policy on the same rows"),
            Row("train: model load (GGUF dequantized into torch)", train["load_seconds"], "s"),
            Row("train: steps", train["train_seconds"], "s"),
            Row("train: GGUF export", train["export_seconds"], "s"),
            Row("train: tokens per second (forward+backward)", train["tokens_per_s"], "tok/s"),
            Row("serve: llama.cpp ready with the new GGUF", serve_s, "s", baseline=serve_base_s,
                note="baseline: the base Q4_1 GGUF"),
            Row("round total (sample+verify+self-play+train+serve)", total, "s"),
        ]
        print_table(f"One real-LLM round on {args.env} (SmolLM2-135M, LoRA r={settings.lora_r}, "
                    f"{args.threads} threads)", rows,
                    notes=[environment_note(), f"SFT rows: {json.dumps(counts)}",
                           f"train: loss {train['loss_first']:.3f} -> {train['loss_last']:.3f}, "
                           f"{train['tokens']} tokens, GGUF {train['gguf_bytes'] / 1e6:.0f} MB ({train['out_type']})",
                           f"table policy p on the same tasks: "
                           f"{table_stats.passes / table_stats.attempts if table_stats.attempts else 0:.3f}"])
    finally:
        stop_all_servers(ckpts)
        cleanup()
    return 0


if __name__ == "__main__":
    sys.exit(main())
