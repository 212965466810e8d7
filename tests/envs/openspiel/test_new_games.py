"""The six games beyond the first four: othello, hex (7x7), clobber (5x5) by C++ MCTS; liars_dice and
goofspiel (turn-based) by CFR+ policy tables and the best response to them; gin_rummy by OpenSpiel's
C++ SimpleGinRummyBot. Real pyspiel, the registry's own settings: rows are deterministic and pass
their verifier, tampered rows fail with a named reason, no prompt shows what the learner's
information state does not hold, and the bots are as strong as the registry says."""

import asyncio
import copy
import json
import random

import pyarrow as pa
import pytest
from helpers import generate

from orbit.envs import GenerationRequest, env_spec, family_of
from orbit.envs.base import EnvOptionError
from orbit.envs.openspiel.bots import make_bot
from orbit.envs.openspiel.prompts import MAX_TURN_PROMPT_CHARS, legal_ids, turn_prompt
from orbit.envs.openspiel.tasks import GameTask, load_game
from orbit.envs.openspiel.verifier import GameReplayVerifier
from orbit.policies.table_policy import TablePolicy, legal_actions

NEW_GAMES = ["othello", "hex", "clobber", "liars_dice", "goofspiel", "gin_rummy"]
IMPERFECT = ["liars_dice", "goofspiel", "gin_rummy"]
ROWS = {"othello": 4, "hex": 10, "clobber": 12, "liars_dice": 16, "goofspiel": 16, "gin_rummy": 10}

_ROWS: dict[str, list[dict]] = {}


def rows(env: str) -> list[dict]:
    """The env's rows of one small request with its registry settings (made once per test session)."""
    if env not in _ROWS:
        _ROWS[env] = generate(env, n=ROWS[env], samples=1)
    return _ROWS[env]


def verifier(env):
    return GameReplayVerifier(env_spec(env))


def reasons(env, record):
    return verifier(env).verify(record).reasons


def meta(record):
    return json.loads(record["metadata"])


def with_meta(record, **changes):
    record = copy.deepcopy(record)
    data = meta(record)
    data.update(changes)
    record["metadata"] = json.dumps(data)
    return record


def replay(task, history):
    state = load_game(task).new_initial_state()
    for action in history:
        state.apply_action(action)
    return state


def learner_turns(record):
    """(history prefix, shown prompt) at each learner turn of a record."""
    data = meta(record)
    task = GameTask.from_json(data["task"])
    shown = [m["content"] for m in record["messages"] if m["role"] == "user"]
    state = load_game(task).new_initial_state()
    out = []
    for i, action in enumerate(data["history"]):
        if not state.is_chance_node() and state.current_player() == task.seat:
            out.append((data["history"][:i], shown[len(out)]))
        state.apply_action(action)
    return task, out


# ---- generated rows ---------------------------------------------------------------------------------

@pytest.mark.parametrize("env", NEW_GAMES)
def test_rows_are_deterministic_and_pass_their_verifier(env):
    first = rows(env)
    assert generate(env, n=ROWS[env], samples=1) == first  # the same request gives the same rows
    v = verifier(env)
    spec = env_spec(env)
    for record in first:
        verdict = v.verify(record)
        assert verdict.reasons == (), (record["task_id"], verdict)
        assert verdict.score == record["score"]
        data = meta(record)
        assert data["task"]["game"] == spec.options["game"]
        assert data["task"]["params"] == dict(spec.options.get("params") or {})
        assert data["learner"] == spec.options["learner"] and data["opponent"] == spec.options["opponent"]
        assert data["terminated"] is None
    # the learner's turns: system prompt, then user/assistant pairs answered with a legal ID
    task, turns = learner_turns(first[0])
    assert turns and first[0]["messages"][0]["role"] == "system"
    for prefix, prompt in turns:
        assert legal_actions(prompt) == list(legal_ids(replay(task, prefix), task.seat))


@pytest.mark.parametrize("env", NEW_GAMES)
def test_a_round_of_another_seed_plays_other_games(env):
    if env == "othello":
        pytest.skip("othello's MCTS matches are the slowest: the other five show it")
    other = generate(env, n=ROWS[env], samples=1, round_key="r0001")
    assert [r["seed"] for r in other] != [r["seed"] for r in rows(env)]


def test_draws_never_pass():
    """A drawn goofspiel game scores 0.5: below the threshold 1.0, never kept as a win."""
    from orbit.stages.verify import verify_record

    spec = env_spec("goofspiel")
    draws = [r for r in generate("goofspiel", n=40, learner={"kind": "random"}) if r["score"] == 0.5]
    assert draws
    for record in draws:
        score, passed, why = verify_record(record, verifier("goofspiel"), spec.pass_threshold)
        assert score == 0.5 and not passed and why == ["score.below_threshold"]


# ---- tampering ----------------------------------------------------------------------------------------

def _first_long(env, seat=None):
    return copy.deepcopy(next(r for r in rows(env) if len(r["messages"]) >= 5
                              and (seat is None or meta(r)["task"]["seat"] == seat)))


@pytest.mark.parametrize("env", NEW_GAMES)
def test_a_changed_learner_action_fails(env):
    record = _first_long(env)
    task, turns = learner_turns(record)
    prefix, _ = turns[0]
    state = replay(task, prefix)
    played = meta(record)["history"][len(prefix)]
    other = next(a for a in state.legal_actions() if a != played)
    # the answer changed: it no longer is the recorded move
    changed = copy.deepcopy(record)
    changed["messages"][2]["content"] = str(other)
    assert "action.history_mismatch" in reasons(env, changed)
    # the recorded move changed (and the answer with it): the rest of the game no longer follows
    history = list(meta(record)["history"])
    history[len(prefix)] = other
    both = with_meta(changed, history=history)
    got = reasons(env, both)
    assert got and set(got) <= {"observation.mismatch", "legal_actions.mismatch", "history.illegal_action",
                                "history.illegal_chance", "history.past_terminal", "game.not_terminal",
                                "outcome.mismatch", "score.claim_mismatch", "action.illegal",
                                "action.history_mismatch", "trajectory.extra_messages"}, got


@pytest.mark.parametrize("env", NEW_GAMES)
def test_a_changed_opponent_action_fails(env):
    record = next(r for r in rows(env) if len(learner_turns(r)[1]) >= 2)
    data = meta(record)
    task, turns = learner_turns(record)
    state = load_game(task).new_initial_state()
    first_turn = len(turns[0][0])
    for i, action in enumerate(data["history"]):
        player = state.current_player()
        if i > first_turn and player >= 0 and player != task.seat and len(state.legal_actions()) > 1:
            other = next(a for a in state.legal_actions() if a != action)
            history = list(data["history"])
            history[i] = other
            got = reasons(env, with_meta(record, history=history))
            assert got, (env, i)
            assert set(got) & {"observation.mismatch", "legal_actions.mismatch", "history.illegal_action",
                               "history.illegal_chance", "history.past_terminal", "game.not_terminal",
                               "outcome.mismatch", "score.claim_mismatch", "trajectory.extra_messages"}, got
            return
        state.apply_action(action)
    pytest.skip(f"{env}: no opponent move with a choice after the learner's first turn in these rows")


@pytest.mark.parametrize("env", ["liars_dice", "gin_rummy"])
def test_a_changed_chance_outcome_fails(env):
    """The learner's own die or card changed: its prompts no longer match; an outcome that cannot be
    drawn there (a card already dealt): history.illegal_chance."""
    record = _first_long(env)
    data = meta(record)
    task = GameTask.from_json(data["task"])
    state = load_game(task).new_initial_state()
    mine = None  # the index of a chance outcome the learner sees (its die, its first card)
    for i, action in enumerate(data["history"]):
        if state.is_chance_node():
            if env == "liars_dice" and i == task.seat:  # dice are rolled for player 0, then player 1
                mine = i
            if env == "gin_rummy" and i == 10 * task.seat:  # 10 cards to player 0, then 10 to player 1
                mine = i
        state.apply_action(action)
    assert mine is not None
    history = list(data["history"])
    state = replay(task, history[:mine])
    outcomes = [a for a, _ in state.chance_outcomes()]
    history[mine] = next(a for a in outcomes if a != history[mine] and (env == "liars_dice" or a not in history))
    assert "observation.mismatch" in reasons(env, with_meta(record, history=history))
    if env == "gin_rummy":
        history = list(data["history"])
        history[mine + 1] = history[mine]  # the same card dealt twice
        assert reasons(env, with_meta(record, history=history))[0] == "history.illegal_chance"


@pytest.mark.parametrize("env", NEW_GAMES)
def test_another_games_trajectory_or_spec_fails(env):
    record = rows(env)[0]
    other_env = "hex" if env != "hex" else "othello"
    # another game's record verified as this env's
    foreign = copy.deepcopy(rows(other_env)[0])
    foreign["env"] = env
    assert reasons(env, foreign) == ("task.env_mismatch",)
    # this env's trajectory under another game's task spec (and its task id)
    data = meta(record)
    spec = dict(data["task"], game=other_env, params=meta(rows(other_env)[0])["task"]["params"])
    moved = with_meta(record, task=spec)
    moved["task_id"] = GameTask.from_json(spec).task_id
    assert reasons(env, moved) == ("task.env_mismatch",)
    # the env's game with other parameters
    params = {"liars_dice": {"numdice": 2}, "goofspiel": {"num_cards": 4, "points_order": "descending"},
              "hex": {"board_size": 5}, "clobber": {"rows": 5, "columns": 6}, "othello": {"x": 1},
              "gin_rummy": {"knock_card": 9}}[env]
    assert reasons(env, with_meta(record, task=dict(data["task"], params=params))) == ("task.env_mismatch",)
    # a record of this env's game filed under another env
    assert GameReplayVerifier(env_spec(other_env)).verify(record).reasons == ("record.env_mismatch",)


@pytest.mark.parametrize("env", NEW_GAMES)
def test_a_changed_seat_or_prompt_fails(env):
    record = _first_long(env)
    data = meta(record)
    swapped = with_meta(record, task=dict(data["task"], seat=1 - data["task"]["seat"]))
    assert reasons(env, swapped)  # the task id no longer matches, and the seat's prompts differ
    swapped["task_id"] = GameTask.from_json(meta(swapped)["task"]).task_id
    assert reasons(env, swapped)
    edited = copy.deepcopy(record)
    edited["messages"][1]["content"] = edited["messages"][1]["content"].replace("\n", " \n", 1)
    assert "observation.mismatch" in reasons(env, edited)
    extra = copy.deepcopy(record)
    extra["messages"][1]["content"] += "\n999 -> resign"
    assert "legal_actions.mismatch" in reasons(env, extra)


# ---- what a prompt may show --------------------------------------------------------------------------

def _one_changed(task, history):
    """Every history that differs from ``history`` in one action (a chance outcome or a move) and is
    legal to its end, with its state."""
    game = load_game(task)
    state = game.new_initial_state()
    for i, action in enumerate(history):
        options = [a for a, _ in state.chance_outcomes()] if state.is_chance_node() else state.legal_actions()
        for other in options:
            if other == action:
                continue
            alt = game.new_initial_state()
            ok = True
            for a in history[:i] + [other] + history[i + 1:]:
                legal = [o for o, _ in alt.chance_outcomes()] if alt.is_chance_node() else alt.legal_actions()
                if alt.is_terminal() or a not in legal:
                    ok = False
                    break
                alt.apply_action(a)
            if ok:
                yield history[:i] + [other] + history[i + 1:], alt
        state.apply_action(action)


@pytest.mark.parametrize("env", ["liars_dice", "goofspiel"])
def test_no_prompt_shows_more_than_the_learners_information_state(env):
    """Replaying the records: every history that differs in one action (the opponent's die, the bid the
    opponent made earlier in the same turn, ...) and leaves the learner's information state as it was
    gives the prompt the record shows, although the true state differs; and across all records, one
    information state of the learner is always shown as one prompt."""
    hidden = 0
    by_info: dict[tuple, str] = {}
    for record in rows(env):
        task, turns = learner_turns(record)
        for prefix, shown in turns:
            state = replay(task, prefix)
            info = state.information_state_string(task.seat)
            assert by_info.setdefault((task.seat, info), shown) == shown
            assert turn_prompt(state, task.seat) == shown
            for alt_history, alt in _one_changed(task, prefix):
                if alt.current_player() != task.seat or alt.information_state_string(task.seat) != info:
                    continue
                assert turn_prompt(alt, task.seat) == shown, (alt_history, prefix)  # another history, one prompt
                hidden += 1
    assert hidden > 0  # the records held hidden information to vary


def test_goofspiel_never_shows_the_bid_made_earlier_in_the_same_turn():
    checked = 0
    for record in rows("goofspiel"):
        task, turns = learner_turns(record)
        if task.seat != 1:
            continue
        for prefix, shown in turns:
            before = replay(task, prefix[:-1])  # player 0's bid of this turn was the last action
            assert before.current_player() == 0
            for bid in before.legal_actions():
                alt = before.child(bid)
                assert turn_prompt(alt, 1) == shown
                checked += 1
    assert checked > 0


GIN_DEAL = 21  # 10 cards to player 0, 10 to player 1, then the upcard
DRAW_STOCK, KNOCK = 53, 55


def _gin_known(task, history, seat):
    """The cards the learner knows at the end of ``history`` (a game before any knock), from the game's
    rules alone: its dealt cards, the upcard, the cards it drew from the stock, every discard."""
    known = set(history[10 * seat: 10 * seat + 10]) | {history[20]}
    state = replay(task, history[:GIN_DEAL])
    drawer = None
    for action in history[GIN_DEAL:]:
        if state.is_chance_node():  # the card drawn from the stock: its drawer sees it
            assert drawer is not None
            if drawer == seat:
                known.add(action)
            drawer = None
        else:
            if action < 52:  # a discard: everybody sees it
                known.add(action)
            drawer = state.current_player() if action == DRAW_STOCK else None
        state.apply_action(action)
    return known


def test_gin_rummy_prompts_show_no_card_the_learner_has_not_seen():
    """Swapping two cards the learner has not seen (the opponent's hidden cards, the stock) in every chance
    outcome gives another game, legal to the learner's turn, in which the learner's prompt is the record's:
    the prompt holds nothing of the opponent's hand. Swapping one of the learner's own cards with an unseen
    one changes the prompt (the test can see a leak)."""
    rng = random.Random(0)
    hidden = controls = 0
    for record in rows("gin_rummy"):
        task, turns = learner_turns(record)
        for prefix, shown in turns[::3]:
            if any(a >= KNOCK for a in prefix[GIN_DEAL:] if a != DRAW_STOCK):
                break  # after a knock the hands are laid down
            known = _gin_known(task, prefix, task.seat)
            unseen = sorted(set(range(52)) - known)
            original = replay(task, prefix)
            for x, y in [tuple(rng.sample(unseen, 2)) for _ in range(4)]:
                swap = {x: y, y: x}
                chance = _chance_positions(task, prefix)
                alt_history = [swap.get(a, a) if i in chance else a for i, a in enumerate(prefix)]
                assert all(a == alt for i, (a, alt) in enumerate(zip(prefix, alt_history)) if i not in chance)
                alt = replay(task, alt_history)
                assert alt.current_player() == task.seat
                if str(alt) != str(original):
                    hidden += 1
                assert turn_prompt(alt, task.seat) == shown, (x, y)
            mine = sorted(set(prefix[10 * task.seat: 10 * task.seat + 10]) & known - set(prefix[GIN_DEAL:]))
            if mine and unseen:
                x, y = mine[0], unseen[0]
                swap = {x: y, y: x}
                chance = _chance_positions(task, prefix)
                alt = replay(task, [swap.get(a, a) if i in chance else a for i, a in enumerate(prefix)])
                assert turn_prompt(alt, task.seat) != shown
                controls += 1
    assert hidden > 0 and controls > 0


def _chance_positions(task, history):
    state = load_game(task).new_initial_state()
    out = set()
    for i, action in enumerate(history):
        if state.is_chance_node():
            out.add(i)
        state.apply_action(action)
    return out


# ---- prompts, policies and decoding -----------------------------------------------------------------

@pytest.mark.parametrize("env", NEW_GAMES)
def test_the_table_policy_plays_every_new_game_and_the_rows_verify(env):
    """A chat policy's match (the table policy, uniform) through the family's rollout: each request's
    constrained-decoding enum is the prompt's legal IDs, and the record verifies."""
    spec = env_spec(env)
    family = family_of(spec)
    request = GenerationRequest(env=spec, round_key="r0000", num_tasks=2, samples_per_task=1)
    policy = TablePolicy()

    async def complete(messages, tools, step, seed, decoding=None):
        prompt = messages[-1]["content"]
        assert list(decoding.choices) == legal_actions(prompt)
        assert len(prompt) <= MAX_TURN_PROMPT_CHARS
        return policy.complete(messages, tools, seed=seed, decoding=decoding)

    for _, task in family.policy_tasks(request):
        record = asyncio.run(family.rollout(request, task, 0, policy.id, complete))
        assert meta(record)["terminated"] is None
        verdict = GameReplayVerifier(spec).verify(record)
        assert verdict.reasons == () and verdict.score == record["score"]


def test_turn_prompts_stay_within_the_budget():
    """Every learner turn prompt of the new games (gin_rummy's are the longest: the hand, the discard
    pile and up to a dozen card actions) is at most MAX_TURN_PROMPT_CHARS characters."""
    longest = {}
    for env in NEW_GAMES:
        prompts = [m["content"] for r in rows(env) for m in r["messages"] if m["role"] == "user"]
        longest[env] = max(map(len, prompts))
    print("longest turn prompt (chars):", longest)
    assert max(longest.values()) <= MAX_TURN_PROMPT_CHARS


def test_the_family_refuses_bots_a_game_cannot_use():
    family = family_of(env_spec("liars_dice"))
    from dataclasses import replace

    def refused(env, **options):
        spec = env_spec(env)
        with pytest.raises(EnvOptionError) as err:
            family.check(replace(spec, options={**spec.options, **options}))
        return err.value.key

    assert refused("liars_dice", opponent={"kind": "mcts", "simulations": 10}) == "opponent.kind"  # sees the dice
    assert refused("gin_rummy", learner={"kind": "mcts"}) == "learner.kind"
    assert refused("othello", opponent={"kind": "cfr_plus", "iterations": 5}) == "opponent.kind"  # never solved
    assert refused("hex", learner={"kind": "simple_gin_rummy"}) == "learner.kind"
    assert refused("goofspiel", opponent={"kind": "best_response"}) == "opponent.kind"
    assert refused("goofspiel", opponent={"kind": "random"}) == "learner.kind"  # a best response to what?
    assert refused("liars_dice", learner={"kind": "cfr_plus", "iterations": 0}) == "learner.iterations"


# ---- strength --------------------------------------------------------------------------------------

STRENGTH_GAMES = {"othello": 40, "hex": 40, "clobber": 40, "liars_dice": 40, "goofspiel": 40, "gin_rummy": 40}
LEARNER_GAMES = {"othello": 4, "hex": 40, "clobber": 40, "liars_dice": 40, "goofspiel": 40, "gin_rummy": 40}


def test_the_default_opponents_beat_a_uniform_learner_and_the_learners_beat_the_opponents():
    """p = the share of games won (draws are not wins) over alternating seats: a uniform learner against
    each env's default opponent, and each env's self-play learner against it."""
    table = {}
    for env in NEW_GAMES:
        uniform = generate(env, n=STRENGTH_GAMES[env], learner={"kind": "random"}, round_key="r0100")
        learner = (rows(env) if LEARNER_GAMES[env] <= ROWS[env]
                   else generate(env, n=LEARNER_GAMES[env], round_key="r0101"))
        p = lambda rs: sum(r["score"] == 1.0 for r in rs) / len(rs)  # noqa: E731
        table[env] = (p(uniform), p(learner), len(uniform), len(learner))
    print("\nenv: p(uniform vs opponent), p(self-play learner vs opponent), games")
    for env, (pu, pl, nu, nl) in table.items():
        print(f"  {env}: {pu:.2f} ({nu}), {pl:.2f} ({nl})")
    # Loose bounds (40 games): the expected p of a uniform learner is about 0.03-0.10 against the MCTS
    # opponents, 0.18 at liar's dice, 0.12 at goofspiel and 0 at gin rummy.
    for env, (pu, pl, _, _) in table.items():
        assert pu <= (0.05 if env == "gin_rummy" else 0.35), (env, pu)
        assert pl > pu, (env, pl, pu)


# ---- exports and the reward ----------------------------------------------------------------------------

def _columns(record):
    from orbit.stages.export import grpo_fields

    fields = grpo_fields(record)
    return {k: fields[k] for k in ("env", "task_id", "task_spec", "task_history")}, fields


def _conversation(record):
    """The conversation a multi-turn rollout of the record's game produces: its messages, then the closing
    ``final_prompt`` when the last move was not the learner's."""
    from orbit.envs.openspiel.chat_replay import final_prompt

    messages = [{"role": m["role"], "content": m["content"]} for m in record["messages"]]
    data = meta(record)
    task = GameTask.from_json(data["task"])
    state = load_game(task).new_initial_state()
    last = None
    for action in data["history"]:
        last = state.current_player()
        state.apply_action(action)
    if state.is_terminal() and last != task.seat:
        messages.append({"role": "user", "content": final_prompt(state, task.seat)})
    return messages


def _hidden_moves(env, seat):
    """Games whose conversation does not determine the opponent's moves: the prompts hide them (the tests
    above prove it), so the reward needs the rollout's ``history``."""
    return env == "gin_rummy" or (env == "goofspiel" and seat == 1)


@pytest.mark.parametrize("env", NEW_GAMES)
def test_the_reward_scores_a_whole_game_as_the_verify_stage_does(env):
    """The GRPO export's columns and the whole conversation: with the rollout's ``history`` the reward is the
    verify stage's score; without it too, except where the prompts hide the opponent's moves (goofspiel's
    second seat, gin rummy's stock draws): the conversation then fits more than one game, and the reward is
    0 with ``rollout.ambiguous``, never a win the game did not have."""
    from orbit.rewards import score
    from orbit.stages.verify import verify_record

    spec = env_spec(env)
    seen = set()
    for record in rows(env)[:8]:
        stage, _, why = verify_record(record, verifier(env), spec.pass_threshold)
        assert set(why) <= {"score.below_threshold"}
        columns, fields = _columns(record)
        assert fields["prompt"][-1]["content"] == record["messages"][1]["content"]  # the first turn, as generated
        messages = _conversation(record)
        history = json.dumps(meta(record)["history"])
        common = dict(task_id=columns["task_id"], task_history=columns["task_history"])
        assert score(env, columns["task_spec"], messages, history=history, **common)[0] == stage
        value, why = score(env, columns["task_spec"], messages, **common)
        if _hidden_moves(env, meta(record)["task"]["seat"]):
            assert value == stage or (value == 0.0 and why[0] == "rollout.ambiguous"), (value, stage, why)
        else:
            assert value == stage, (record["task_id"], value, stage)
        seen.add(stage)
    assert len(seen) > 1 or env in ("hex", "othello")  # wins and losses (these MCTS learners win nearly always)


@pytest.mark.parametrize("env", NEW_GAMES)
def test_a_game_session_continues_a_new_game_to_the_sessions_own_score(env):
    """GameSession (the environment side of a rollout) from the export's first turn, against a learner
    answering random legal IDs: the reward of the conversation plus the session's history is its score."""
    from orbit.envs.openspiel.session import GameSession
    from orbit.rewards import score

    rng = random.Random(5)
    for seed, record in enumerate(rows(env)[:3]):
        columns, fields = _columns(record)
        session = GameSession(env, columns["task_spec"], columns["task_history"], seed=seed)
        assert session.prompt() == fields["prompt"][-1]["content"]
        messages = [{"role": m["role"], "content": m["content"]} for m in fields["prompt"]]
        while True:
            answer = str(rng.choice(session.state.legal_actions(session.task.seat)))
            messages.append({"role": "assistant", "content": answer})
            step = session.step(answer)
            if step.message is not None:
                messages.append(step.message)
            if step.done:
                break
        value, why = score(env, columns["task_spec"], messages, task_id=columns["task_id"],
                           task_history=columns["task_history"], history=json.dumps(session.history))
        assert value == session.score and set(why) <= {"score.below_threshold"}, (value, session.score, why)


@pytest.mark.parametrize("env", ["clobber", "liars_dice", "goofspiel", "gin_rummy"])
def test_generated_rows_are_the_chat_paths_rows(env):
    """The generator's rows (bots played without text, each role with its own policy table, messages written
    afterwards) are the rows the chat path writes: ``match_steps`` answered with the learner bot's move as
    text, and ``make_record``."""
    from orbit.envs.openspiel.bots import bot_label
    from orbit.envs.openspiel.match import match_steps
    from orbit.envs.openspiel.tasks import match_seed
    from orbit.io.schema import make_record, records_to_batch

    spec = env_spec(env)
    family = family_of(spec)
    request = GenerationRequest(env=spec, round_key="r0003", num_tasks=6, samples_per_task=2)
    learner, opponent = dict(spec.options["learner"]), dict(spec.options["opponent"])
    learner_table, opponent_table = family._tables(request, learner, opponent)
    if env in ("liars_dice", "goofspiel"):  # the best response's table and the CFR+ table
        assert learner_table is not None and opponent_table is not None and learner_table is not opponent_table
    expected = []
    for task in family._tasks(request):
        game = load_game(task)
        for sample_idx in range(2):
            seed = match_seed("r0003", env, task.seed, sample_idx)
            bot = make_bot(learner, game, seed + 1, learner_table)
            steps = match_steps(task, make_bot(opponent, game, seed + 2, opponent_table), seed, game)
            try:
                turn = next(steps)
                while True:
                    turn = steps.send(str(bot(turn.state)))
            except StopIteration as stop:
                result = stop.value
            expected.append(make_record(
                env=env, task_id=task.task_id, round_key="r0003", sample_idx=sample_idx, source="selfplay",
                policy=bot_label(learner), seed=seed, messages=result.messages,
                score=result.learner_score(task.seat),
                metadata={"task": task.to_json(), "history": result.history, "returns": result.returns,
                          "terminated": result.terminated, "learner": learner, "opponent": opponent}))
    generated = pa.Table.from_batches(list(family.generate(request)))
    assert generated.equals(pa.Table.from_batches([records_to_batch(expected)]), check_metadata=True)
