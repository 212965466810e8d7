"""The reward never raises (hypothesis): any completion and any column value gives one float in [0, 1].

A GRPO run calls the reward on whatever the model wrote and whatever the dataset holds: degenerate text
(a thousand nested brackets), strings where objects are expected, JSON that is not JSON, mistyped
columns, an unknown env. Each must score (0 when it cannot be scored, with the reason in
``orbit.rewards.LAST_REASONS``), never stop the trainer. Built on real GRPO rows of every env family
(the games' self-play and LiveWeb's teacher), mutated.
"""

import json
import math

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from orbit import rewards
from orbit.stages.export import grpo_fields

FUZZ = settings(max_examples=150, deadline=None, derandomize=True, database=None,
                suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large,
                                       HealthCheck.function_scoped_fixture])

LEAVES = st.one_of(st.none(), st.booleans(), st.integers(min_value=-(2**70), max_value=2**70),
                   st.floats(allow_nan=True, allow_infinity=True), st.text(max_size=16),
                   st.sampled_from(["", "assistant", "user", "tool", "{", "[", "\x00", "\u0663", "NaN"]))
JSON = st.recursive(LEAVES, lambda inner: st.lists(inner, max_size=4) | st.dictionaries(
    st.sampled_from(["role", "content", "tool_calls", "function", "name", "arguments", "id", "move", "x"]),
    inner, max_size=4), max_leaves=16)
DEGENERATE = st.sampled_from([
    "[" * 1000 + "]" * 1000, "{" * 600 + "}" * 600, '{"name": ' * 400 + "1" + "}" * 400,
    "<tool_call>" + "[" * 3000 + "</tool_call>", '<tool_call>{"name": "goto", "arguments": ' + "[" * 2000 + "</tool_call>",
    "\ud800\udfff" * 10, "x" * 300_000, '{"move": ' + "[" * 1500 + "4" + "]" * 1500 + "}",
])
COMPLETIONS = st.one_of(st.text(max_size=200), DEGENERATE, JSON, st.lists(JSON, max_size=4),
                        st.lists(st.fixed_dictionaries({"role": LEAVES}, optional={"content": JSON, "tool_calls": JSON}),
                                 max_size=4))


@pytest.fixture(scope="module")
def rows(winners):
    return {env: grpo_fields(record) for env, record in winners.items()}


def _mutate(value, draw_value, mode):
    if mode == "keep":
        return value
    if mode == "json_text":
        return json.dumps(draw_value, default=str) if not isinstance(draw_value, float) or math.isfinite(draw_value) else "nan"
    if mode == "raw":
        return draw_value
    if mode == "nested":
        return "[" * 2000 + "]" * 2000
    return None


@FUZZ
@given(data=st.data())
def test_no_completion_or_column_makes_the_reward_raise(rows, liveweb_cache_dir, monkeypatch, data):
    monkeypatch.setenv("ORBIT_LIVEWEB_CACHE", str(liveweb_cache_dir))
    env = data.draw(st.sampled_from(sorted(rows)))
    row = rows[env]
    n = data.draw(st.integers(min_value=1, max_value=3))
    completions = data.draw(st.lists(COMPLETIONS, min_size=n, max_size=n))
    columns = {}
    for name in ("env", "task_spec", "task_id", "task_history", "tools"):
        mode = data.draw(st.sampled_from(["keep", "keep", "json_text", "raw", "nested", "none"]))
        value = row.get(name)
        if name == "env" and mode != "keep":
            value = data.draw(st.sampled_from(["nope", "", "tic_tac_toe", "liveweb", "leduc_poker"]) | LEAVES)
        else:
            value = _mutate(value, data.draw(JSON), mode)
        columns[name] = data.draw(st.sampled_from([[value] * n, value]))  # a column, or a scalar where one is expected
    prompt = data.draw(st.sampled_from([[row["prompt"]] * n, None, [data.draw(JSON)] * n, "a prompt"]))
    messages = data.draw(st.sampled_from([None, [row["prompt"] + [{"role": "assistant", "content": "4"}]] * n,
                                          [data.draw(JSON)] * n]))
    extra = {"messages": messages} if messages is not None else {}
    got = rewards.reward_func(completions, prompts=prompt, **columns, **extra)
    assert isinstance(got, list) and len(got) == n, got
    assert all(type(v) is float and 0.0 <= v <= 1.0 for v in got), got
    assert len(rewards.LAST_REASONS) == n


def test_degenerate_output_scores_zero_with_a_reason(rows):
    row = rows["tic_tac_toe"]
    cols = {k: [row[k]] * 3 for k in ("env", "task_spec", "task_id", "task_history")}
    got = rewards.reward_func(["[" * 1000 + "]" * 1000, '{"move": ' + "[" * 1500 + "4" + "]" * 1500 + "}", None],
                              prompts=[row["prompt"]] * 3, **cols)
    assert got == [0.0, 0.0, 0.0] and all(rewards.LAST_REASONS), rewards.LAST_REASONS
    got = rewards.reward_func(["4"], prompts=[row["prompt"]], env=["no_such_env"], task_spec=[row["task_spec"]])
    assert got == [0.0] and rewards.LAST_REASONS == [["reward.env_unknown"]]


@pytest.mark.parametrize("text", ["nan", "2", "-0.1", "inf", "abc", "0.1x"])
def test_a_reward_setting_out_of_range_is_refused_naming_the_variable(monkeypatch, text):
    monkeypatch.setenv("ORBIT_REWARD_UNFINISHED", text)
    with pytest.raises(ValueError, match="ORBIT_REWARD_UNFINISHED"):
        rewards.unit_setting("ORBIT_REWARD_UNFINISHED", 0.1)


def test_a_reward_setting_in_range_is_taken(monkeypatch):
    monkeypatch.setenv("ORBIT_REWARD_UNFINISHED", "0.25")
    assert rewards.unit_setting("ORBIT_REWARD_UNFINISHED", 0.1) == 0.25
    monkeypatch.delenv("ORBIT_REWARD_UNFINISHED")
    assert rewards.unit_setting("ORBIT_REWARD_UNFINISHED", 0.1) == 0.1
