"""A held-out evaluation set per env: fixed items, never trained on, scored every round.

The flywheel's own p (``report.per_round``) is measured on each round's fresh training items; this set
is the same ``n`` items of every env in every round, so a rise of its p is the model getting better at
the task, not at items it was trained on:

* **items**: the env family's own tasks (``policy_tasks``) of the reserved round key ``HELDOUT_ROUND``
  (``r9999``, never a training round) and base seed ``HELDOUT_BASE_SEED``; the same for every round.
* **never trained on**: ``heldout_prompts`` lists the user messages of those items, and the LLM trainer
  (``orbit.training.llm``) skips every training row asking one of them (``skipped.heldout_question``: small
  task spaces repeat questions across rounds).
* **scored**: one sample per item through ``orbit.stages.generate.sample_partition`` (the same rollout,
  constrained decoding and verifier as a round; the verifier recomputes every score from the record),
  at ``temperature`` (default 0: greedy, so p is the model's answer, not a sampling draw).
* **written**: ``<lake>/reports/heldout/<round>.json`` (per env: n, passes, p and its 95% Wilson
  interval, the seconds it took, the reasons of the failures) and the records beside it
  (``<round>-records.jsonl``); a round already evaluated is read back, never redone.

``compare`` sets the last round's p beside the first's: the intervals overlap or not, and a two-sided
two-proportion z test. ``majority_baseline`` (the share of the most common oracle answer) and ``reply_profile``
(the most common replies) say whether a rise is the task or the answer prior (gcd = 1 is common).
"""

import asyncio
import json
import math
import time
from collections import Counter
from pathlib import Path
from typing import Any, Iterable, Mapping

from orbit.envs.base import EnvSpec, GenerationRequest
from orbit.envs.registry import env_spec, family_of
from orbit.io import lake
from orbit.io.keys import validate_round
from orbit.stages.generate import SamplingPlan, sample_partition
from orbit.stages.yields import wilson_interval

HELDOUT_ROUND = "r9999"
HELDOUT_BASE_SEED = 987_654_321
DEFAULT_ITEMS = 100


def heldout_request(spec: EnvSpec, items: int) -> GenerationRequest:
    return GenerationRequest(env=spec, round_key=HELDOUT_ROUND, num_tasks=int(items), samples_per_task=1,
                             base_seed=HELDOUT_BASE_SEED)


def heldout_tasks(spec: EnvSpec, items: int) -> list[tuple[str, Any]]:
    family = family_of(spec)
    if not hasattr(family, "policy_tasks"):
        raise ValueError(f"env {spec.name!r} ({spec.family}) has no policy tasks to hold out")
    return list(family.policy_tasks(heldout_request(spec, items)))


def _question(task: Any) -> str | None:
    question = getattr(task, "question", None)
    if isinstance(question, str):
        return question
    prompt = getattr(task, "prompt", None) or getattr(task, "problem", None)
    return prompt if isinstance(prompt, str) else None


def heldout_prompts(envs: Iterable[str], items: int) -> dict[str, set[str]]:
    """Per env, the questions of its held-out items (what training must never see)."""
    out: dict[str, set[str]] = {}
    for env in envs:
        spec = env_spec(env)
        out[env] = {q for _, task in heldout_tasks(spec, items) if (q := _question(task)) is not None}
    return out


def majority_baseline(env: str, items: int) -> tuple[str | None, float | None]:
    """The most common oracle answer of the env's held-out items and its share: what a policy answering that one
    constant would score (a held-out p at or below it may be the answer prior learned, not the task)."""
    answers = [str(a) for _, task in heldout_tasks(env_spec(env), items)
               if (a := getattr(task, "answer", None)) is not None]
    if not answers:
        return None, None
    answer, count = Counter(answers).most_common(1)[0]
    return answer, count / len(answers)


def reply_profile(lake_root: Path | str, round_: str, top: int = 3) -> dict[str, list[tuple[str, int, int]]]:
    """Per env, the most common held-out replies of a round: (reply, times, passes)."""
    path = heldout_path(lake_root, round_).with_name(f"{validate_round(round_)}-records.jsonl")
    seen: dict[str, Counter] = {}
    passed: dict[str, Counter] = {}
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except OSError:
        return {}
    for line in lines:
        r = json.loads(line)
        seen.setdefault(r["env"], Counter())[str(r["reply"])] += 1
        passed.setdefault(r["env"], Counter())[str(r["reply"])] += bool(r["passed"])
    return {env: [(reply, n, passed[env][reply]) for reply, n in c.most_common(top)] for env, c in seen.items()}


def heldout_path(lake_root: Path | str, round_: str) -> Path:
    return lake.report_file(lake_root, "heldout") / f"{validate_round(round_)}.json"


def read_heldout(lake_root: Path | str, round_: str) -> dict | None:
    try:
        return json.loads(heldout_path(lake_root, round_).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None


def evaluate(lake_root: Path | str, round_: str, policy_uri: str, envs: Iterable[str], items: int = DEFAULT_ITEMS,
             temperature: float = 0.0, max_tokens: int = 64, timeout_s: float = 300.0, log=print) -> dict:
    """Score the policy of round ``round_`` on every env's held-out items (read back when done already)."""
    envs = list(envs)
    done = read_heldout(lake_root, round_)
    if done is not None and done.get("policy") == policy_uri and done.get("items") == items \
            and set(done.get("envs", {})) >= set(envs):
        return done
    from orbit.policies.uri import parse_policy_uri
    from orbit.policies.endpoint import EndpointPolicy

    parsed = parse_policy_uri(policy_uri)
    base_url, model = getattr(parsed, "base_url", None), getattr(parsed, "model", None)
    if not base_url:
        raise ValueError(f"held-out evaluation needs an endpoint policy (openai:<url>#<model>), got {policy_uri!r}")
    result: dict[str, Any] = {"round": round_, "policy": policy_uri, "items": int(items),
                              "temperature": temperature, "heldout_round": HELDOUT_ROUND,
                              "base_seed": HELDOUT_BASE_SEED, "envs": {}}
    records_out = []
    for env in envs:
        spec = env_spec(env)
        family = family_of(spec)
        policy = EndpointPolicy(base_url, model, temperature=temperature, max_tokens=max_tokens, concurrency=1,
                                timeout_s=timeout_s, constrained="json_object")
        t0 = time.perf_counter()
        records, _ = asyncio.run(sample_partition(heldout_request(spec, items), family, family.verifier(spec),
                                                  spec.pass_threshold, policy, SamplingPlan(best_of=1, concurrency=1)))
        seconds = time.perf_counter() - t0
        from orbit.stages.verify import verify_record

        passes, reasons = 0, Counter()
        for record in records:
            score, passed, why = verify_record(record, family.verifier(spec), spec.pass_threshold)
            passes += bool(passed)
            reasons.update(why or (["passed"] if passed else ["failed"]))
            records_out.append({"env": env, "task_id": record["task_id"], "passed": bool(passed), "score": score,
                                "reasons": list(why), "reply": (record["messages"] or [{}])[-1].get("content")})
        n = len(records)
        low, high = wilson_interval(passes, n)
        result["envs"][env] = {"n": n, "passes": passes, "p": passes / n if n else None, "p_low": low,
                               "p_high": high, "seconds": round(seconds, 2), "reasons": dict(reasons)}
        log(f"held-out {round_} {env}: {passes}/{n} = {passes / max(n, 1):.3f} "
            f"[{low:.3f}, {high:.3f}] ({seconds:.0f}s)")
    lake.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in records_out),
                    heldout_path(lake_root, round_).with_name(f"{round_}-records.jsonl"))
    lake.write_text(json.dumps(result, indent=1, sort_keys=True) + "\n", heldout_path(lake_root, round_))
    return result


def two_proportion_z(k1: int, n1: int, k0: int, n0: int) -> tuple[float | None, float | None]:
    """(z, two-sided p-value) of p1 - p0 with the pooled standard error; None without data or variance."""
    if not n0 or not n1:
        return None, None
    pooled = (k0 + k1) / (n0 + n1)
    se = math.sqrt(pooled * (1 - pooled) * (1 / n0 + 1 / n1))
    if se == 0:
        return None, None
    z = (k1 / n1 - k0 / n0) / se
    return z, math.erfc(abs(z) / math.sqrt(2))


def table(lake_root: Path | str, rounds: Iterable[str]) -> list[dict]:
    """Held-out rows per (env, round) for the rounds evaluated so far."""
    rows = []
    for r in rounds:
        done = read_heldout(lake_root, r)
        for env, e in sorted((done or {}).get("envs", {}).items()):
            rows.append({"env": env, "round": r, "n": e["n"], "passes": e["passes"], "p": e["p"],
                         "p_low": e["p_low"], "p_high": e["p_high"], "seconds": e["seconds"]})
    return rows


def compare(rows: list[Mapping[str, Any]]) -> list[dict]:
    """Per env: the first and last evaluated round's p, whether their 95% intervals overlap, and a z test."""
    out = []
    for env in sorted({r["env"] for r in rows}):
        mine = sorted((r for r in rows if r["env"] == env), key=lambda r: r["round"])
        first, last = mine[0], mine[-1]
        z, pval = two_proportion_z(last["passes"], last["n"], first["passes"], first["n"])
        separated = last["p_low"] is not None and first["p_high"] is not None and last["p_low"] > first["p_high"]
        out.append({"env": env, "first_round": first["round"], "p_first": first["p"], "last_round": last["round"],
                    "p_last": last["p"], "rose_non_overlapping": bool(separated and len(mine) > 1),
                    "fell_non_overlapping": bool(len(mine) > 1 and last["p_high"] < first["p_low"]),
                    "z": z, "p_value": pval})
    return out
