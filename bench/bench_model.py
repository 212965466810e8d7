"""A real model behind a real server: Orbit's client overhead and the untrained model's p per game env.

SmolLM2-135M-Instruct (the GGUF of ``make test-model``) served by llama-cpp-python on 127.0.0.1.
Skipped (exit 0) when the tool venv or the model file is absent: run ``make test-model`` once.

1. Throughput: the same game-turn prompts (same seeds, so the same answers and token counts)
   through Orbit's ``EndpointPolicy`` + ``run_many`` and through a bare ``openai`` client loop,
   in alternating blocks; requests/s and completion tokens/s, ratio Orbit / bare (goal >= 0.9x).
   llama-cpp-python serves one request at a time, so both run one request at a time.
2. p of the untrained model per game env against the random opponent, with constrained
   decoding (``json_object``: the move is drawn among the legal IDs) and without (``off``: the
   model must write a parseable legal ID by itself), through Orbit's rejection sampling.

    .venv/bin/python bench/bench_model.py [--quick]
"""

import argparse
import asyncio
import json
import os
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import _common as C  # noqa: E402

from orbit.policies.llama_server import DEFAULT_PYTHON, PYTHON_ENV, TOOL_CHAT_FORMAT, start_llama_server  # noqa: E402

GGUF = Path(os.environ.get("ORBIT_TEST_GGUF") or C.REPO / ".tools" / "models" / "SmolLM2-135M-Instruct.Q4_1.gguf")
ALIAS = "smollm2"
GAMES = ["tic_tac_toe", "kuhn_poker", "leduc_poker", "connect_four"]
MAX_TOKENS = 48


def game_prompts(count: int) -> list[list[dict]]:
    """First-move prompts of ``count`` tic-tac-toe / kuhn poker tasks."""
    from orbit.envs import GenerationRequest, env_spec, family_of
    from orbit.envs.openspiel.bots import make_bot
    from orbit.envs.openspiel.match import match_steps
    from orbit.envs.openspiel.tasks import load_game

    prompts = []
    for env in ("tic_tac_toe", "kuhn_poker"):
        spec = env_spec(env)
        request = GenerationRequest(env=spec, round_key="r0000", num_tasks=count, samples_per_task=1)
        for _, task in family_of(spec).policy_tasks(request):
            steps = match_steps(task, make_bot({"kind": "random"}, load_game(task), 1), 1)
            prompts.append(list(next(steps).messages))
    return prompts[:count]


def orbit_block(url: str, prompts: list, seeds: range) -> tuple[float, int, int]:
    from orbit.policies.base import Decoding
    from orbit.policies.endpoint import EndpointPolicy, Request, run_many

    policy = EndpointPolicy(url, ALIAS, concurrency=1, timeout_s=300, constrained="off")
    requests = [Request(prompts[i % len(prompts)], seed=i, decoding=Decoding(max_tokens=MAX_TOKENS)) for i in seeds]

    async def go():
        try:
            return await run_many(policy, requests, concurrency=1)
        finally:
            await policy.aclose()

    turns, stats = asyncio.run(go())
    assert stats.failures == 0, stats.failure_reasons
    return stats.seconds, stats.requests, stats.completion_tokens


def bare_block(url: str, prompts: list, seeds: range) -> tuple[float, int, int]:
    import openai

    client = openai.OpenAI(base_url=url, api_key="EMPTY", timeout=300, max_retries=0)
    tokens = 0
    t0 = time.perf_counter()
    for i in seeds:
        reply = client.chat.completions.create(model=ALIAS, messages=prompts[i % len(prompts)], temperature=1.0,
                                               top_p=1.0, max_tokens=MAX_TOKENS, seed=i)
        tokens += reply.usage.completion_tokens
    seconds = time.perf_counter() - t0
    client.close()
    return seconds, len(seeds), tokens


def throughput(url: str, requests: int, blocks: int) -> list[C.Row]:
    prompts = game_prompts(8)
    bare_block(url, prompts, range(0, 4))  # warm-up: the first prompts fill the server's cache
    orbit_block(url, prompts, range(0, 4))
    totals = {"orbit": [0.0, 0, 0], "bare": [0.0, 0, 0]}
    per = requests // blocks
    for b in range(blocks):
        seeds = range(100 + b * per, 100 + (b + 1) * per)
        order = [("orbit", orbit_block), ("bare", bare_block)]
        for name, fn in (order if b % 2 == 0 else order[::-1]):
            s, n, t = fn(url, prompts, seeds)
            totals[name] = [totals[name][0] + s, totals[name][1] + n, totals[name][2] + t]
    (os_, on, ot), (bs, bn, bt) = totals["orbit"], totals["bare"]
    same = "same completion tokens" if ot == bt else f"completion tokens differ: orbit {ot}, bare {bt}"
    rps, brps = on / os_, bn / bs
    tps, btps = ot / os_, bt / bs
    return [
        C.Row("requests/s through Orbit (vs bare openai loop)", rps, "req/s", brps, rps / brps, ">= 0.9x",
              rps / brps >= 0.9, note=f"{on} requests each, {blocks} alternating blocks, {same}"),
        C.Row("completion tokens/s through Orbit (vs bare)", tps, "tok/s", btps, tps / btps, ">= 0.9x", tps / btps >= 0.9),
    ]


def pass_rates(url: str, tasks: int, games: list[str]) -> tuple[list[C.Row], list[str]]:
    from orbit.envs import GenerationRequest, env_spec, family_of
    from orbit.policies.endpoint import EndpointPolicy
    from orbit.stages.generate import SamplingPlan, run_sampling
    from orbit.stages.verify import verify_record

    rows, notes = [], []
    for env in games:
        spec = env_spec(env)
        family = family_of(spec)
        request = GenerationRequest(env=spec, round_key="r0000", num_tasks=tasks, samples_per_task=1,
                                    options={"opponent": {"kind": "random"}})
        verifier = family.verifier(spec)
        figures = {}
        for mode in ("json_object", "off"):
            policy = EndpointPolicy(url, ALIAS, concurrency=1, timeout_s=300, constrained=mode)
            t0 = time.perf_counter()
            records, stats = run_sampling(request, family, verifier, spec.pass_threshold, policy,
                                          SamplingPlan(best_of=1, concurrency=1))
            reasons: dict[str, int] = {}
            for record in records:
                for reason in verify_record(record, verifier, spec.pass_threshold)[2]:
                    reasons[reason] = reasons.get(reason, 0) + 1
            figures[mode] = stats.passes / stats.attempts
            notes.append(f"{env} {mode}: p = {stats.passes}/{stats.attempts}, {stats.accounting.requests} requests, "
                         f"{time.perf_counter() - t0:.0f}s, failure reasons {json.dumps(reasons, sort_keys=True)}")
        rows.append(C.Row(f"p {env} constrained (vs unconstrained)", figures["json_object"], "", figures["off"],
                          None, "p > 0", figures["json_object"] > 0,
                          note=f"{tasks} matches per mode against the random opponent"))
    return rows, notes


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--quick", action="store_true", help="small sizes")
    ap.add_argument("--tasks", type=int, help="matches per game env and mode (default 6; quick 3)")
    ap.add_argument("--requests", type=int, help="throughput requests per side (default 24; quick 8)")
    args = ap.parse_args(argv)
    python = Path(os.environ.get(PYTHON_ENV) or DEFAULT_PYTHON)
    if not python.exists() or not GGUF.is_file():
        print(f"bench_model: skipped (no llama.cpp tool venv at {python} or no model at {GGUF}; "
              "run `make test-model` once)")
        return
    quick = args.quick or bool(os.environ.get("ORBIT_BENCH_QUICK"))
    with start_llama_server(GGUF, alias=ALIAS, chat_format=TOOL_CHAT_FORMAT, n_ctx=4096, python=python) as server:
        rows = throughput(server.url, requests=args.requests or (8 if quick else 24), blocks=2 if quick else 4)
        p_rows, notes = pass_rates(server.url, tasks=args.tasks or (3 if quick else 6),
                                   games=GAMES[:2] if quick else GAMES)
    C.print_table("real model (SmolLM2-135M Q4_1, llama-cpp-python, 1 request at a time)", rows + p_rows,
                  notes + [f"{C.environment_note()}; server threads: half the CPUs"])


if __name__ == "__main__":
    main()
