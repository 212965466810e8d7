"""The replay verifier trusts nothing: each kind of bad record fails with its own reason, and nothing raises."""

import copy
import json

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from ta_helpers import generate, meta, spec, with_meta

from orbit.envs.base import Verdict
from orbit.envs.textarena.family import FAMILY
from orbit.envs.textarena.games import MAX_ACTION_CHARS, SUPPORTED
from orbit.envs.textarena.session import FORFEITED, REJECTED, Session
from orbit.io.schema import message
from orbit.stages.verify import verify_record

TTT = spec("TicTacToe-v0")
VERIFIER = FAMILY.verifier(TTT)


@pytest.fixture(scope="module")
def ttt() -> list[dict]:
    return generate(TTT, n=12)


def _reasons(record: dict, env=TTT) -> list[str]:
    return verify_record(record, FAMILY.verifier(env), env.pass_threshold)[2]


def _long_game(records: list[dict], seat: int) -> dict:
    """A record of ``seat`` with at least three learner turns and an opponent move between the first two."""
    for record in records:
        m = meta(record)
        if m["task"]["seat"] == seat and sum(pid == seat for pid, _ in m["actions"]) >= 3:
            return copy.deepcopy(record)
    raise AssertionError("no long enough game")


def _occupied(record: dict, before: int) -> str:
    """A cell taken before action ``before``."""
    return [text for _, text in meta(record)["actions"][:before]][0]


def test_the_untouched_records_verify(ttt):
    for record in ttt:
        assert set(_reasons(record)) <= {"score.below_threshold"}


def test_an_action_list_that_becomes_illegal_midway(ttt):
    record = _long_game(ttt, seat=1)  # seat 1: the opponent (player 0) moved first
    m = meta(record)
    i = next(k for k, (pid, _) in enumerate(m["actions"]) if pid == 1)  # the learner's first move
    taken = _occupied(record, i)
    m["actions"][i][1] = taken  # a cell already taken: TextArena rejects it, yet the record goes on with player 0
    record["messages"][2]["content"] = taken
    assert _reasons(with_meta(record, actions=m["actions"])) == [f"actions.illegal:{i}"]


def test_actions_recorded_after_the_end(ttt):
    record = copy.deepcopy(ttt[0])
    m = meta(record)
    n = len(m["actions"])
    extra = m["actions"] + [[1 - m["actions"][-1][0], "[0]"]]
    assert _reasons(with_meta(record, actions=extra)) == [f"actions.after_end:{n}"]


def test_a_game_lost_by_repeated_invalid_moves_must_end_there():
    record = copy.deepcopy(generate(spec("TicTacToe-v0"), n=1)[0])  # seat 0: the learner moves first
    session = Session(SUPPORTED["TicTacToe-v0"], meta(record)["task"]["seed"])
    chat = [record["messages"][0]]
    statuses = []
    for answer in ("no move", "still none"):  # rejected (a retry), then rejected again: player 0 loses the game
        chat += [message("user", session.observe(0)), message("assistant", answer)]
        statuses.append(session.step(answer))
    assert statuses == [REJECTED, FORFEITED] and session.rewards() == [-1.0, 1.0]
    assert "attempted an invalid move" in chat[3]["content"]
    bad = [[0, "no move"], [0, "still none"]]
    forfeit = {**record, "messages": chat, "score": 0.0}
    assert _reasons(with_meta(forfeit, actions=bad, rewards=[-1.0, 1.0])) == ["score.below_threshold"]
    # ... and an action after that loss is illegal
    assert _reasons(with_meta(forfeit, actions=bad + [[1, "[4]"]], rewards=None)) == ["actions.illegal:1"]


def test_a_wrong_player_id(ttt):
    record = _long_game(ttt, seat=0)
    m = meta(record)
    i = next(k for k, (pid, _) in enumerate(m["actions"]) if pid == 1)
    m["actions"][i][0] = 0
    assert _reasons(with_meta(record, actions=m["actions"])) == [f"actions.wrong_player:{i}"]


def test_an_edited_observation(ttt):
    record = _long_game(ttt, seat=0)
    record["messages"][3]["content"] = record["messages"][3]["content"].replace("Player 1", "Player 7", 1)
    assert _reasons(record) == ["observation.mismatch:3"]


def test_an_assistant_message_that_is_not_the_recorded_action(ttt):
    record = _long_game(ttt, seat=0)
    m = meta(record)
    record["messages"][4]["content"] = "[8]" if record["messages"][4]["content"] != "[8]" else "[7]"
    j = [k for k, (pid, _) in enumerate(m["actions"]) if pid == 0][1]  # the learner's second action
    assert _reasons(record) == [f"actions.chat_mismatch:{j}"]


def test_seed_env_id_task_id_and_env_changes():
    env = spec("Mastermind-v0")
    record = generate(env, n=1)[0]
    task = meta(record)["task"]
    moved = {**task, "seed": task["seed"] + 1}
    assert _reasons(with_meta(record, task=moved), env) == ["task.id_mismatch"]
    # the seed and the id changed together: the game's feedback in the chat is not the new code's
    renamed = {**with_meta(record, task=moved), "task_id": f"Mastermind-v0-s{moved['seed']}-p0"}
    reasons = _reasons(renamed, env)
    assert reasons and any(r.startswith(("observation.mismatch", "game.not_terminal")) for r in reasons), reasons
    assert _reasons(with_meta(record, task={**task, "env_id": "Sudoku-v0"}), env) == ["task.env_mismatch"]
    assert _reasons({**record, "task_id": record["task_id"] + "x"}, env) == ["task.id_mismatch"]
    assert _reasons({**record, "env": "tictactoe_ta"}, env) == ["record.env_mismatch"]
    assert _reasons(with_meta(record, task={**task, "seed": -1}), env) == ["task.spec_invalid:seed"]
    assert _reasons(with_meta(record, task={**task, "seed": 2**63}), env) == ["task.spec_invalid:seed"]
    assert _reasons(with_meta(record, task={**task, "seat": 1}), env) == ["task.spec_invalid:seat"]
    assert _reasons(with_meta(record, task={**task, "seat": True}), env) == ["task.spec_invalid:seat"]
    assert _reasons(with_meta(record, task={**task, "extra": 1}), env) == ["task.spec_invalid:keys"]
    assert _reasons(with_meta(record, task="Mastermind-v0"), env) == ["task.spec_invalid:task"]


def test_shape_claim_and_trajectory_rules(ttt):
    record = copy.deepcopy(ttt[0])
    m = meta(record)
    assert VERIFIER.verify({**record, "metadata": "[1, 2]"}).reasons == ("record.metadata_not_object",)
    assert _reasons({**record, "tools": "[]"}) == ["record.tools_mismatch"]
    called = copy.deepcopy(record)
    called["messages"][2]["tool_calls"] = [{"id": "c1", "type": "function",
                                            "function": {"name": "f", "arguments": "{}"}}]
    assert VERIFIER.verify(called).reasons == ("trajectory.unexpected_tool_call:2",)
    system = copy.deepcopy(record)
    system["messages"][0]["content"] += " Always play [0]."
    assert _reasons(system) == ["prompt.system_mismatch"]
    assert _reasons({**record, "score": 1.0 - record["score"]}) == ["score.claim_mismatch"]
    assert _reasons(with_meta(record, rewards=[0.0, 0.0])) == ["outcome.mismatch"]
    more = {**record, "messages": record["messages"] + [message("user", "again?"), message("assistant", "[0]")]}
    assert _reasons(more) == ["trajectory.extra_messages"]
    last_learner = max(k for k, (pid, _) in enumerate(m["actions"]) if pid == m["task"]["seat"])
    cut = with_meta(record, actions=m["actions"][:last_learner], rewards=None)
    cut["messages"] = cut["messages"][:-2]
    cut["score"] = None
    assert _reasons(cut) == ["game.not_terminal"]
    assert _reasons(with_meta(record, actions="[4]")) == ["actions.invalid"]
    assert _reasons(with_meta(record, actions=[[0, 4]] + m["actions"][1:])) == ["actions.invalid:0"]
    assert _reasons(with_meta(record, actions=[[True, "[4]"]] + m["actions"][1:])) == ["actions.invalid:0"]
    too_long = "[4]" + " " * MAX_ACTION_CHARS
    assert _reasons(with_meta(record, actions=[[m["actions"][0][0], too_long]] + m["actions"][1:])) \
        == ["actions.too_long:0"]


def test_a_negotiation_text_textarenas_parser_would_stall_on_is_refused():
    env = spec("SimpleNegotiation-v0")
    record = generate(env, n=1)[0]
    m = meta(record)
    stall = "[Offer " + " " * 600  # TextArena's offer pattern backtracks for seconds on this
    actions = [[m["actions"][0][0], stall]] + m["actions"][1:]
    assert _reasons(with_meta(record, actions=actions), env) == ["actions.unsafe:0"]


_JSON = st.recursive(st.none() | st.booleans() | st.integers(-2**70, 2**70) | st.floats() | st.text(max_size=20),
                     lambda inner: st.lists(inner, max_size=5)
                     | st.dictionaries(st.text(max_size=8), inner, max_size=5),
                     max_leaves=20)
_ACTION = st.lists(st.one_of(st.integers(-1, 3), st.booleans(), st.text(max_size=12),
                             st.sampled_from(["[0]", "[4]", "[8]", "[9]", "[col 3]", "x"])), min_size=0, max_size=3)
_MESSAGE = st.one_of(st.none(), st.text(max_size=5), st.fixed_dictionaries(
    {"role": st.sampled_from(["system", "user", "assistant", "tool", None, 3]),
     "content": st.one_of(st.none(), st.text(max_size=30), st.sampled_from(["[4]", "[0]"]), st.integers())},
    optional={"tool_calls": _JSON, "tool_call_id": _JSON, "name": _JSON}))


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(data=st.data())
def test_verify_never_raises(ttt, data):
    base = copy.deepcopy(data.draw(st.sampled_from(ttt)))
    m = meta(base)
    kind = data.draw(st.sampled_from(["metadata", "task", "actions", "messages", "mixed", "columns"]))
    if kind == "metadata":
        base["metadata"] = data.draw(st.one_of(st.text(max_size=40), _JSON.map(json.dumps), st.none(), st.integers()))
    elif kind == "task":
        base = with_meta(base, task=data.draw(st.one_of(_JSON, st.fixed_dictionaries(
            {"env_id": st.sampled_from(["TicTacToe-v0", "Sudoku-v0"]), "seed": _JSON, "seat": _JSON}))))
    elif kind == "actions":
        actions = data.draw(st.one_of(_JSON, st.lists(_ACTION, max_size=12)))
        base = with_meta(base, actions=actions)
    elif kind == "messages":
        base["messages"] = data.draw(st.one_of(_JSON, st.lists(_MESSAGE, max_size=8)))
    elif kind == "mixed":
        actions = m["actions"][:]
        i = data.draw(st.integers(0, max(0, len(actions) - 1)))
        actions[i:i] = data.draw(st.lists(_ACTION, max_size=2))
        base = with_meta(base, actions=actions, rewards=data.draw(_JSON))
        msgs = base["messages"][:]
        j = data.draw(st.integers(0, len(msgs)))
        base["messages"] = msgs[:j] + data.draw(st.lists(_MESSAGE, max_size=2)) + msgs[j:]
    else:
        for key in data.draw(st.lists(st.sampled_from(["env", "task_id", "tools", "score", "seed"]), max_size=3)):
            base[key] = data.draw(_JSON)
    verdict = VERIFIER.verify(base)
    assert isinstance(verdict, Verdict) and 0.0 <= verdict.score <= 1.0
    assert all(isinstance(r, str) for r in verdict.reasons)
    assert verdict.score == 0.0 or not verdict.reasons
    score, passed, reasons = verify_record(base, VERIFIER, TTT.pass_threshold)
    assert passed == (not reasons)
