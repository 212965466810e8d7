"""Exports checked field by field against ms-swift's documented dataset keys."""

import json

import pyarrow as pa
import pytest

from orbit import lake
from orbit.exports import (NotExportable, dpo_example, export_dpo, export_grpo, export_sft, grpo_example,
                           sft_example)
from orbit.schema import VERIFIED_SCHEMA, make_record, message, tool_call

SWIFT_KEYS = {"messages", "rejected_response", "label", "images", "videos", "audios", "tools", "objects"}
SWIFT_ROLES = {"system", "user", "assistant", "tool_call", "tool_response"}
TOOLS = [{"type": "function", "function": {"name": "goto", "description": "open a url",
                                           "parameters": {"type": "object", "properties": {"url": {"type": "string"}},
                                                          "required": ["url"]}}}]


def tool_record(answer="42", passed=True, sample_idx=0, task_id="web-1"):
    msgs = [
        message("system", "You browse."),
        message("user", "What is the answer?"),
        message("assistant", "Let me look.", tool_calls=[tool_call("call_1", "goto", {"url": "http://a.test/"})]),
        message("tool", "page text: 42", tool_call_id="call_1", name="goto"),
        message("assistant", None, tool_calls=[tool_call("call_2", "stop", {"answers": [answer]})]),
    ]
    rec = make_record(env="liveweb", task_id=task_id, round_key="r0000", sample_idx=sample_idx, source="teacher",
                      policy="teacher@1", seed=1, messages=msgs, score=1.0 if passed else 0.0,
                      metadata={"task": {"seed": 1}}, tools=TOOLS)
    rec.update(claimed_score=rec["score"], passed=passed, reasons=[] if passed else ["answer.wrong:0"], verifier="t@1")
    return rec


def game_record(answers, passed, sample_idx):
    msgs = [message("system", "rules")]
    for i, a in enumerate(answers):
        msgs += [message("user", f"turn {i}"), message("assistant", a)]
    rec = make_record(env="tic_tac_toe", task_id="ttt-1", round_key="r0000", sample_idx=sample_idx, source="policy",
                      policy="p", seed=0, messages=msgs, score=1.0 if passed else 0.0,
                      metadata={"task": {"game": "tic_tac_toe", "seed": 1, "seat": 0, "params": {}}})
    rec.update(claimed_score=rec["score"], passed=passed, reasons=[] if passed else ["score.below_threshold"],
               verifier="t@1")
    return rec


def check_swift_messages(messages):
    assert messages and all(set(m) == {"role", "content"} for m in messages)
    assert all(m["role"] in SWIFT_ROLES and isinstance(m["content"], str) for m in messages)
    for m in messages:
        if m["role"] == "tool_call":
            call = json.loads(m["content"])
            assert set(call) == {"name", "arguments"} and isinstance(call["arguments"], dict)


def test_sft_example_uses_swift_agent_format():
    ex = sft_example(tool_record())
    assert set(ex) <= SWIFT_KEYS and set(ex) == {"messages", "tools"}
    check_swift_messages(ex["messages"])
    assert [m["role"] for m in ex["messages"]] == ["system", "user", "assistant", "tool_call", "tool_response", "tool_call"]
    tools = json.loads(ex["tools"])
    assert tools[0]["type"] == "function" and tools[0]["function"]["name"] == "goto"
    assert json.loads(ex["messages"][3]["content"]) == {"name": "goto", "arguments": {"url": "http://a.test/"}}


def test_dpo_pair_at_first_divergent_assistant_turn():
    chosen, rejected = game_record(["4", "0", "8"], True, 0), game_record(["4", "2", "6"], False, 1)
    ex = dpo_example(chosen, rejected)
    assert set(ex) <= SWIFT_KEYS and set(ex) == {"messages", "rejected_response"}
    check_swift_messages(ex["messages"])
    assert ex["messages"][-1] == {"role": "assistant", "content": "0"} and ex["rejected_response"] == "2"
    assert [m["content"] for m in ex["messages"]] == ["rules", "turn 0", "4", "turn 1", "0"]
    with pytest.raises(NotExportable, match="dpo.no_shared_prefix"):
        dpo_example(chosen, game_record(["4", "0", "8"], False, 2))


def test_grpo_prompt_carries_what_the_reward_function_needs():
    ex = grpo_example(game_record(["4"], True, 0))
    assert ex["messages"] == [{"role": "system", "content": "rules"}, {"role": "user", "content": "turn 0"}]
    assert ex["env"] == "tic_tac_toe" and ex["task_id"] == "ttt-1"
    assert json.loads(ex["task_spec"])["game"] == "tic_tac_toe"


def test_round_exports_count_every_row(tmp_path):
    bad = tool_record(task_id="web-2")
    bad["messages"][2]["tool_calls"][0]["function"]["arguments"] = "{oops"
    verified = [tool_record(), bad, game_record(["4", "0"], True, 0), game_record(["4", "1"], False, 1),
                game_record(["5"], False, 2) | {"task_id": "ttt-2"}]
    table = pa.Table.from_pylist(verified, schema=VERIFIED_SCHEMA)
    for env in ("liveweb", "tic_tac_toe"):
        part = table.filter(pa.compute.equal(table.column("env"), env))
        lake.write_table(part, lake.partition_file(tmp_path, "verified_samples", "r0000", env))
        passed = part.filter(part.column("passed"))
        lake.write_table(passed, lake.partition_file(tmp_path, "filtered_dataset", "r0000", env))
    sft = export_sft(tmp_path, "r0000", tmp_path / "sft.jsonl")
    assert (sft.rows_in, sft.exported, dict(sft.skipped)) == (3, 2, {"export.tool_arguments_not_json": 1})
    lines = [json.loads(x) for x in (tmp_path / "sft.jsonl").read_text().splitlines()]
    assert len(lines) == 2 and all(set(x) <= SWIFT_KEYS for x in lines)
    dpo = export_dpo(tmp_path, "r0000", tmp_path / "dpo.jsonl")
    assert dpo.exported == 1 and dpo.rows_in == dpo.exported + sum(dpo.skipped.values())
    assert dpo.skipped["dpo.no_rejected"] == 2 and dpo.skipped["dpo.no_chosen"] == 1
    grpo = export_grpo(tmp_path, "r0000", tmp_path / "grpo.jsonl")
    assert grpo.exported == 4 and grpo.rows_in == 4
