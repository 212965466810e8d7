"""Exports checked field by field, built from REAL episodes: LiveWeb teacher episodes (ending in the
``stop`` call and the environment's reply), real failing LiveWeb episodes, OpenSpiel self-play games."""

import copy
import json

import pytest

from orbit.envs.openspiel.verifier import GameReplayVerifier

from orbit.stages.export import (OVER_MAX_TOKENS, ExportOptions, NotExportable, build_dpo, build_grpo, build_sft,
                           estimate_tokens, export_round, sft_example)
from orbit.envs.openspiel.tasks import history_before_first_turn
from orbit.rewards import UNFINISHED_REWARD, reward_func
from orbit.io import lake
from tests.trainers.real_lake import ROUND, build_lake

OPENAI_KEYS = {"system": {"role", "content"}, "user": {"role", "content"},
               "assistant": {"role", "content", "tool_calls"}, "tool": {"role", "content", "tool_call_id", "name"}}


@pytest.fixture(scope="module")
def real(tmp_path_factory):
    home = tmp_path_factory.mktemp("real")
    root = build_lake(home)
    verified = {env: lake.read_table(lake.partition_file(root, "verified_samples", ROUND, env)).to_pylist()
                for env in ("liveweb", "tic_tac_toe")}
    return root, verified, home / "liveweb_cache"


def check_openai(messages):
    calls = {}
    for m in messages:
        assert set(m) <= OPENAI_KEYS[m["role"]] and isinstance(m["content"], str), m
        for call in m.get("tool_calls", []):
            assert set(call) == {"id", "type", "function"} and call["type"] == "function"
            assert isinstance(json.loads(call["function"]["arguments"]), dict)
            calls[call["id"]] = call["function"]["name"]
        if m["role"] == "tool":
            assert calls[m["tool_call_id"]] == m["name"]


def rows(export, flavour):
    return export.rows[flavour]["train"] + export.rows[flavour]["validation"]


def test_sft_exports_whole_liveweb_episodes_ending_in_the_stop_call(real):
    root, verified, _ = real
    export = build_sft(root, ROUND)
    c = export.counts
    assert c.rows_in == c.exported + sum(c.skipped.values()) and not c.skipped
    web = [r for r in rows(export, "swift") if r["env"] == "liveweb"]
    passed_web = [r for r in verified["liveweb"] if r["passed"]]
    assert len(web) == len(passed_web) > 0 and c.closing_tool_messages_cut == len(web)
    for row in web:
        assert set(row) == {"messages", "tools", "env", "task_id", "num_tokens"}
        check_openai(row["messages"])
        last = row["messages"][-1]
        assert last["role"] == "assistant" and last["tool_calls"][0]["function"]["name"] == "stop"
        assert sum(1 for m in row["messages"] if m["role"] == "tool") == sum(
            len(m.get("tool_calls", [])) for m in row["messages"]) - 1  # every call answered but the stop
        assert [t["function"]["name"] for t in json.loads(row["tools"])][-1] == "stop"
        source = next(r for r in passed_web if r["task_id"] == row["task_id"])
        assert len(row["messages"]) == len(source["messages"]) - 1  # only the closing tool message is cut
        assert row["num_tokens"] >= estimate_tokens(row["messages"], row["tools"]) - 1
    games = [r for r in rows(export, "swift") if r["env"] == "tic_tac_toe"]
    assert games and all("tools" not in r and r["messages"][-1]["role"] == "assistant" for r in games)
    assert rows(export, "trl") == rows(export, "swift")  # one OpenAI-shaped file serves both trainers


def test_tool_call_dpo_pairs_keep_the_shared_prefix_on_the_rejected_side(real):
    root, _, _ = real
    export = build_dpo(root, ROUND)
    c = export.counts
    assert c.rows_in == c.exported + sum(c.skipped.values())
    swift, trl = rows(export, "swift"), rows(export, "trl")
    web = [r for r in swift if r["env"] == "liveweb"]
    assert len(web) == 3  # the three diverging LiveWeb episodes, divergent after 1, 2 and 3 shared calls
    for row, t in zip(swift, trl):
        assert set(row) == {"messages", "rejected_response", "tools", "env", "task_id", "num_tokens"}
        assert set(t) == {"prompt", "chosen", "rejected", "tools", "env", "task_id", "num_tokens"}
        check_openai(row["messages"])
        check_openai(row["messages"][:-1] + row["rejected_response"])
        cut = max(i for i, m in enumerate(row["messages"]) if m["role"] == "user") + 1
        # ms-swift rebuilds the rejected side as messages[:cut] + rejected_response
        assert row["rejected_response"][:-1] == row["messages"][cut:-1]
        assert any(m.get("tool_calls") for m in row["rejected_response"][:-1])
        assert row["rejected_response"][-1] != row["messages"][-1]
        assert row["rejected_response"][-1]["tool_calls"][0]["function"]["name"] == "view_more"
        assert t["prompt"] == row["messages"][:-1] and t["chosen"] == [row["messages"][-1]]
        assert t["rejected"] == [row["rejected_response"][-1]]
    assert sorted(sum(1 for m in r["messages"][:-1] if m.get("tool_calls")) for r in web) == [1, 2, 3]


def test_grpo_rows_carry_what_the_reward_needs(real):
    root, verified, _ = real
    export = build_grpo(root, ROUND)
    tasks = {(r["env"], r["task_id"]) for rs in verified.values() for r in rs}
    assert export.counts.exported == len(tasks)
    for row, t in zip(rows(export, "swift"), rows(export, "trl")):
        assert [m["role"] for m in row["messages"]] == ["system", "user"] == [m["role"] for m in t["prompt"]]
        assert {k: v for k, v in row.items() if k != "messages"} == {k: v for k, v in t.items() if k != "prompt"}
        assert json.loads(row["task_spec"]) and isinstance(json.loads(row["task_history"]), list)


def test_folder_card_split_and_max_tokens(real, tmp_path):
    root, _, _ = real
    a = export_round("sft", root, ROUND, tmp_path / "a", ExportOptions(validation_fraction=0.3, license="cc-by-4.0"))
    export_round("sft", root, ROUND, tmp_path / "b", ExportOptions(validation_fraction=0.3, license="cc-by-4.0"))
    names = sorted(p.relative_to(tmp_path / "a").as_posix() for p in (tmp_path / "a").rglob("*") if p.is_file())
    assert names == ["README.md", "swift/train.jsonl", "swift/validation.jsonl", "trl/train.jsonl",
                     "trl/validation.jsonl"]
    for name in names:  # deterministic, byte for byte
        assert (tmp_path / "a" / name).read_bytes() == (tmp_path / "b" / name).read_bytes()
    card = (tmp_path / "a" / "README.md").read_text()
    assert card.startswith("---\nlicense: cc-by-4.0\n") and "liveweb_trace@1" in card and f"game_replay@{GameReplayVerifier.version}" in card
    assert f"rows: {a.counts.exported} " in card and "tuner_type lora" in card and "--train_type" not in card
    train = {r["task_id"] for r in a.rows["swift"]["train"]}
    assert not train & {r["task_id"] for r in a.rows["swift"]["validation"]}
    limit = sorted(a.counts.lengths)[len(a.counts.lengths) // 2]
    cut = build_sft(root, ROUND, ExportOptions(max_tokens=limit))
    over = sum(n > limit for n in a.counts.lengths)
    assert over > 0 and cut.counts.skipped[OVER_MAX_TOKENS] == over
    assert cut.counts.exported == a.counts.exported - over and max(cut.counts.lengths) <= limit
    assert a.counts.as_metadata()["num_tokens"]["max"] == max(a.counts.lengths)


def test_unexportable_rows_are_named(real):
    _, verified, _ = real
    row = copy.deepcopy(next(r for r in verified["liveweb"] if r["passed"]))
    row["messages"][2]["tool_calls"][0]["function"]["arguments"] = "{oops"
    with pytest.raises(NotExportable, match="export.tool_arguments_not_json"):
        sft_example(row)


# ------------------------------------------------------------------------------------------ rewards

def test_reward_replays_real_episodes(real, monkeypatch):
    _, verified, cache = real
    monkeypatch.setenv("ORBIT_LIVEWEB_CACHE", str(cache))
    from orbit import rewards

    rewards._verifier.cache_clear()
    web = [r for r in verified["liveweb"] if r["passed"]][0]
    wrong = [r for r in verified["liveweb"] if not r["passed"]][0]
    row = build_grpo_row(web)
    full = [m for m in sft_example(web)["messages"]]
    # ms-swift: `messages` is the whole conversation, ending in the completion (a multi-turn rollout)
    got = rewards.OrbitVerifierORM()([full[-1]["content"]], messages=[full], **listed(row))
    assert got == [1.0]
    bad = sft_example(wrong)["messages"]
    assert rewards.OrbitVerifierORM()([""], messages=[bad], **listed(build_grpo_row(wrong))) == [0.0]
    # TRL, one turn: a valid first call cannot finish the episode; the right answers in one stop call can
    first_call = full[2]
    stop = full[-1]
    prompt = row["prompt"]
    calls = [[{"role": "assistant", "content": "", "tool_calls": first_call["tool_calls"]}],
             [{"role": "assistant", "content": "", "tool_calls": stop["tool_calls"]}],
             "<tool_call>" + json.dumps({"name": "goto", "arguments": {"url": "https://elsewhere.example/"}}) + "</tool_call>",
             "<tool_call>" + json.dumps({"name": first_call["tool_calls"][0]["function"]["name"], "arguments":
                                         json.loads(first_call["tool_calls"][0]["function"]["arguments"])}) + "</tool_call>"]
    got = reward_func(calls, prompts=[prompt] * 4, **listed(row, 4))
    assert got == [UNFINISHED_REWARD, 1.0, 0.0, UNFINISHED_REWARD]


def test_reward_scores_one_game_move_on_legality(real):
    _, verified, _ = real
    game = verified["tic_tac_toe"][0]
    row = build_grpo_row(game)
    meta = json.loads(game["metadata"])
    assert json.loads(row["task_history"]) == history_before_first_turn("tic_tac_toe", meta)
    first_answer = next(m["content"] for m in game["messages"] if m["role"] == "assistant")
    got = reward_func([first_answer, "99", "no idea"], prompts=[row["prompt"]] * 3, **listed(row, 3))
    assert got == [UNFINISHED_REWARD, 0.0, 0.0]


def build_grpo_row(record):
    from orbit.stages.export import trl_grpo_example

    return trl_grpo_example(record)


def listed(row, n=1):
    return {k: [v] * n for k, v in row.items() if k != "prompt"}


def test_each_export_and_round_loads_as_itself_through_one_datasets_cache(tmp_path):
    """``datasets.load_dataset(<export folder>)`` keys its cache by the folder's name and the config's
    name: sft_export/r0000 and dpo_export/r0000 share the folder name, so the card's configs must not
    share a name, or the second load returns the first one's rows. A split without tool use lacks the
    ``tools`` key: the card declares one set of features, or the splits fail to load together."""
    import datasets

    datasets.disable_progress_bars()
    root = None
    for round_key in ("r0000", "r0001"):
        root = build_lake(tmp_path / "home", liveweb_tasks=4, game_tasks=4, round_key=round_key)
    folders = {}
    for round_key in ("r0000", "r0001"):
        for kind in ("sft", "dpo", "grpo"):
            folder = root / f"{kind}_export" / round_key
            export_round(kind, root, round_key, folder, ExportOptions(validation_fraction=0.3))
            folders[kind, round_key] = folder
    cache = str(tmp_path / "hf-cache")
    for (kind, round_key), folder in folders.items():
        for flavour in ("trl", "swift"):
            expected = {split: [json.loads(line) for line in (folder / flavour / f"{split}.jsonl").read_text().splitlines()]
                        for split in ("train", "validation")}
            name = f"{kind}_{round_key}_{flavour}"
            loaded = datasets.load_dataset(str(folder), name, cache_dir=cache)
            assert set(loaded) == {s for s, rows in expected.items() if rows}, (name, set(loaded))
            for split, ds in loaded.items():
                got = [(r["env"], r["task_id"], r["num_tokens"]) for r in ds]
                assert got == [(r["env"], r["task_id"], r["num_tokens"]) for r in expected[split]], (name, split)
                assert set(ds.column_names) >= {k for r in expected[split] for k in r}, (name, split)
        default = datasets.load_dataset(str(folder), cache_dir=cache)  # the card's default: the TRL flavour
        assert {s: len(d) for s, d in default.items()} == {
            s: len(d) for s, d in datasets.load_dataset(str(folder), f"{kind}_{round_key}_trl", cache_dir=cache).items()}


def test_the_llm_trainer_reads_the_sft_export_as_written(real, tmp_path):
    """``train_llm_checkpoint`` reads the SFT export folder the export asset writes (TRL flavour, train
    split) through the one reader of exports; every row is counted, the game rows reach the trainer."""
    from orbit.stages.export import read_export
    from orbit.training.llm import prepare_examples

    root, _, _ = real
    folder = lake.partition_dir(root, "sft_export", ROUND)
    export_round("sft", root, ROUND, folder, ExportOptions(validation_fraction=0.2))
    rows = read_export(folder, "trl", ("train",))
    assert rows == [json.loads(line) for line in (folder / "trl" / "train.jsonl").read_text().splitlines()]
    examples, counts = prepare_examples(rows, ["tic_tac_toe"], max_examples=100)
    games = [r for r in rows if r["env"] == "tic_tac_toe"]
    assert games and len(examples) == counts["used"] == len(games), counts
    assert counts["skipped.not_plain_chat"] == len(rows) - len(games) > 0, counts
    assert [e["messages"][-1]["content"] for e in examples] and all(
        e["messages"][0]["role"] == "system" for e in examples)
    # a line that is not a JSON object is a row counted as skipped, never lost or fatal
    (folder / "trl" / "train.jsonl").write_text('not json\n[1, 2]\n' + "[" * 5000 + "]" * 5000 + "\n"
                                               + (folder / "trl" / "train.jsonl").read_text())
    bad = read_export(folder, "trl", ("train",))
    assert bad[:3] == [{}, {}, {}] and prepare_examples(bad, ["tic_tac_toe"], 100)[1]["skipped.no_messages"] == 3
    with pytest.raises(ValueError):
        read_export(folder, "../x")


def test_the_readme_and_the_cards_show_the_commands_the_trainer_tier_runs(real, tmp_path):
    """One source (SWIFT_COMMANDS, trl_snippet): the README shows each command with MODEL and MAX_LENGTH,
    and every card shows it for its own export, in the shape tests/trainers/check_*.py read."""
    import re
    from pathlib import Path

    from orbit.stages.export import SWIFT_COMMANDS, SWIFT_DEVICE_FLAGS, TRL_DEVICE_CONFIGS, trl_snippet

    readme = (Path(__file__).resolve().parents[2] / "README.md").read_text()
    for kind in ("sft", "dpo", "grpo"):
        val = "" if kind == "grpo" else " --val_dataset ./swift/validation.jsonl"
        assert SWIFT_COMMANDS[kind].format(model="MODEL", folder=".", val=val, max_length="MAX_LENGTH") in readme, kind
        assert trl_snippet(kind, None, f"{kind}_r0004_trl", "MAX_LENGTH") in readme, kind
        for device in ("cpu", "gpu"):
            assert f"`{SWIFT_DEVICE_FLAGS[device][kind]}`" in readme and f"`{TRL_DEVICE_CONFIGS[device]}`" in readme
    root, _, _ = real
    for kind in ("sft", "dpo", "grpo"):
        folder = tmp_path / kind
        export = export_round(kind, root, ROUND, folder, ExportOptions(validation_fraction=0.3))
        card = (folder / "README.md").read_text()
        command = re.search(r"```bash\n(swift [^\n]+)\n```", card).group(1)
        longest = export.counts.length_stats()["max"]
        assert f"--max_length {longest}" in command and "--model MODEL" in command, command
        assert re.search(r"flags: CPU `([^`]*)`", card).group(1) == SWIFT_DEVICE_FLAGS["cpu"][kind]
        script = re.search(r"```python\n(.*?)\n```", card, re.S).group(1)
        assert script == trl_snippet(kind, None, f"{kind}_{ROUND}_trl", longest) and script.endswith("trainer.train()")
        assert re.search(r"DEVICE: CPU `([^`]*)`", card).group(1) == TRL_DEVICE_CONFIGS["cpu"]


def test_a_record_an_export_cannot_render_is_counted_never_fatal(real, tmp_path):
    """A failed sample whose tool arguments nest 5,000 deep (what a degenerate model writes) is the
    rejected side of a DPO pair: the export skips that pair with its reason and writes the others."""
    import pyarrow as pa

    from orbit.io.schema import VERIFIED_SCHEMA

    root, verified, _ = real
    rows = [dict(r) for r in verified["liveweb"]]
    chosen = next(r for r in rows if r["passed"])
    hostile = dict(chosen, record_id="hostile-0", sample_idx=99, passed=False, score=0.0, reasons=["x"])
    call = {"id": "call_h", "type": "function",
            "function": {"name": "goto", "arguments": '{"url": ' + "[" * 5000 + "]" * 5000 + "}"}}
    hostile["messages"] = list(chosen["messages"][:2]) + [
        {"role": "assistant", "content": None, "tool_calls": [call], "tool_call_id": None, "name": None}]
    lake_root = tmp_path / "lake"
    for env, table in verified.items():
        extra = [hostile] if env == "liveweb" else []
        lake.write_table(pa.Table.from_pylist([dict(r) for r in table] + extra, schema=VERIFIED_SCHEMA),
                         lake.partition_file(lake_root, "verified_samples", ROUND, env))
    export = export_round("dpo", lake_root, ROUND, tmp_path / "dpo", ExportOptions())
    skipped = {k: v for k, v in export.counts.skipped.items() if k.startswith("export.")}
    assert skipped == {"export.tool_arguments_not_json": 1}, export.counts.skipped
    assert export.counts.exported > 0 and (tmp_path / "dpo" / "trl" / "train.jsonl").read_text()
    assert export.counts.rows_in == export.counts.exported + sum(export.counts.skipped.values())
