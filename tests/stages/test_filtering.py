import random
import tempfile
from pathlib import Path

import pyarrow.parquet as pq
import pytest
from helpers import row_group_sizes, verified_row, verified_table
from hypothesis import given, settings
from hypothesis import strategies as st

from orbit.io import lake
from orbit.stages.filter import filter_file, filter_table
from orbit.io.importer import record_from_line
from orbit.io.schema import FILTERED_SCHEMA, message


def python_reference(rows):
    """The seed project's loop, extended with the deterministic tie-break."""
    best = {}
    for r in rows:
        if not r["passed"]:
            continue
        key = (r["env"], r["task_id"])
        rank = (-r["score"], len(r["messages"]), r["record_id"])
        if key not in best or rank < best[key][0]:
            best[key] = (rank, r)
    return sorted(r["record_id"] for _, r in best.values())


def test_keeps_best_passed_per_task_with_deterministic_ties():
    rows = [
        verified_row(task_id="a", score=1.0, n_messages=7, sample_idx=0),
        verified_row(task_id="a", score=1.0, n_messages=5, sample_idx=1),  # shorter wins the tie
        verified_row(task_id="a", score=0.5, n_messages=3, sample_idx=2),
        verified_row(task_id="b", score=1.0, passed=False, sample_idx=0),  # failed never kept
        verified_row(task_id="c", score=0.8, sample_idx=0),
        verified_row(task_id="c", score=0.9, sample_idx=1),
        verified_row(env="kuhn_poker", task_id="a", score=1.0, sample_idx=0),  # same task id, other env
    ]
    out = filter_table(verified_table(rows)).to_pylist()
    kept = {(r["env"], r["task_id"]): r for r in out}
    assert set(kept) == {("tic_tac_toe", "a"), ("tic_tac_toe", "c"), ("kuhn_poker", "a")}
    assert kept[("tic_tac_toe", "a")]["record_id"] == rows[1]["record_id"]
    assert kept[("tic_tac_toe", "c")]["score"] == 0.9


def test_equal_score_and_length_breaks_on_record_id():
    rows = [verified_row(task_id="a", sample_idx=i) for i in range(5)]
    out = filter_table(verified_table(rows)).to_pylist()
    assert [r["record_id"] for r in out] == [min(r["record_id"] for r in rows)]


def test_file_filter_matches_python_loop_and_counts_add_up(tmp_path):
    rng = random.Random(7)
    rows = [
        verified_row(task_id=f"t{rng.randrange(300)}", score=rng.choice([0.0, 0.5, 1.0]),
                     passed=rng.random() < 0.6, n_messages=rng.randrange(3, 9), sample_idx=i)
        for i in range(3000)
    ]
    src = lake.write_table(verified_table(rows), tmp_path / "v.parquet")
    counts = filter_file(src, tmp_path / "f.parquet")
    out = lake.read_table(tmp_path / "f.parquet")
    assert sorted(out.column("record_id").to_pylist()) == python_reference(rows)
    assert counts.kept == out.num_rows
    assert counts.kept + counts.duplicates + counts.failed == counts.rows_in == 3000
    assert counts.dropped_exact == counts.dropped_near == 0  # every task plays its own trajectory


def test_imported_records_without_task_id_are_not_collapsed():
    lines = [b'{"messages": [{"role": "user", "content": "q%d"}, {"role": "assistant", "content": "a"}]}' % i
             for i in range(3)]
    lines.append(lines[0])  # same prompt again: same task
    recs = [record_from_line(line, i, "tic_tac_toe", "r0000", "x.jsonl") for i, line in enumerate(lines)]
    assert len({r["task_id"] for r in recs}) == 3
    rows = []
    for r in recs:
        r.update(claimed_score=1.0, passed=True, reasons=[], verifier="t@1", score=1.0)
        rows.append(r)
    assert filter_table(verified_table(rows)).num_rows == 3


def _full_groups(rows: int, size: int) -> list[int]:
    """Row groups of ``size`` rows and the rest in a last one."""
    return [size] * (rows // size) + ([rows % size] if rows % size else [])


def test_spilled_winners_give_the_same_file_as_in_memory(tmp_path, monkeypatch):
    """Past MEMORY_ROWS the winners go through on-disk buckets; the output file is byte-for-byte the same."""
    import orbit.stages.filter as F

    rng = random.Random(11)
    rows = [
        verified_row(task_id=f"t{rng.randrange(900)}", score=rng.choice([0.0, 0.5, 1.0]),
                     passed=rng.random() < 0.7, n_messages=rng.randrange(3, 9), sample_idx=i)
        for i in range(4000)
    ]
    src = tmp_path / "v.parquet"
    lake.write_batches(verified_table(rows).to_batches(max_chunksize=300), verified_table(rows).schema, src,
                       group_rows=300)  # 14 row groups: DuckDB reads them in parallel, in no order
    monkeypatch.setattr(F, "BATCH_ROWS", 48)
    monkeypatch.setattr(lake, "ROW_GROUP_ROWS", 96)  # several output row groups, two batches each
    in_memory = filter_file(src, tmp_path / "a.parquet", in_memory=False)
    monkeypatch.setattr(F, "MEMORY_ROWS", 50)
    monkeypatch.setattr(F, "BUCKET_ROWS", 100)  # rounded up to whole batches
    spilled = filter_file(src, tmp_path / "b.parquet", in_memory=False)
    assert spilled == in_memory and spilled.kept > 64 * 3
    assert row_group_sizes(tmp_path / "b.parquet") == _full_groups(spilled.kept, 96)
    assert (tmp_path / "a.parquet").read_bytes() == (tmp_path / "b.parquet").read_bytes()
    out = lake.read_table(tmp_path / "b.parquet")
    assert sorted(out.column("record_id").to_pylist()) == python_reference(rows)
    keys = list(zip(out.column("env").to_pylist(), out.column("task_id").to_pylist()))
    assert keys == sorted(keys)


def test_file_filter_equals_the_table_filter(tmp_path):
    rng = random.Random(5)
    rows = [verified_row(task_id=f"t{rng.randrange(50)}", score=rng.choice([0.5, 1.0]), passed=rng.random() < 0.8,
                         n_messages=rng.randrange(3, 6), sample_idx=i) for i in range(500)]
    table = verified_table(rows)
    src = lake.write_table(table, tmp_path / "v.parquet")
    filter_file(src, tmp_path / "f.parquet")
    assert lake.read_table(tmp_path / "f.parquet").to_pylist() == filter_table(table).to_pylist()


def _mixed_rows(unique_texts: bool) -> list[dict]:
    """Verified rows of every message shape a partition holds: plain chat, tool calls and tool
    replies, null and empty message lists, null contents, non-ASCII text; texts repeat or not."""
    rng = random.Random(23 if unique_texts else 29)
    call = {"id": "c1", "type": "function", "function": {"name": "open", "arguments": '{"url": "/a"}'}}
    rows = []
    for i in range(1500):
        row = verified_row(task_id=f"t{rng.randrange(400)}", score=rng.choice([0.0, 0.5, 1.0]),
                           passed=rng.random() < 0.7, n_messages=rng.randrange(3, 8), sample_idx=i,
                           env=rng.choice(["tic_tac_toe", "liveweb"]))
        text = (lambda k: f"answer {i} {k} é✓") if unique_texts else (lambda k: f"answer {k % 3}")
        shape = i % 7
        if shape == 1:
            row["messages"] = [message("user", text(0)), message("assistant", None, tool_calls=[call]),
                               message("tool", text(1), tool_call_id="c1", name="open"),
                               message("assistant", text(2))]
        elif shape == 2:
            row["messages"] = [message("user", text(0)), message("assistant", None, tool_calls=[])]
        elif shape == 3:
            row["messages"] = None if i % 2 else []
        else:
            row["messages"] = [message(m["role"], text(k)) for k, m in enumerate(row["messages"])]
        if i % 11 == 0:
            row["metadata"] = None
        for m in row["messages"] or []:  # each task asks its own question: the dedup stage keeps the tasks apart
            if m["role"] == "user" and not unique_texts:
                m["content"] = f"question {row['task_id']}"
        rows.append(row)
    return rows


@pytest.mark.parametrize("unique_texts", [False, True])
def test_one_read_and_the_streamed_filter_write_the_same_file(tmp_path, monkeypatch, unique_texts):
    """A file that fits in memory is filtered from one read, gathering its winners through the read's
    dictionaries; a larger one is ranked on a narrow scan and streamed. Same bytes, same counts."""
    import orbit.stages.filter as F

    rows = _mixed_rows(unique_texts)
    src = tmp_path / "v.parquet"
    table = verified_table(rows)
    lake.write_batches(table.to_batches(max_chunksize=97), table.schema, src, group_rows=97)  # 16 row groups
    leaves = F._dictionary_leaves(pq.ParquetFile(src))
    assert ("messages.list.element.content" in leaves) is not unique_texts
    assert "messages.list.element.role" in leaves and "record_id" not in leaves
    monkeypatch.setattr(F, "BATCH_ROWS", 64)
    monkeypatch.setattr(lake, "ROW_GROUP_ROWS", 192)  # several output row groups of three batches, gathered ahead
    assert F.fits_in_memory(src)
    one_read = filter_file(src, tmp_path / "a.parquet")
    streamed = filter_file(src, tmp_path / "b.parquet", in_memory=False)
    assert one_read == streamed and one_read.kept > 64 * 3
    assert row_group_sizes(tmp_path / "a.parquet") == _full_groups(one_read.kept, 192)
    assert (one_read.kept + one_read.dropped_exact + one_read.dropped_near + one_read.duplicates + one_read.failed
            == one_read.rows_in == len(rows))
    assert (tmp_path / "a.parquet").read_bytes() == (tmp_path / "b.parquet").read_bytes()
    out = lake.read_table(tmp_path / "a.parquet")
    assert out.schema == FILTERED_SCHEMA
    assert out.to_pylist() == filter_table(table).to_pylist()


def test_one_read_with_nothing_passed_writes_an_empty_file(tmp_path):
    rows = [verified_row(task_id=f"t{i}", passed=False, sample_idx=i) for i in range(40)]
    src = lake.write_table(verified_table(rows), tmp_path / "v.parquet")
    counts = filter_file(src, tmp_path / "a.parquet", in_memory=True)
    assert counts == filter_file(src, tmp_path / "b.parquet", in_memory=False)
    assert (counts.kept, counts.failed) == (0, 40)
    assert lake.read_table(tmp_path / "a.parquet").equals(lake.read_table(tmp_path / "b.parquet"))
    assert lake.read_table(tmp_path / "a.parquet").num_rows == 0


def test_files_past_the_memory_budget_are_streamed(tmp_path, monkeypatch):
    import orbit.stages.filter as F

    src = lake.write_table(verified_table([verified_row(sample_idx=i) for i in range(20)]), tmp_path / "v.parquet")
    assert F.fits_in_memory(src)
    monkeypatch.setattr(F, "IN_MEMORY_BYTES", 100)
    assert not F.fits_in_memory(src)
    monkeypatch.setattr(F, "_one_read", None)  # the streamed path alone is taken
    assert filter_file(src, tmp_path / "f.parquet").kept == 1


PLAIN_CHAT_EMPTY_LEAVES = {
    "messages.list.element.tool_calls.list.element.type",
    "messages.list.element.tool_calls.list.element.function.arguments",
    "messages.list.element.tool_call_id",
    "messages.list.element.name",
}


def _plain(table):
    """The table with its dictionaries decoded: what a plain read of the file gives."""
    return table.to_pylist()


def test_empty_leaves_are_made_as_nulls_not_read(tmp_path):
    """Plain chat leaves four message leaves empty in every row group: they are not read. The first
    leaf under each list and struct (a tool call's id, its function's name) is still read, since it
    carries whether tool_calls is null or empty; the rows read back as written."""
    import orbit.stages.filter as F

    rows = [verified_row(task_id=f"t{i % 9}", n_messages=3 + i % 4, sample_idx=i) for i in range(200)]
    rows[5]["messages"][1]["tool_calls"] = []  # an empty list, not a null one
    rows[6]["messages"] = None
    rows[7]["messages"] = []
    table = verified_table(rows)
    src = tmp_path / "v.parquet"
    lake.write_batches(table.to_batches(max_chunksize=30), table.schema, src, group_rows=30)
    assert F._empty_leaves(pq.ParquetFile(src)) == PLAIN_CHAT_EMPTY_LEAVES
    for threads in (1, 2):
        assert _plain(F.read_whole(src, threads)) == table.to_pylist()

    # one tool reply in one row group: its leaves are read (in every row group)
    rows[100]["messages"][2] = message("tool", "page", tool_call_id="c1", name="open")
    table = verified_table(rows)
    lake.write_batches(table.to_batches(max_chunksize=30), table.schema, src, group_rows=30)
    assert F._empty_leaves(pq.ParquetFile(src)) == PLAIN_CHAT_EMPTY_LEAVES - {
        "messages.list.element.tool_call_id", "messages.list.element.name"}
    assert _plain(F.read_whole(src, 2)) == table.to_pylist()

    # a file without statistics has every leaf read
    pq.write_table(table, src, row_group_size=30, write_statistics=False)
    assert F._empty_leaves(pq.ParquetFile(src)) == set()
    assert _plain(F.read_whole(src, 2)) == table.to_pylist()


_TEXT = st.sampled_from(["", "a", "é✓", "{}"])
_FUNCTION = st.none() | st.fixed_dictionaries({"name": st.none() | _TEXT, "arguments": st.none() | _TEXT})
_CALL = st.fixed_dictionaries({"id": st.none() | _TEXT, "type": st.none() | _TEXT, "function": _FUNCTION})
_MESSAGE = st.none() | st.fixed_dictionaries({
    "role": st.sampled_from(["user", "assistant", "tool"]), "content": st.none() | _TEXT,
    "tool_calls": st.none() | st.lists(_CALL, max_size=2), "tool_call_id": st.none() | _TEXT,
    "name": st.none() | _TEXT})
_FIELDS = ("content", "tool_calls", "tool_call_id", "name", "id", "type", "function", "fn_name", "arguments")


def _keep_only(msg, fields):
    """The message with every field outside ``fields`` null: files whose leaves are empty in many ways."""
    if msg is None:
        return None
    msg = dict(msg)
    for key in ("content", "tool_calls", "tool_call_id", "name"):
        if key not in fields:
            msg[key] = None
    if msg["tool_calls"]:
        calls = []
        for call in msg["tool_calls"]:
            call = {k: (v if k in fields else None) for k, v in call.items()}
            if call["function"] is not None:
                call["function"] = {"name": call["function"]["name"] if "fn_name" in fields else None,
                                    "arguments": call["function"]["arguments"] if "arguments" in fields else None}
            calls.append(call)
        msg["tool_calls"] = calls
    return msg


@given(st.lists(st.none() | st.lists(_MESSAGE, max_size=4), min_size=1, max_size=30),
       st.sets(st.sampled_from(_FIELDS)), st.integers(min_value=1, max_value=8), st.booleans())
@settings(max_examples=120, deadline=None)
def test_one_read_gives_every_message_shape_as_written(message_lists, fields, group_rows, statistics):
    """Whatever leaves are empty (tool calls whose fields are all null, null or empty lists, null
    messages), the one read gives the rows as written, and the filter the rows of the table filter."""
    import orbit.stages.filter as F

    rows = []
    for i, messages in enumerate(message_lists):
        row = verified_row(task_id=f"t{i % 4}", sample_idx=i, passed=i % 3 != 2)
        row["messages"] = None if messages is None else [_keep_only(m, fields) for m in messages]
        rows.append(row)
    table = verified_table(rows)
    with tempfile.TemporaryDirectory() as tmp:
        src = Path(tmp) / "v.parquet"
        pq.write_table(table, src, row_group_size=group_rows, compression=lake.COMPRESSION,
                       write_statistics=statistics)
        for threads in (1, 2):
            assert _plain(F.read_whole(src, threads)) == table.to_pylist()
        filter_file(src, Path(tmp) / "a.parquet", in_memory=True)
        filter_file(src, Path(tmp) / "b.parquet", in_memory=False)
        assert (Path(tmp) / "a.parquet").read_bytes() == (Path(tmp) / "b.parquet").read_bytes()
        assert lake.read_table(Path(tmp) / "a.parquet").to_pylist() == filter_table(table).to_pylist()


def test_filters_share_one_ranking_database_per_process(tmp_path, monkeypatch):
    """The ranking database is opened once per process (opening one costs more than ranking a small
    partition); calls in threads get connections of their own."""
    import concurrent.futures
    import os

    import orbit.stages.filter as F

    sources = []
    for k in range(4):
        rows = [verified_row(task_id=f"t{i % (5 + k)}", score=(i % 3) / 2, n_messages=3 + i % 3, sample_idx=i)
                for i in range(120 + k)]
        sources.append((lake.write_table(verified_table(rows), tmp_path / f"v{k}.parquet"), verified_table(rows)))
    filter_file(sources[0][0], tmp_path / "warm.parquet")
    opened = []
    real = F.duckdb.connect
    monkeypatch.setattr(F.duckdb, "connect", lambda *a, **k: opened.append(k) or real(*a, **k))

    def run(k, in_memory):
        out = tmp_path / f"f{k}{in_memory}.parquet"
        filter_file(sources[k][0], out, in_memory=in_memory)
        return lake.read_table(out).to_pylist() == filter_table(sources[k][1]).to_pylist()

    with concurrent.futures.ThreadPoolExecutor(4) as pool:
        assert all(pool.map(run, [0, 1, 2, 3, 0, 1, 2, 3], [True] * 4 + [False] * 4))
    assert [k for k in opened if "memory_limit" in k.get("config", {})] == []  # filter_table opens its own
    assert (os.getpid(), "rank", 2, F.RANK_MEMORY) in lake._KEPT

    assert run(1, True) and run(2, False)


def test_another_process_opens_a_ranking_database_of_its_own(tmp_path, monkeypatch):
    """The database is keyed by process id: a forked child (whose pid differs) opens its own, and at
    exit a process closes only the database it opened, never its parent's. Checked by giving this
    process another pid rather than by forking it: pytest's process runs threads (DuckDB's
    allocator starts one at import), and a fork of a threaded process is not safe; the engine's own
    pools start from a forkserver."""
    import os

    import orbit.stages.filter as F

    rows = [verified_row(task_id=f"t{i % 7}", score=(i % 3) / 2, n_messages=3 + i % 3, sample_idx=i) for i in range(90)]
    src = lake.write_table(verified_table(rows), tmp_path / "v.parquet")
    expected = filter_table(verified_table(rows)).to_pylist()
    real = os.getpid()
    filter_file(src, tmp_path / "parent.parquet")
    parent = lake._KEPT[(real, "rank", 2, F.RANK_MEMORY)]
    with monkeypatch.context() as m:
        m.setattr(os, "getpid", lambda: real + 1)  # as a forked child sees itself
        m.setitem(lake._KEPT, (real + 1, "rank", 2, F.RANK_MEMORY), None)  # so that the child's entry is removed
        del lake._KEPT[(real + 1, "rank", 2, F.RANK_MEMORY)]
        filter_file(src, tmp_path / "child.parquet")
        child = lake._KEPT[(real + 1, "rank", 2, F.RANK_MEMORY)]
        assert child is not parent
        lake._close_at_exit(parent, real)  # the child's exit leaves its parent's database open...
        lake._close_at_exit(child, real + 1)  # ...and closes its own
    with pytest.raises(Exception, match="closed"):
        child.sql("SELECT 1")
    filter_file(src, tmp_path / "after.parquet")  # the parent's database still answers
    for name in ("parent", "child", "after"):
        assert lake.read_table(tmp_path / f"{name}.parquet").to_pylist() == expected
