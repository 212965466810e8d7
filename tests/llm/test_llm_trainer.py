"""The real-LLM trainer on a tiny budget: a few LoRA steps with TRL on CPU, the checkpoint written back to
GGUF loads and serves on loopback through llama.cpp, and its manifest makes the checkpoint sensor start the
next round."""

import json
import urllib.request

import dagster as dg
import pytest

from orbit.io import lake
from orbit.flywheel.checkpoints import read_checkpoint
from orbit.flywheel.rounds import RoundRegistry
from orbit.stages.export import read_export
from orbit.training.llm import (LLMTrainSettings, prepare_examples, stop_all_servers, stop_server,
                                train_llm_checkpoint)
from orbit_assets.export import sft_export
from resources.settings import OrbitSettings
from sensors.checkpoints import checkpoint_sensor
from tests.trainers.real_lake import build_lake

SYSTEM = ("You are playing tic tac toe as player 0.\nRules: Tic-tac-toe on a 3x3 board.\n"
          "On each turn you see your observation and the legal actions as 'ID -> action'. "
          "Answer with the ID of your chosen action only.")


def _game_row(move: int) -> dict:
    return {"messages": [
        {"role": "system", "content": SYSTEM},
        {"role": "user", "content": f"Observation (player 0):\n...\n...\n...\nLegal actions (answer with one ID):\n"
                                    f"{move} -> x({move // 3},{move % 3})\n8 -> x(2,2)"},
        {"role": "assistant", "content": str(move)}]}


def test_prepare_examples_counts_every_row():
    rows = [_game_row(i) for i in range(5)] + [
        {"messages": [{"role": "system", "content": "You are playing kuhn poker as player 1."},
                      {"role": "assistant", "content": "1"}]},
        {"messages": [{"role": "assistant", "content": None, "tool_calls": [{"id": "a"}]}]},
        {"nothing": 1},
        {"messages": [{"role": "system", "content": SYSTEM}, {"role": "user", "content": "x"}]},
    ]
    examples, counts = prepare_examples(rows, ["tic_tac_toe"], max_examples=3)
    assert len(examples) == 3 and counts["used"] == 3 and counts["used.tic_tac_toe"] == 3
    assert counts["skipped.over_max_examples"] == 2 and counts["skipped.other_env"] == 1
    assert counts["skipped.not_plain_chat"] == 1 and counts["skipped.no_messages"] == 1
    assert counts["skipped.no_assistant_turn"] == 1
    assert counts["rows"] == sum(v for k, v in counts.items() if k.startswith(("used.", "skipped.")))
    assert prepare_examples(rows, ["tic_tac_toe"], 3)[0] == examples  # deterministic


def _real_sft_export(home, ckpts):
    """A real round's SFT export, written by the sft_export asset through Dagster: self-play tic_tac_toe
    and LiveWeb teacher episodes, verified and filtered (tests/trainers/real_lake.py)."""
    lake_root = build_lake(home, liveweb_tasks=2, game_tasks=12)
    with dg.instance_for_test() as instance:
        instance.add_dynamic_partitions("rounds", ["r0000"])
        result = dg.materialize([sft_export], partition_key="r0000", instance=instance,
                                resources={"settings": OrbitSettings(lake=str(lake_root), checkpoints=str(ckpts))})
        assert result.success
    return lake_root


@pytest.mark.timeout(1200)
def test_tiny_lora_round_serves_and_triggers_the_sensor(tmp_path):
    ckpts = tmp_path / "checkpoints"
    lake_root = _real_sft_export(tmp_path / "home", ckpts)
    exported = read_export(lake.partition_dir(lake_root, "sft_export", "r0000"), "trl", ("train",))
    settings = LLMTrainSettings(max_examples=4, max_steps=2, batch_size=2, max_length=256, threads=2,
                                envs=("tic_tac_toe",))
    try:
        checkpoint, info = train_llm_checkpoint(lake_root, ckpts, "r0000", settings, log=lambda m: None)
        # every exported train row counted: the game rows used or over the budget, LiveWeb's tool use skipped
        counts = info["counts"]
        assert counts["rows"] == len(exported) and counts["used"] == 4, counts
        assert counts.get("skipped.not_plain_chat", 0) == sum(r["env"] == "liveweb" for r in exported) > 0, counts
        rows = [r for r in exported if r["env"] == "tic_tac_toe"]
        assert checkpoint.name == "smollm2-r0001" and checkpoint.parent_round == "r0000"
        assert (checkpoint.path / "model.gguf").stat().st_size > 10_000_000
        assert (checkpoint.path / "adapter" / "adapter_config.json").is_file()
        train = info["train"]
        assert train["steps"] == 2 and train["replaced_tensors"] > 0 and train["loss_first"] > 0
        # the manifest names the served endpoint, and the server answers a chat request
        assert checkpoint.policy == info["server"]["policy"] and checkpoint.policy.startswith("openai:http://127.0.0.1:")
        url = info["server"]["url"]
        body = {"model": "smollm2-r0001", "messages": rows[0]["messages"][:2], "max_tokens": 4, "temperature": 0}
        request = urllib.request.Request(f"{url}/chat/completions", data=json.dumps(body).encode(),
                                         headers={"Content-Type": "application/json"})
        reply = json.loads(urllib.request.urlopen(request, timeout=300).read())
        assert reply["choices"][0]["message"]["role"] == "assistant" and reply["usage"]["completion_tokens"] >= 1
        # the checkpoint sensor registers the next round with the served policy
        orbit = OrbitSettings(lake=str(lake_root), checkpoints=str(ckpts), max_rounds=4)
        RoundRegistry(orbit.lake).add("openai:http://127.0.0.1:9/v1#smollm2-base")
        with dg.instance_for_test() as instance:
            instance.add_dynamic_partitions("rounds", ["r0000"])
            checkpoint_sensor(dg.build_sensor_context(instance=instance, resources={"settings": orbit}))
            # the sensor registers the next free round with the served checkpoint; the automation runs it
            assert instance.get_dynamic_partitions("rounds") == ["r0000", "r0001"]
            entry = RoundRegistry(orbit.lake).get("r0001")
            assert (entry.policy, entry.checkpoint) == (checkpoint.policy, checkpoint.name)
        assert read_checkpoint(checkpoint.path).policy == checkpoint.policy
        assert stop_server(ckpts, "r0001") and not stop_server(ckpts, "r0001")
    finally:
        stop_all_servers(ckpts)
