"""Near-duplicate trajectories: Orbit's dedup stage against datatrove's MinHash dedup, same corpus, same run.

    .venv/bin/python bench/bench_dedup.py                  # 10k trajectories, RSS at 1M rows (~2 min)
    .venv/bin/python bench/bench_dedup.py --quick          # 4k trajectories, RSS at 200k rows
    .venv/bin/python bench/bench_dedup.py --rss-rows 10000000    # peak RSS of the clusterer at 10M rows

The corpus: chat trajectories with a long shared system prompt, planted near-duplicate groups
(one assistant text and 1-3 edits of it of a known size: 1%, 2% and 4% of its words
substituted, inserted or deleted), planted *distinct* pairs that share a long board rendering in
the user turn (boilerplate) but not their assistant turns, and singletons. Recall is the share of
planted duplicate pairs that end in one cluster; precision the share of clustered pairs that are
planted duplicates.

Orbit: ``orbit.stages.dedup`` from the Arrow rows (trajectory keys, assistant-turn shingles, rensa
MinHash, the spilling LSH clusterer), 14 bands x 8 rows, word 5-grams. datatrove 0.10.1 (pinned,
bench-only): its own ``MinhashDedupSignature`` -> ``MinhashDedupBuckets`` (one task per bucket) ->
``MinhashDedupCluster`` -> ``MinhashDedupFilter`` run in this process on the same documents with
the same ``MinhashConfig(n_grams=5, num_buckets=14, hashes_per_bucket=8)``, once on the whole
trajectory text (how a peer pipeline dedups documents) and once on the assistant turns alone (the
same text Orbit hashes). Rendering the documents is not timed for datatrove.

Peak RSS is measured in a child process: the clusterer fed stored signatures' band hashes (what
the cumulative training set does: old rows are never rehashed) at ``--rss-rows`` rows, and the whole
stage from records at a smaller size.
"""

import argparse
import json
import random
import sys
import tempfile
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import Row, environment_note, metric, now, peak_rss_self_mb, print_table, run_child, save_metrics  # noqa: E402

EDIT_SIZES = (0.01, 0.02, 0.04)


# ------------------------------------------------------------------------------------------------ corpus

def _word(i: int) -> str:
    """A letters-only pseudo-word (datatrove's text normalisation folds digits: "w12" and "w34" would be one word)."""
    letters = "bcdfghjklmnpqrstvwxz"
    out = ""
    while True:
        out += letters[i % 20] + "aeiou"[(i // 20) % 5]
        i //= 100
        if not i:
            return out


def _words(rng: random.Random, vocab: list[str], n: int) -> list[str]:
    return [vocab[int(rng.paretovariate(1.2)) % len(vocab)] if rng.random() < 0.3 else rng.choice(vocab)
            for _ in range(n)]


def _edit(rng: random.Random, words: list[str], vocab: list[str], fraction: float) -> list[str]:
    out = list(words)
    for _ in range(max(1, round(fraction * len(words)))):
        i = rng.randrange(len(out))
        op = rng.random()
        if op < 0.5:
            out[i] = rng.choice(vocab)
        elif op < 0.75:
            out.insert(i, rng.choice(vocab))
        elif len(out) > 1:
            del out[i]
    return out


def corpus(n: int, seed: int = 0) -> tuple[list[dict], list[int], dict]:
    """(records, planted group per record (-1: none), description). Records are plain chat dicts."""
    rng = random.Random(seed)
    vocab = [_word(i) for i in range(20_000)]
    system = " ".join(_words(rng, vocab, 250))
    records, groups, info = [], [], {"groups": 0, "group_rows": 0, "distinct_pairs": 0, "singletons": 0,
                                     "by_edit": {str(e): 0 for e in EDIT_SIZES}}
    edits_of: list[float | None] = []

    def add(assistant: list[str], user: str, group: int, edit: float | None) -> None:
        cut = sorted(rng.sample(range(1, len(assistant)), k=min(2, len(assistant) - 1)))
        turns = [" ".join(assistant[a:b]) for a, b in zip([0] + cut, cut + [len(assistant)])]
        messages = [{"role": "system", "content": system}, {"role": "user", "content": user}]
        for k, t in enumerate(turns):
            messages.append({"role": "assistant", "content": t})
            if k < len(turns) - 1:
                messages.append({"role": "user", "content": "Continue."})
        i = len(records)
        records.append({"record_id": f"{i:012d}", "env": "bench", "task_id": f"t{i}", "messages": messages,
                        "metadata": "{}", "tools": None, "score": 1.0})
        groups.append(group)
        edits_of.append(edit)

    g = 0
    while len(records) < n:
        kind = rng.random()
        if kind < 0.3:  # a planted near-duplicate group
            base = _words(rng, vocab, rng.randrange(80, 220))
            edit = EDIT_SIZES[g % len(EDIT_SIZES)]
            size = rng.randrange(2, 5)
            for k in range(size):  # the base text and edits of it (two edits of it differ by about twice as much)
                add(base if k == 0 else _edit(rng, base, vocab, edit), " ".join(_words(rng, vocab, 40)), g, edit)
            info["groups"] += 1
            info["group_rows"] += size
            info["by_edit"][str(edit)] += 1
            g += 1
        elif kind < 0.6:  # a distinct pair sharing a long board rendering (boilerplate)
            board = " ".join(_words(rng, vocab, 300))
            for _ in range(2):
                add(_words(rng, vocab, rng.randrange(60, 140)), board, -1, None)
            info["distinct_pairs"] += 1
        else:
            add(_words(rng, vocab, rng.randrange(60, 220)), " ".join(_words(rng, vocab, 40)), -1, None)
            info["singletons"] += 1
    info["edits"] = edits_of
    return records, groups, info


def pair_scores(clusters: np.ndarray, groups: list[int], edits: list) -> dict:
    """Pairwise recall/precision of predicted clusters against the planted groups."""
    from collections import Counter, defaultdict

    groups = np.asarray(groups)
    planted = Counter(int(x) for x in groups if x >= 0)
    true_pairs = sum(c * (c - 1) // 2 for c in planted.values())
    members = defaultdict(list)
    for i, c in enumerate(clusters):
        members[int(c)].append(i)
    pred_pairs = hit = 0
    hit_by_edit: Counter = Counter()
    for rows in members.values():
        if len(rows) < 2:
            continue
        pred_pairs += len(rows) * (len(rows) - 1) // 2
        by_group = Counter(int(groups[i]) for i in rows if groups[i] >= 0)
        for grp, c in by_group.items():
            hit += c * (c - 1) // 2
            first = next(i for i in rows if groups[i] == grp)
            hit_by_edit[edits[first]] += c * (c - 1) // 2
    pairs_by_edit: Counter = Counter()
    seen = set()
    for i, grp in enumerate(groups):
        if grp >= 0 and grp not in seen:
            seen.add(grp)
            pairs_by_edit[edits[i]] += planted[int(grp)] * (planted[int(grp)] - 1) // 2
    return {"recall": hit / true_pairs if true_pairs else float("nan"),
            "precision": hit / pred_pairs if pred_pairs else 1.0,
            "pred_pairs": pred_pairs, "true_pairs": true_pairs,
            "recall_by_edit": {str(e): hit_by_edit[e] / pairs_by_edit[e] for e in EDIT_SIZES if pairs_by_edit[e]}}


# ------------------------------------------------------------------------------------------------- orbit

def run_orbit(records: list[dict]) -> tuple[np.ndarray, float]:
    """Cluster of each record (the position of the row kept for it) and the seconds it took, from Arrow rows."""
    import pyarrow as pa

    from orbit.io.schema import MESSAGE_TYPE
    from orbit.stages.dedup import Clusterer, dedup_columns, family_hooks, minhash_matrix, ranking

    table = pa.Table.from_pylist(
        [{**r, "messages": [{"role": m["role"], "content": m["content"]} for m in r["messages"]]} for r in records],
        schema=pa.schema([("record_id", pa.string()), ("env", pa.string()), ("task_id", pa.string()),
                          ("messages", pa.list_(MESSAGE_TYPE)), ("metadata", pa.string()), ("tools", pa.string()),
                          ("score", pa.float64())]))
    family_hooks("bench")  # the env registry's one-time import, paid by the first partition of a process
    t0 = now()
    ranks = ranking(table)
    clusterer = Clusterer()
    for lo in range(0, table.num_rows, 8192):
        part = table.slice(lo, 8192)
        keys, minhash = dedup_columns(part)
        sig, valid = minhash_matrix(minhash)
        clusterer.add_signatures(ranks[lo:lo + part.num_rows], keys, sig, valid)
    status, root, _ = clusterer.finish()
    return root, now() - t0


def signature_libraries(records: list[dict], limit: int = 2000) -> tuple[float, float]:
    """Signatures per second of rensa (what Orbit uses) and datasketch, the two kept MinHash libraries, on the
    same shingles (word 5-grams of the assistant turns) with 112 permutations."""
    import datasketch

    from orbit.stages.dedup import NUM_PERM, SEED, shingles, signatures

    sets = [shingles(render_assistant(r), "prose") for r in records[:limit]]
    encoded = [[x.encode() for x in s] for s in sets]
    t0 = now()
    signatures(sets)
    rensa_s = now() - t0
    t0 = now()
    for s in encoded:
        m = datasketch.MinHash(num_perm=NUM_PERM, seed=SEED)
        m.update_batch(s)
        m.digest()
    datasketch_s = now() - t0
    return len(sets) / rensa_s, len(sets) / datasketch_s


# ---------------------------------------------------------------------------------------------- datatrove

def render_full(r: dict) -> str:
    return "\n".join(f"{m['role']}: {m['content']}" for m in r["messages"])


def render_assistant(r: dict) -> str:
    return "\n".join(m["content"] for m in r["messages"] if m["role"] == "assistant")


def _import_datatrove_minhash() -> None:
    """Make ``datatrove.pipeline.dedup.minhash`` importable without the ``tokenizers`` package: the
    package's ``__init__`` eagerly imports its exact-substring stages, which need it (a training
    dependency Orbit does not pin). The MinHash module itself, run here, is datatrove's own."""
    import importlib.util
    import types

    if "datatrove.pipeline.dedup" in sys.modules:
        return
    try:
        import datatrove.pipeline.dedup  # noqa: F401  (works where tokenizers is installed)
        return
    except ImportError:
        sys.modules.pop("datatrove.pipeline.dedup", None)
    import datatrove.pipeline  # noqa: F401  (the parent package, imported whole)

    spec = importlib.util.find_spec("datatrove.pipeline")
    package = types.ModuleType("datatrove.pipeline.dedup")
    package.__path__ = [str(Path(spec.submodule_search_locations[0]) / "dedup")]
    sys.modules["datatrove.pipeline.dedup"] = package


def _split_tokenizer():
    from datatrove.utils.word_tokenizers import WordTokenizer

    class SplitTokenizer(WordTokenizer):
        def word_tokenize(self, text: str) -> list[str]:
            return text.split()

        def sent_tokenize(self, text: str) -> list[str]:
            return text.splitlines()

        def span_tokenize(self, text: str) -> list[tuple[int, int]]:
            import re

            return [m.span() for m in re.finditer(r"[^\n]+", text)]

    return SplitTokenizer()


def run_datatrove(texts: list[str], work: Path) -> tuple[np.ndarray, float]:
    """datatrove's four MinHash stages in this process; (cluster per document, seconds)."""
    _import_datatrove_minhash()
    from datatrove.data import Document
    from datatrove.pipeline.dedup.minhash import (MinhashConfig, MinhashDedupBuckets, MinhashDedupCluster,
                                                  MinhashDedupFilter, MinhashDedupSignature)
    from datatrove.utils.hashing import HashConfig

    # datatrove's default xxhash shingle hash fails with the installed xxhash ("Strings must be encoded
    # before hashing"): its other hash, sha1 (64-bit), is used
    config = MinhashConfig(n_grams=5, num_buckets=14, hashes_per_bucket=8, seed=1,
                           hash_config=HashConfig(precision=64, hash_fc="sha1"))
    docs = [Document(text=t, id=str(i)) for i, t in enumerate(texts)]
    t0 = now()
    # datatrove's word tokenizers (English and its whitespace fallback) need spaCy, not installed: it takes
    # any WordTokenizer, and splitting on whitespace gives the same words on this corpus, faster than spaCy
    MinhashDedupSignature(output_folder=str(work / "sigs"), config=config,
                          language=_split_tokenizer()).run(iter(docs), 0, 1)
    for b in range(config.num_buckets):
        MinhashDedupBuckets(input_folder=str(work / "sigs"), output_folder=str(work / "buckets"),
                            config=config).run(None, b, config.num_buckets)
    MinhashDedupCluster(input_folder=str(work / "buckets"), output_folder=str(work / "remove"), config=config,
                        save_cluster_id=True).run(None, 0, 1)
    # the filter sets every document's cluster id (kept or removed) before it drops the removed ones
    final = [Document(text=d.text, id=d.id) for d in docs]
    kept = list(MinhashDedupFilter(input_folder=str(work / "remove"), load_cluster_ids=True).run(iter(final), 0, 1))
    seconds = now() - t0
    clusters = np.arange(len(texts), dtype=np.int64)
    for d in final:
        cluster = d.metadata.get("minhash_cluster_id", -1)
        if cluster is not None and cluster >= 0:
            clusters[int(d.id)] = len(texts) + int(cluster)
    assert len(kept) <= len(final)
    return clusters, seconds


# ------------------------------------------------------------------------------------------------ RSS child

def child_rss(rows: int, mode: str) -> None:
    """Print {"rows", "seconds", "peak_rss_mb", ...} for the clusterer (``bands``) or the whole stage (``records``)."""
    from orbit.stages.dedup import BANDS, Clusterer

    t0 = now()
    rng = np.random.default_rng(0)
    clusterer = Clusterer()
    if mode == "bands":
        batch = 65_536
        for lo in range(0, rows, batch):
            m = min(batch, rows - lo)
            bands = rng.integers(0, 2**63, size=(m, BANDS), dtype=np.uint64)
            dup = rng.random(m) < 0.05  # 5% near duplicates of the row before: one shared band
            bands[1:][dup[1:], 3] = bands[:-1][dup[1:], 3]
            keys = rng.integers(0, 2**63, size=m, dtype=np.uint64)
            exact = rng.random(m) < 0.05  # 5% exact copies
            keys[1:][exact[1:]] = keys[:-1][exact[1:]]
            rank = rng.permutation(m).astype(np.int64) + lo
            clusterer.add(rank, keys, keys ^ np.uint64(7), np.ones(m, bool), bands, np.ones(m, bool))
    else:  # the corpus made 8,192 rows at a time (its generator's dicts would dwarf the stage)
        import pyarrow as pa

        from orbit.io.schema import MESSAGE_TYPE
        from orbit.stages.dedup import dedup_columns, minhash_matrix

        schema = pa.schema([("record_id", pa.string()), ("env", pa.string()), ("messages", pa.list_(MESSAGE_TYPE)),
                            ("metadata", pa.string())])
        for k, lo in enumerate(range(0, rows, 8192)):
            records, _, _ = corpus(min(8192, rows - lo), seed=1000 + k)
            part = pa.Table.from_pylist([{"record_id": f"{k}-{r['record_id']}", "env": r["env"], "metadata": r["metadata"],
                                          "messages": r["messages"]} for r in records], schema=schema)
            del records
            keys, minhash = dedup_columns(part)
            sig, valid = minhash_matrix(minhash)
            clusterer.add_signatures(np.arange(lo, lo + part.num_rows, dtype=np.int64), keys, sig, valid)
    status, root, counts = clusterer.finish()
    print(json.dumps({"rows": rows, "seconds": now() - t0, "peak_rss_mb": peak_rss_self_mb(), **counts.as_dict()}))


# ---------------------------------------------------------------------------------------------------- main

def _quiet_datatrove() -> None:
    try:
        from loguru import logger

        logger.remove()
        logger.add(sys.stderr, level="WARNING")
    except ImportError:
        pass
    import os

    os.environ.setdefault("TQDM_DISABLE", "1")


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--quick", action="store_true", help="small sizes")
    ap.add_argument("--rows", type=int, default=None, help="trajectories in the planted corpus (default 10000)")
    ap.add_argument("--rss-rows", type=int, default=None, help="rows for the clusterer's peak RSS (default 1M)")
    ap.add_argument("--rss-records", type=int, default=None, help="rows for the whole stage's peak RSS (default 50k)")
    ap.add_argument("--child", nargs=2, metavar=("ROWS", "MODE"), help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    if args.child:
        child_rss(int(args.child[0]), args.child[1])
        return 0
    n = args.rows or (4_000 if args.quick else 10_000)
    rss_rows = args.rss_rows or (200_000 if args.quick else 1_000_000)
    rss_records = args.rss_records or (20_000 if args.quick else 50_000)

    from orbit.stages.dedup import PARAMS

    records, groups, info = corpus(n)
    edits = info.pop("edits")
    clusters, orbit_s = run_orbit(records)
    ours = pair_scores(clusters, groups, edits)
    _quiet_datatrove()
    with tempfile.TemporaryDirectory(prefix="orbit-bench-dedup-") as tmp:
        dt_full, dt_full_s = run_datatrove([render_full(r) for r in records], Path(tmp) / "full")
        dt_asst, dt_asst_s = run_datatrove([render_assistant(r) for r in records], Path(tmp) / "assistant")
    full = pair_scores(dt_full, groups, edits)
    asst = pair_scores(dt_asst, groups, edits)
    rate, rate_full, rate_asst = n / orbit_s, n / dt_full_s, n / dt_asst_s

    rensa_rate, datasketch_rate = signature_libraries(records)
    rss_bands, _ = run_child([__file__, "--child", str(rss_rows), "bands"])
    rss_rec, _ = run_child([__file__, "--child", str(rss_records), "records"])

    rows = [
        Row("orbit recall (planted groups)", ours["recall"], "", full["recall"], None,
            ">= datatrove's", ours["recall"] >= full["recall"] - 1e-12,
            note=f"baseline: datatrove on the whole trajectory; by edit size {ours['recall_by_edit']}"),
        Row("orbit precision", ours["precision"], "", full["precision"], None, ">= datatrove's",
            ours["precision"] >= full["precision"] - 1e-12,
            note=f"{ours['pred_pairs']} clustered pairs for {ours['true_pairs']} planted; datatrove "
                 f"{full['pred_pairs']} (distinct pairs sharing a board merged)"),
        Row("orbit rows/s", rate, "rows/s", rate_full, rate / rate_full, ">= 2x", rate >= 2 * rate_full,
            note="orbit from Arrow rows: keys, shingles, rensa MinHash, LSH clusters; datatrove: its 4 stages"),
        Row("vs datatrove on assistant turns: recall", ours["recall"], "", asst["recall"], None, ">= datatrove's",
            ours["recall"] >= asst["recall"] - 1e-12, note=f"datatrove by edit size {asst['recall_by_edit']}"),
        Row("vs datatrove on assistant turns: precision", ours["precision"], "", asst["precision"], None,
            ">= datatrove's", ours["precision"] >= asst["precision"] - 1e-12),
        Row("vs datatrove on assistant turns: rows/s", rate, "rows/s", rate_asst, rate / rate_asst, ">= 2x",
            rate >= 2 * rate_asst),
        Row("MinHash signatures: rensa", rensa_rate, "docs/s", datasketch_rate, rensa_rate / datasketch_rate, "",
            note="baseline: datasketch 2.0 (MinHash.update_batch), same shingles, 112 permutations"),
        Row(f"clusterer peak RSS at {rss_rows:,} rows", rss_bands["peak_rss_mb"], "MiB", None, None,
            "< 1536 MiB" if rss_rows >= 10_000_000 else "", rss_bands["peak_rss_mb"] < 1536 if rss_rows >= 10_000_000 else None,
            note=f"stored band hashes (no rehash), {rss_bands['seconds']:.1f} s; kept {rss_bands['kept']:,}, "
                 f"exact {rss_bands['dropped_exact']:,}, near {rss_bands['dropped_near']:,}"),
        Row(f"whole stage peak RSS at {rss_records:,} rows", rss_rec["peak_rss_mb"], "MiB",
            note=f"records -> keys, MinHash, clusters in {rss_rec['seconds']:.1f} s "
                 f"({rss_records / rss_rec['seconds']:,.0f} rows/s)"),
    ]
    print_table(f"dedup: {n:,} trajectories, {info['groups']} planted groups ({info['group_rows']} rows), "
                f"{info['distinct_pairs']} distinct pairs sharing boilerplate", rows,
                notes=[f"params {PARAMS.describe()}", f"corpus {info}", environment_note()])
    for name, value in [("recall", ours["recall"]), ("precision", ours["precision"]), ("rows_per_s", rate),
                        ("datatrove_full.recall", full["recall"]), ("datatrove_full.precision", full["precision"]),
                        ("datatrove_full.rows_per_s", rate_full), ("datatrove_assistant.recall", asst["recall"]),
                        ("datatrove_assistant.precision", asst["precision"]),
                        ("datatrove_assistant.rows_per_s", rate_asst), ("ratio_rows_per_s_vs_datatrove", rate / rate_full),
                        ("rensa_sigs_per_s", rensa_rate), ("datasketch_sigs_per_s", datasketch_rate),
                        (f"rss_mb_clusterer_{rss_rows}", rss_bands["peak_rss_mb"]),
                        (f"rss_mb_stage_{rss_records}", rss_rec["peak_rss_mb"])]:
        metric(name, value)
    save_metrics("dedup")
    return 0


if __name__ == "__main__":
    sys.exit(main())
