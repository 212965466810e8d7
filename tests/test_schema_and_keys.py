import pyarrow as pa
import pytest

from orbit.keys import InvalidKey, previous_round, round_key, validate_env, validate_round
from orbit.lake import partition_dir
from orbit.schema import (RECORD_SCHEMA, VERIFIED_SCHEMA, check_schema, make_record, message,
                          records_to_batch, task_id_from_prompt)


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
