import pyarrow as pa
import pytest

from orbit.io.keys import InvalidKey, previous_round, round_key, validate_env, validate_round
from orbit.io.lake import partition_dir
from orbit.io.schema import (RECORD_SCHEMA, VERIFIED_SCHEMA, batch_from_columns, chat_messages_array, check_schema,
                          make_record, message, records_to_batch, task_id_from_prompt, tool_call)


def test_round_keys_round_trip():
    assert round_key(0) == "r0000" and round_key(12) == "r0012"
    assert previous_round("r0001") == "r0000" and previous_round("r0000") is None
    with pytest.raises(InvalidKey):
        round_key(10000)


@pytest.mark.parametrize("bad", ["r1", "r00000", "../r0000", "r000a", "", None, "R0000"])
def test_invalid_round_keys_rejected(bad):
    with pytest.raises(InvalidKey):
        validate_round(bad)


@pytest.mark.parametrize("bad", ["../etc", "Tic", "a/b", "a b", "", "x" * 80])
def test_invalid_env_names_rejected_before_paths(bad, tmp_path):
    with pytest.raises(InvalidKey):
        partition_dir(tmp_path, "raw_samples", "r0000", bad)


def test_unknown_env_rejected():
    with pytest.raises(InvalidKey, match="unknown env"):
        validate_env("chess", ("tic_tac_toe",))


def test_task_id_from_prompt_is_content_hash_not_shared_key():
    a = [message("user", "what is 2+2?"), message("assistant", "4")]
    b = [message("user", "what is 3+3?"), message("assistant", "6")]
    a2 = [message("user", "what is 2+2?"), message("assistant", "four")]
    assert task_id_from_prompt("math", a) == task_id_from_prompt("math", a2)
    assert task_id_from_prompt("math", a) != task_id_from_prompt("math", b)
    rec = make_record(env="math", task_id=None, round_key="r0000", sample_idx=0, source="import",
                      policy="x", seed=None, messages=a, score=None)
    assert rec["task_id"] == task_id_from_prompt("math", a)


def test_record_ids_stable_and_distinct():
    kw = dict(env="e", task_id="t", round_key="r0000", source="selfplay", policy="p", seed=1,
              messages=[message("user", "u")], score=1.0)
    assert make_record(sample_idx=0, **kw)["record_id"] == make_record(sample_idx=0, **kw)["record_id"]
    assert make_record(sample_idx=0, **kw)["record_id"] != make_record(sample_idx=1, **kw)["record_id"]


def test_messages_are_nested_arrow_not_json():
    rec = make_record(env="e", task_id="t", round_key="r0000", sample_idx=0, source="teacher", policy="p",
                      seed=None, score=None, messages=[message("user", "hi")])
    batch = records_to_batch([rec])
    assert pa.types.is_list(batch.schema.field("messages").type)
    assert batch.schema.field("messages").type.value_type.get_field_index("tool_calls") >= 0
    assert check_schema(batch.schema, RECORD_SCHEMA) == []
    assert "missing column 'passed'" in check_schema(batch.schema, VERIFIED_SCHEMA)


def test_unknown_source_rejected():
    with pytest.raises(ValueError, match="source"):
        make_record(env="e", task_id="t", round_key="r0000", sample_idx=0, source="magic", policy="p",
                    seed=None, messages=[], score=None)


@pytest.mark.parametrize("bad", ["r0001\n", "r0001\r", "\nr0001", " r0000", "r0000 ", "r\u0661\u0662\u0663\u0664",
                                 "r\uff11\uff12\uff13\uff14", "r\u00b9234", "r12\u09e934", "r-001", "r+001", "r0_01",
                                 "r00001\n", "rr0000", 1234, b"r0000", ["r0000"]])
def test_round_keys_are_ascii_fullmatch(bad):
    """No trailing newline, no non-ASCII digits (which would share seeds with their ASCII twin), no padding."""
    from orbit.io.keys import is_round_key

    assert not is_round_key(bad)
    with pytest.raises(InvalidKey):
        validate_round(bad)


@pytest.mark.parametrize("bad", ["tic_tac_toe\n", "t\u00efc", "\uff54ic", "a-b", "_a", "1a", "a.b", "a\x00b"])
def test_env_names_are_ascii_identifiers(bad):
    with pytest.raises(InvalidKey):
        validate_env(bad)


@pytest.mark.parametrize("bad", [True, 1.5, "1", None, -1, 10_000])
def test_round_index_must_be_an_integer_in_range(bad):
    with pytest.raises(InvalidKey):
        round_key(bad)


def test_registry_and_runner_refuse_invalid_round_keys(tmp_path):
    import dagster as dg

    from orbit.flywheel.rounds import RoundRegistry
    from orbit_assets.rounds import register_round
    from resources import resources_for

    with pytest.raises(InvalidKey):
        RoundRegistry(tmp_path).add("embedded:uniform", key="r\u0661\u0662\u0663\u0664")
    (tmp_path / "dagster").mkdir()
    settings = resources_for(lake=str(tmp_path / "lake"), home=str(tmp_path))["settings"]
    with dg.instance_for_test(temp_dir=str(tmp_path / "dagster")) as instance:
        with pytest.raises(InvalidKey):
            register_round("embedded:uniform", key="r0001\n", settings=settings, instance=instance)
        assert instance.get_dynamic_partitions("rounds") == []


def test_invalid_dynamic_round_partition_is_flagged_and_refused(tmp_path, monkeypatch):
    """Anything can add a dynamic partition (the UI, the API): the sensor names a bad key and
    the materialization refuses it before any lake path is built."""
    import dagster as dg

    from orbit_assets.definitions import build_defs
    from orbit_assets.key_checks import round_key_sensor
    from resources import resources_for

    monkeypatch.setenv("ORBIT_HOME", str(tmp_path))
    lake_root = tmp_path / "lake"
    bad = ["r\u0661\u0662\u0663\u0664", "r0001\n", "r\uff11\uff12\uff13\uff14"]
    (tmp_path / "dagster").mkdir()
    with dg.instance_for_test(temp_dir=str(tmp_path / "dagster")) as instance:
        instance.add_dynamic_partitions("rounds", ["r0000"])
        ok = round_key_sensor(dg.build_sensor_context(instance=instance))
        assert "every round partition key is valid" in ok.skip_message
        instance.add_dynamic_partitions("rounds", bad)
        flagged = round_key_sensor(dg.build_sensor_context(instance=instance))  # one failing run per key
        assert sorted(r.tags["orbit/invalid_round_key"] for r in flagged) == sorted(bad)
        keys = [r.run_config["ops"]["report_invalid_round_key"]["config"]["key"] for r in flagged]
        assert sorted(keys) == sorted(bad)
        defs = build_defs(resources_for(lake=str(lake_root)))
        job = defs.resolve_job_def("round_job")
        for key in bad:
            result = job.execute_in_process(
                instance=instance, raise_on_error=False,
                partition_key=dg.MultiPartitionKey({"round": key, "env": "tic_tac_toe"}))
            assert not result.success
            messages = [e.step_failure_data.error.message for e in result.get_step_failure_events()]
            assert any("refusing to materialize" in m for m in messages), messages
    assert not any(p.name.startswith("round=") and p.name != "round=r0000" for p in lake_root.rglob("round=*"))


def _chat_rows():
    """Rows whose messages hold every plain-chat shape: non-ASCII and empty contents, a null content,
    an empty message list."""
    texts = [["sys", "héllo ✓", "4"], ["", "x" * 300], [], ["a", None, "b", "c", "d"]]
    rows = []
    for i, contents in enumerate(texts):
        messages = [message(("system", "user", "assistant")[min(j, 2)], c) for j, c in enumerate(contents)]
        rows.append(make_record(env="tic_tac_toe", task_id=f"t{i}", round_key="r0000", sample_idx=i,
                                source="selfplay", policy="p", seed=i if i % 2 else None, messages=messages,
                                score=None if i == 2 else i / 4, metadata={"i": i}))
    return rows


def test_batch_from_columns_equals_the_batch_of_the_rows():
    rows = _chat_rows()
    columns = {name: [r[name] for r in rows] for name in RECORD_SCHEMA.names}
    columns["messages"] = chat_messages_array(r["messages"] for r in rows)
    columns.update(env="tic_tac_toe", round="r0000", source="selfplay", policy="p", tools=None,
                   schema_version=rows[0]["schema_version"])  # one value every row holds
    assert batch_from_columns(columns, len(rows)).equals(records_to_batch(rows))
    with pytest.raises(ValueError, match="has 3 values for 4 rows"):
        batch_from_columns({**columns, "score": [1.0, 1.0, 1.0]}, len(rows))
    with pytest.raises(ValueError, match="do not match"):
        batch_from_columns({k: v for k, v in columns.items() if k != "tools"}, len(rows))


@pytest.mark.parametrize("change", ["tool_call", "tool_call_id", "name", "missing_key", "not_a_dict", "int_content"])
def test_chat_messages_array_refuses_what_is_not_plain_chat(change):
    rows = [list(r["messages"]) for r in _chat_rows()]
    m = dict(rows[0][1])
    if change == "tool_call":
        m["tool_calls"] = [tool_call("c1", "search", {"q": "x"})]
    elif change == "tool_call_id":
        m["tool_call_id"] = "c1"
    elif change == "name":
        m["name"] = "alice"
    elif change == "missing_key":
        del m["name"]
    elif change == "not_a_dict":
        m = "user: hello"
    else:
        m["content"] = 4
    rows[0][1] = m
    assert chat_messages_array(rows) is None
