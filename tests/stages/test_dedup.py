"""The dedup stage: exact and MinHash clusters, the best of each kept, whatever the input order."""

import json
import random

import numpy as np
import pyarrow as pa
import pytest
from helpers import verified_row, verified_table

from orbit.envs.base import default_dedup_text, default_trajectory_key
from orbit.envs.code.family import CodeFamily
from orbit.envs.liveweb.family import LiveWebFamily
from orbit.envs.openspiel.family import FAMILY as OPENSPIEL
from orbit.io import lake
from orbit.io.schema import FILTERED_SCHEMA, message, tool_call
from orbit.stages import dedup as D
from orbit.stages.export import cumulative_training_set
from orbit.stages.filter import filter_file, filter_table

WORDS = [f"{a}{b}" for a in "bcdfghklmnprstvz" for b in ("a", "e", "i", "o", "u", "ai", "ou")]


def prose(rng: random.Random, n: int) -> list[str]:
    return [rng.choice(WORDS) for _ in range(n)]


def edited(rng: random.Random, words: list[str], k: int) -> list[str]:
    out = list(words)
    for _ in range(k):
        out[rng.randrange(len(out))] = rng.choice(WORDS) + "x"
    return out


def chat_row(task_id: str, assistant: str, *, user: str = "the board", score: float = 1.0, env: str = "math_sample",
             extra_turns: int = 0, round_key: str = "r0000") -> dict:
    row = verified_row(env=env, task_id=task_id, score=score, round_key=round_key)
    row["messages"] = ([message("system", "You are a careful solver. " * 40), message("user", user)]
                       + [message("assistant", "thinking"), message("user", "go on")] * extra_turns
                       + [message("assistant", assistant)])
    return row


def kept_ids(table: pa.Table) -> list[str]:
    return sorted(table.column("task_id").to_pylist())


# ---------------------------------------------------------------------------------------------------- exact

def test_exact_duplicates_of_different_tasks_keep_the_best():
    rows = [chat_row("a", "42", score=1.0), chat_row("b", "42", score=1.0, extra_turns=1), chat_row("c", "41")]
    rows[1]["messages"][1]["content"] = rows[0]["messages"][1]["content"]  # same prompt, same final answer
    out = filter_table(verified_table(rows))
    assert kept_ids(out) == ["a", "c"]  # a: as good, shorter
    a = out.to_pylist()[0]
    assert (a["dropped_exact"], a["dropped_near"]) == (1, 0) and len(a["dedup_key"]) == 32


def test_text_key_normalises_the_final_answer_and_hashes_the_prompt():
    a = chat_row("a", "The  Answer is 42")
    b = chat_row("b", "the answer IS 42 ")
    c = chat_row("c", "the answer is 42", user="another board")
    assert default_trajectory_key(a) == default_trajectory_key(b) != default_trajectory_key(c)


def test_game_key_is_the_game_and_its_history_not_the_task():
    def game(task_id, seed, history, seat=0):
        row = verified_row(task_id=task_id)
        row["metadata"] = json.dumps({"task": {"game": "tic_tac_toe", "params": {}, "seat": seat, "seed": seed},
                                      "history": history})
        return row

    same = [game("t1", 1, [4, 0, 8]), game("t2", 2, [4, 0, 8])]
    assert OPENSPIEL.trajectory_key(same[0]) == OPENSPIEL.trajectory_key(same[1])
    assert OPENSPIEL.trajectory_key(game("t3", 3, [4, 0, 2])) != OPENSPIEL.trajectory_key(same[0])
    assert OPENSPIEL.trajectory_key(game("t4", 1, [4, 0, 8], seat=1)) != OPENSPIEL.trajectory_key(same[0])
    broken = verified_row(task_id="x")
    broken["metadata"] = "not json"
    assert OPENSPIEL.trajectory_key(broken) == default_trajectory_key(broken)


def test_tool_key_is_the_canonical_call_sequence_and_answers():
    def episode(question, args):
        row = verified_row(env="liveweb", task_id=question)
        row["messages"] = [message("system", "browse"), message("user", question),
                           message("assistant", None, tool_calls=[tool_call("c1", "goto", args)]),
                           message("tool", "page", tool_call_id="c1", name="goto"),
                           message("assistant", None, tool_calls=[tool_call("c2", "stop", {"answers": ["7"]})])]
        return row

    a = episode("q1", '{"url": "/a", "tab": 1}')
    b = episode("q2", '{"tab":1,"url":"/a"}')  # other question, same calls: key order and spacing do not count
    c = episode("q3", '{"url": "/b", "tab": 1}')
    assert LiveWebFamily.trajectory_key(a) == LiveWebFamily.trajectory_key(b) != LiveWebFamily.trajectory_key(c)
    assert default_dedup_text(a)[1] == "code"  # JSON: character n-grams


def test_code_family_shingles_characters():
    row = chat_row("a", "def f(x):\n    return x + 1\n")
    assert CodeFamily.dedup_text(row)[1] == "code"


# ----------------------------------------------------------------------------------------------------- near

def test_near_duplicates_cluster_on_assistant_turns_and_boilerplate_does_not():
    rng = random.Random(1)
    base = prose(rng, 120)
    rows = [chat_row(f"dup{i}", " ".join(edited(rng, base, 1)), user=f"question {i}") for i in range(4)]
    board = " ".join(prose(rng, 400))  # a long shared rendering in the prompt
    rows += [chat_row(f"own{i}", " ".join(prose(rng, 60)), user=board) for i in range(6)]
    out = filter_table(verified_table(rows))
    ids = kept_ids(out)
    assert sum(i.startswith("dup") for i in ids) == 1
    assert [i for i in ids if i.startswith("own")] == [f"own{i}" for i in range(6)]
    total = out.to_pylist()
    assert sum(r["dropped_near"] for r in total) == 3 and sum(r["dropped_exact"] for r in total) == 0


def test_the_best_of_a_cluster_is_kept_not_the_first():
    rng = random.Random(2)
    base = prose(rng, 100)
    rows = [chat_row(f"t{i}", " ".join(edited(rng, base, 1)), score=s) for i, s in enumerate([0.5, 0.6, 0.9, 0.7])]
    for order in (rows, rows[::-1]):
        assert kept_ids(filter_table(verified_table(order))) == ["t2"]


def test_short_answers_are_never_near_duplicates():
    rows = [chat_row(f"t{i}", "the answer is 42", user=f"question {i}") for i in range(5)]
    assert kept_ids(filter_table(verified_table(rows))) == [f"t{i}" for i in range(5)]


def test_candidate_probability_is_the_documented_s_curve():
    p = D.PARAMS
    assert (p.bands, p.rows, p.word_ngram) == (14, 8, 5) and abs(p.threshold - 0.719) < 1e-3
    assert "14 bands x 8 rows" in D.dedup_card() and "0.719" in D.dedup_card()
    rng = random.Random(3)
    caught = 0
    for k in range(60):  # Jaccard about 0.9: caught with probability ~0.9996
        words = prose(rng, 200)
        a, _ = D.text_signatures([(" ".join(words), "prose"), (" ".join(edited(rng, words, 2)), "prose")])
        bands = D.band_hashes(a)
        caught += bool((bands[0] == bands[1]).any())
    assert caught >= 58


# ------------------------------------------------------------------------------------------ determinism

def _corpus(seed: int, n: int = 300) -> list[dict]:
    rng = random.Random(seed)
    bases = [prose(rng, 80) for _ in range(20)]
    rows = []
    for i in range(n):
        kind = i % 4
        if kind == 0:
            text = " ".join(edited(rng, bases[i % 20], 2))
        elif kind == 1:
            text = "yes"  # exact duplicates through the text key (same prompt)
        else:
            text = " ".join(prose(rng, 40))
        row = chat_row(f"t{i % 250}", text, score=rng.choice([0.5, 1.0]), user="same" if kind == 1 else f"q{i}")
        row["sample_idx"] = i
        row["record_id"] = f"r{i:05d}"
        rows.append(row)
    return rows


def test_same_rows_whatever_the_input_order(tmp_path):
    rows = _corpus(4)
    expected = None
    for k in range(3):
        shuffled = rows[:]
        random.Random(k).shuffle(shuffled)
        src = lake.write_table(verified_table(shuffled), tmp_path / f"v{k}.parquet")
        counts = filter_file(src, tmp_path / f"f{k}.parquet")
        got = lake.read_table(tmp_path / f"f{k}.parquet")
        assert got.schema == FILTERED_SCHEMA
        assert got.to_pylist() == filter_table(verified_table(shuffled)).to_pylist()
        if expected is None:
            expected = (got.to_pylist(), counts)
            assert counts.dropped_exact > 0 and counts.dropped_near > 0
            assert counts.kept + counts.dropped_exact + counts.dropped_near == counts.candidates
        assert (got.to_pylist(), counts) == expected


def test_clusterer_is_order_free_and_follows_chains():
    rng = np.random.default_rng(5)
    n = 5000
    bands = rng.integers(0, 2**63, size=(n, D.BANDS), dtype=np.uint64)
    for i in range(1, 200):  # a chain: row i shares band i % 14 with row i - 1
        bands[i, i % D.BANDS] = bands[i - 1, i % D.BANDS]
    keys = rng.integers(0, 2**63, size=n, dtype=np.uint64)
    keys[300:320] = keys[300]  # an exact group
    ranks = rng.permutation(n).astype(np.int64)
    valid = np.ones(n, dtype=bool)
    valid[4000:] = False  # no signature: exact only
    bands[4001] = bands[0]
    results = []
    for order in (np.arange(n), rng.permutation(n)):
        c = D.Clusterer()
        for lo in range(0, n, 777):
            idx = order[lo:lo + 777]
            c.add(ranks[idx], keys[idx], keys[idx] ^ np.uint64(1), np.ones(len(idx), bool), bands[idx], valid[idx])
        status, root, counts = c.finish()
        back = np.empty(n, dtype=np.int64)
        back[order] = np.arange(n)
        # per original row: status and the original row it went to
        results.append((status[back].tolist(), order[root[back]].tolist(), counts.as_dict()))
    assert results[0] == results[1]
    status, root, counts = results[0]
    chain_winner = int(np.argmin(ranks[:200]))
    assert all(root[i] == chain_winner for i in range(200)) and status[4001] == D.KEPT
    exact_winner = 300 + int(np.argmin(ranks[300:320]))
    assert all(root[i] == exact_winner for i in range(300, 320))
    assert counts["kept"] + counts["dropped_exact"] + counts["dropped_near"] == n
    assert (counts["dropped_exact"], counts["dropped_near"]) == (19, 199)


# ----------------------------------------------------------------------------------------------- hostile

def test_hostile_rows_never_crash_and_are_all_counted(tmp_path):
    rows = [chat_row("empty", ""), chat_row("huge", "word " * 400_000), chat_row("huge2", "word " * 400_001),
            chat_row("nul", "a\x00b " * 50), chat_row("emoji", "🦀 ünïcödé " * 30), chat_row("none", None)]
    nomsg = verified_row(task_id="nomsg")
    nomsg["messages"] = None
    odd = verified_row(task_id="odd")
    odd["metadata"] = None
    odd["messages"] = [message("assistant", None, tool_calls=[tool_call("c", "f", "{not json")])]
    rows += [nomsg, odd]
    src = lake.write_table(verified_table(rows), tmp_path / "v.parquet")
    counts = filter_file(src, tmp_path / "f.parquet")
    assert counts.kept + counts.dropped_exact + counts.dropped_near == counts.candidates == len(rows)
    kept = set(lake.read_table(tmp_path / "f.parquet").column("task_id").to_pylist())
    assert len({"huge", "huge2"} & kept) == 1  # the same repeated word: one near cluster


def test_surrogates_and_raising_hooks_fall_back():
    keys, texts = D.record_columns([{"env": "nowhere", "messages": [{"role": "assistant", "content": "x\ud800y " * 20}]},
                                    {"env": "nowhere", "messages": "not a list", "metadata": 5}], lambda r: r["env"])
    assert len(keys) == 2 and keys[0] != keys[1]
    sig, valid = D.text_signatures(texts)
    assert valid.tolist() == [True, False]


def test_filtered_rows_without_signature_column_still_dedup_exactly():
    keys = pa.array(["00" * 16, "00" * 16, None, "zz"])
    hi, lo, valid = D.key_words(keys)
    assert valid.tolist() == [True, True, False, False]
    sig, ok = D.minhash_matrix(pa.array([None, [1, 2], list(range(D.NUM_PERM)), None], pa.list_(pa.uint32())))
    assert ok.tolist() == [False, False, True, False]


# ---------------------------------------------------------------------------------------- across rounds

def test_cumulative_training_set_has_one_row_per_trajectory(tmp_path):
    rng = random.Random(6)
    base = prose(rng, 90)
    for r, score in enumerate([0.5, 1.0, 0.7]):
        round_key = f"r000{r}"
        rows = [chat_row(f"{round_key}-same", "yes", user="same prompt", score=score, round_key=round_key),
                chat_row(f"{round_key}-near", " ".join(edited(rng, base, 1)), user=f"q{r}", score=score,
                         round_key=round_key),
                chat_row(f"{round_key}-own", " ".join(prose(rng, 50)), user=f"own {r}", round_key=round_key)]
        src = lake.write_table(verified_table(rows), tmp_path / "v.parquet")
        filter_file(src, lake.partition_file(tmp_path, "filtered_dataset", round_key, "math_sample"))
    stream = cumulative_training_set(tmp_path, "r0002")
    table = pa.Table.from_batches(list(stream), schema=stream.schema)
    summary = stream.summary()
    assert kept_ids(table) == ["r0000-own", "r0001-near", "r0001-own", "r0001-same", "r0002-own"]
    assert len(set(table.column("dedup_key").to_pylist())) == table.num_rows
    assert (summary["dropped_exact"], summary["dropped_near"], summary["rows_in"]) == (2, 2, 9)
    assert summary["kept"] + summary["superseded"] + summary["dropped_exact"] + summary["dropped_near"] == 9
    assert sum(table.column("dropped_exact").to_pylist()) == 2
    assert table.schema == FILTERED_SCHEMA
    earlier = cumulative_training_set(tmp_path, "r0000")
    assert pa.Table.from_batches(list(earlier), schema=earlier.schema).num_rows == 3


@pytest.mark.parametrize("rows", [0, 1])
def test_tiny_inputs(rows):
    table = verified_table([chat_row(f"t{i}", "some words here") for i in range(rows)])
    assert filter_table(table).num_rows == rows


def test_spilled_rows_give_the_same_file(tmp_path, monkeypatch):
    rows = _corpus(8)
    src = lake.write_table(verified_table(rows), tmp_path / "v.parquet")
    held = filter_file(src, tmp_path / "held.parquet")
    monkeypatch.setattr(D.PartitionDedup, "MEMORY_BYTES", 1)  # every row through the Arrow IPC spill file
    spilled = filter_file(src, tmp_path / "spilled.parquet", in_memory=False)
    assert held == spilled
    assert (tmp_path / "held.parquet").read_bytes() == (tmp_path / "spilled.parquet").read_bytes()
