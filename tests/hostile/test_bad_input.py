"""Malformed records never crash a partition: each fails with a named reason and counts add up."""

import json

import pyarrow as pa

from helpers import generate

from orbit.io import lake
from orbit.envs import env_spec, family_of
from orbit.stages.filter import filter_file
from orbit.io.importer import import_jsonl
from orbit.io.schema import VERIFIED_SCHEMA
from orbit.stages.verify import MAX_CONTENT_CHARS, VerifyCounts, verify_batches

GOOD_USER = {"role": "user", "content": "hello"}
BAD_LINES = {
    "missing_role": json.dumps({"messages": [GOOD_USER, {"content": "4"}]}).encode(),
    "non_string_content": json.dumps({"messages": [GOOD_USER, {"role": "assistant", "content": {"x": 1}}]}).encode(),
    "bad_tool_args": json.dumps({"messages": [GOOD_USER, {"role": "assistant", "content": None, "tool_calls": [
        {"id": "c1", "type": "function", "function": {"name": "goto", "arguments": "{not json"}}]}]}).encode(),
    "empty_trajectory": json.dumps({"messages": []}).encode(),
    "invalid_utf8": b'{"messages": [{"role": "user", "content": "caf\xe9"}, {"role": "assistant", "content": "1"}]}',
    "too_long": json.dumps({"messages": [GOOD_USER, {"role": "assistant", "content": "x" * (MAX_CONTENT_CHARS + 1)}]}).encode(),
    "not_json": b"{this is not json",
    "not_object": b"[1, 2, 3]",
}
EXPECTED = {
    "missing_role": "message.missing_role",
    "non_string_content": "message.content_not_string",
    "bad_tool_args": "tool_call.arguments_not_json",
    "empty_trajectory": "trajectory.empty",
    "invalid_utf8": "import.invalid_utf8",
    "too_long": "message.content_too_long",
    "not_json": "import.not_json",
    "not_object": "import.not_object",
}


def test_malformed_records_fail_with_named_reasons(tmp_path):
    src = tmp_path / "in.jsonl"
    names = list(BAD_LINES)
    src.write_bytes(b"\n".join(BAD_LINES[n] for n in names) + b"\n")
    raw = pa.Table.from_batches(list(import_jsonl(src, "tic_tac_toe", "r0000")))
    assert raw.num_rows == len(names)
    spec = env_spec("tic_tac_toe")
    counts = VerifyCounts()
    verified = pa.Table.from_batches(
        list(verify_batches(raw.to_batches(), family_of(spec).verifier(spec), 1.0, counts))
    ).to_pylist()
    assert counts.rows == len(names) and counts.failed == len(names) and counts.passed == 0
    for name, row in zip(names, verified):
        assert not row["passed"]
        assert any(r.split(":")[0] == EXPECTED[name] for r in row["reasons"]), (name, row["reasons"])
    path = lake.write_table(pa.Table.from_pylist(verified, schema=VERIFIED_SCHEMA), tmp_path / "v.parquet")
    c = filter_file(path, tmp_path / "f.parquet")
    assert (c.rows_in, c.failed, c.kept, c.duplicates) == (len(names), len(names), 0, 0)


def test_well_formed_import_of_a_game_record_is_replayed(tmp_path):
    rec = generate("kuhn_poker", n=1)[0]
    line = {k: rec[k] for k in ("messages", "score", "task_id", "metadata")}
    line["metadata"] = json.loads(line["metadata"])
    src = tmp_path / "one.jsonl"
    src.write_text(json.dumps(line) + "\n\n")
    raw = pa.Table.from_batches(list(import_jsonl(src, "kuhn_poker", "r0000")))
    assert raw.num_rows == 1 and raw.column("source").to_pylist() == ["import"]
    spec = env_spec("kuhn_poker")
    counts = VerifyCounts()
    out = pa.Table.from_batches(list(verify_batches(raw.to_batches(), family_of(spec).verifier(spec), 1.0, counts)))
    row = out.to_pylist()[0]
    assert row["score"] == rec["score"]
    assert row["passed"] == (rec["score"] == 1.0)


def test_malformed_import_through_dagster_counts_add_up(tmp_path, monkeypatch):
    import dagster as dg
    import pyarrow.parquet as pq

    from orbit_assets.runner import raw_samples_config, run_rounds
    from resources import resources_for

    src = tmp_path / "bad.jsonl"
    src.write_bytes(b"\n".join(BAD_LINES.values()) + b"\n")
    (tmp_path / "dagster").mkdir()
    monkeypatch.setenv("ORBIT_HOME", str(tmp_path))
    lake_root = tmp_path / "lake"
    with dg.instance_for_test(temp_dir=str(tmp_path / "dagster")) as instance:
        run_rounds(["r0000"], ["tic_tac_toe"], instance=instance, resources=resources_for(lake=str(lake_root)),
                   run_config=raw_samples_config(generators=False, import_jsonl=str(src)), log=lambda m: None)
        for check in ("verified_conservation", "filtered_unique"):
            asset = "verified_samples" if check == "verified_conservation" else "filtered_dataset"
            records = instance.event_log_storage.get_asset_check_execution_history(
                dg.AssetCheckKey(dg.AssetKey(asset), check), limit=1)
            assert records[0].event.dagster_event.event_specific_data.passed
    verified = pq.read_table(lake.partition_file(lake_root, "verified_samples", "r0000", "tic_tac_toe")).to_pylist()
    assert len(verified) == len(BAD_LINES) and not any(r["passed"] for r in verified)
    assert all(r["reasons"] for r in verified)
    assert lake.row_count(lake.partition_file(lake_root, "filtered_dataset", "r0000", "tic_tac_toe")) == 0


def test_hostile_import_through_dagster_counts_add_up(tmp_path, monkeypatch):
    """The hostile corpus, edits of winning records, two winners (one imported twice) and blank lines, imported
    through the real raw -> verified -> filtered path: every check passes, counts add up, only the winners pass."""
    import dagster as dg
    import pyarrow.parquet as pq

    from hostile.corpus import GAME_MUTATIONS, RAW
    from hostile.pipeline import as_line, dumps
    from orbit_assets.runner import raw_samples_config, run_rounds
    from resources import resources_for

    winners = [r for r in generate("tic_tac_toe", n=16) if r["score"] == 1.0][:2]
    assert len(winners) == 2 and winners[0]["task_id"] != winners[1]["task_id"]
    good = [dumps(as_line(w)) for w in winners]
    edited = []
    for _, edit, _ in GAME_MUTATIONS:
        line = edit(as_line(winners[0]))
        edited.append(line if isinstance(line, bytes) else dumps(line))
    lines = [good[0]] + [raw for _, raw, _ in RAW] + [b"", b"  \r"] + edited + [good[1], good[0], b""]
    src = tmp_path / "hostile.jsonl"
    src.write_bytes(b"\xef\xbb\xbf" + b"\n".join(lines) + b"\n")
    blanks = 3
    records = len(lines) - blanks
    (tmp_path / "dagster").mkdir()
    monkeypatch.setenv("ORBIT_HOME", str(tmp_path))
    lake_root = tmp_path / "lake"
    with dg.instance_for_test(temp_dir=str(tmp_path / "dagster")) as instance:
        run_rounds(["r0000"], ["tic_tac_toe"], instance=instance, resources=resources_for(lake=str(lake_root)),
                   run_config=raw_samples_config(generators=False, import_jsonl=str(src)), export=False,
                   log=lambda m: None)
        for asset, check in (("raw_samples", "raw_samples_schema"), ("verified_samples", "verified_conservation"),
                             ("filtered_dataset", "filtered_unique")):
            history = instance.event_log_storage.get_asset_check_execution_history(
                dg.AssetCheckKey(dg.AssetKey(asset), check), limit=1)
            assert history[0].event.dagster_event.event_specific_data.passed, check
        raw_meta = instance.get_latest_materialization_event(dg.AssetKey("raw_samples")).asset_materialization.metadata
        assert raw_meta["import_lines"].value == len(lines)
        assert raw_meta["import_skipped_blank"].value == blanks
        assert raw_meta["import_records"].value == raw_meta["rows_import"].value == records
    raw = pq.read_table(lake.partition_file(lake_root, "raw_samples", "r0000", "tic_tac_toe"))
    verified = pq.read_table(lake.partition_file(lake_root, "verified_samples", "r0000", "tic_tac_toe")).to_pylist()
    filtered = pq.read_table(lake.partition_file(lake_root, "filtered_dataset", "r0000", "tic_tac_toe")).to_pylist()
    assert raw.num_rows == len(verified) == records
    passed = [r for r in verified if r["passed"]]
    assert len(passed) == 3 and all(r["reasons"] for r in verified if not r["passed"])
    assert sorted(r["task_id"] for r in filtered) == sorted(w["task_id"] for w in winners)
