"""The textarena family against real TextArena: generation, determinism, the replay verifier, check()."""

import pickle
import subprocess
import sys

import pytest
from ta_helpers import GAMES, TWO_PLAYER, generate, meta, request, spec

from orbit.envs.base import EnvOptionError
from orbit.envs.textarena import agents, moves
from orbit.envs.textarena.family import FAMILY
from orbit.envs.textarena.games import SUPPORTED, default_view
from orbit.envs.textarena.prompts import system_prompt
from orbit.envs.textarena.session import Session
from orbit.envs.textarena.tasks import Task
from orbit.io.schema import RECORD_SCHEMA, records_to_batch
from orbit.stages.verify import VerifyCounts, verify_batch, verify_record

N_TASKS = {"Sudoku-v0": 4, "Mastermind-v0": 6}


@pytest.fixture(scope="module")
def rows() -> dict[str, list[dict]]:
    """Each supported game's self-play rows (default options: scripted learner, random opponent)."""
    return {env_id: generate(spec(env_id), n=N_TASKS.get(env_id, 10)) for env_id in GAMES}


@pytest.mark.parametrize("env_id", list(GAMES))
def test_every_generated_row_verifies_to_its_own_score(rows, env_id):
    env = spec(env_id)
    records = rows[env_id]
    assert len(records) == N_TASKS.get(env_id, 10)
    verifier = FAMILY.verifier(env)
    for record in records:
        score, passed, reasons = verify_record(record, verifier, env.pass_threshold)
        assert set(reasons) <= {"score.below_threshold"}, (record["task_id"], reasons)
        assert score == record["score"] and passed == (score == 1.0)
        m = meta(record)
        assert record["source"] == "selfplay" and record["policy"] == "textarena:scripted"
        assert m["task"]["env_id"] == env_id and record["task_id"] == Task(**m["task"]).task_id
        assert m["learner"] == "scripted" and m["opponent"] == ("random" if env_id in TWO_PLAYER else None)
        assert m["rewards"] is not None and m["terminated"] and m["answer_format"]
        learner = [text for pid, text in m["actions"] if pid == m["task"]["seat"]]
        assert learner == [msg["content"] for msg in record["messages"] if msg["role"] == "assistant"]
        assert record["messages"][0]["content"] == system_prompt(env_id, m["task"]["seat"])
    # the verify stage over the batch (plain chat as PlainTexts) agrees with verify_record row by row
    counts = VerifyCounts()
    out = verify_batch(records_to_batch(records, RECORD_SCHEMA), verifier, env.pass_threshold, counts).to_pylist()
    assert [r["score"] for r in out] == [r["score"] for r in records]
    assert counts.passed == sum(r["score"] == 1.0 for r in records)


def test_the_same_request_gives_the_same_rows_and_another_round_other_tasks(rows):
    env = spec("KuhnPoker-v0")
    again = generate(env, n=10)
    assert again == rows["KuhnPoker-v0"]
    other = generate(env, n=10, round_key="r0001")
    assert [r["task_id"] for r in other] != [r["task_id"] for r in again]
    seats = [meta(r)["task"]["seat"] for r in again]
    assert seats == [i % 2 for i in range(10)]
    two = generate(env, n=3, samples=2)  # samples of a task differ by the learner's seed, never by the task
    assert [r["task_id"] for r in two] == [t for t in [r["task_id"] for r in again[:3]] for _ in range(2)]
    assert len({r["seed"] for r in two}) == 6 and len({r["record_id"] for r in two}) == 6


@pytest.mark.parametrize("env_id", ["TicTacToe-v0", "ConnectFour-v0", "KuhnPoker-v0", "SimpleNegotiation-v0",
                                    "Mastermind-v0", "Sudoku-v0"])
def test_the_scripted_learner_wins_some(rows, env_id):
    p = sum(r["score"] for r in rows[env_id]) / len(rows[env_id])
    print(f"{env_id}: scripted learner p = {p:.2f} over {len(rows[env_id])} tasks")
    assert p > 0


def test_random_learners_and_opponent_kinds_verify_too():
    for env_id, options in [("TicTacToe-v0", {"learner": "random", "opponent": "scripted"}),
                            ("ConnectFour-v0", {"opponent": "self"}),
                            ("SimpleNegotiation-v0", {"opponent": "scripted"}),
                            ("Sudoku-v0", {"learner": "random"})]:
        env = spec(env_id, **options)
        FAMILY.check(env)
        records = generate(env, n=3)
        verifier = FAMILY.verifier(env)
        for record in records:
            score, _, reasons = verify_record(record, verifier, env.pass_threshold)
            assert set(reasons) <= {"score.below_threshold"} and score == record["score"], (env_id, reasons)
            assert meta(record)["learner"] == options.get("learner", "scripted")
    # a random Sudoku learner fills cells the rules allow but not always the hidden solution: TextArena
    # rejects such a move once (a retry) and ends the game on the second, as recorded
    randoms = generate(spec("Sudoku-v0", learner="random"), n=3)
    assert any(meta(r)["terminated"].startswith("Invalid Move") for r in randoms)


@pytest.mark.parametrize("env_id", list(GAMES))
def test_each_user_message_is_what_textarenas_own_wrapped_env_shows(rows, env_id):
    """Joined turn by turn, the learner's user messages are the observation string of TextArena's
    registered default wrappers, and the replayed rewards are TextArena's own ``close()``."""
    import textarena

    for record in rows[env_id][:3]:
        m = meta(record)
        task = m["task"]
        env = textarena.make(env_id)
        env.reset(num_players=SUPPORTED[env_id].num_players, seed=task["seed"])
        users = [msg["content"] for msg in record["messages"] if msg["role"] == "user"]
        turn = 0
        for pid, text in m["actions"]:
            current, observation = env.get_observation()
            assert current == pid
            if pid == task["seat"]:
                turn += 1
                assert observation == "".join("\n" + u for u in users[:turn] if u)
            env.step(text)
        rewards, _ = env.close()
        assert [float(rewards[p]) for p in sorted(rewards)] == m["rewards"]


def test_the_legal_move_listers_and_random_agents_agree():
    for env_id, game in SUPPORTED.items():
        for seed in range(3):
            session = Session(game, seed)
            for index in range(6):
                if session.done:
                    break
                pid = session.current
                legal = game.legal(session.env, pid)
                assert legal, env_id
                drawn = game.random(session.env, pid, agents.AgentRng(seed, index))
                if env_id == "SimpleNegotiation-v0":
                    assert drawn in legal
                else:  # a fast path writes only the chosen move: the same as rng.choice over the list
                    assert drawn == agents.AgentRng(seed, index).choice(legal), env_id
                session.step(drawn)
    # SimpleNegotiation's offers drawn by index are the listed ones
    session = Session(SUPPORTED["SimpleNegotiation-v0"], 4)
    offers = moves.negotiation_offers(session.env, 0)
    assert [moves.negotiation_offer_at(session.env, 0, k) for k in range(len(offers))] == offers


def test_the_table_matches_textarenas_registration():
    """Each game's observation view is its registered default wrapper's, and only the games marked
    ``random_in_step`` draw from the global random generator after the reset."""
    import random

    from textarena.envs.registration import ENV_REGISTRY

    for env_id, game in SUPPORTED.items():
        assert default_view(env_id) == game.view, env_id
        assert "ActionFormattingWrapper" in [w.__name__ for w in ENV_REGISTRY[env_id].default_wrappers]
        drew = False
        for seed in range(3):
            session = Session(game, seed)
            for index in range(40):
                if session.done:
                    break
                text = agents.act("scripted", game, session.env, session.current, seed, index)
                before = random.getstate()
                session.step(text)
                drew |= random.getstate() != before
        assert drew == game.random_in_step, env_id


def test_the_verifier_pickles_and_verifies_the_same_after():
    env = spec("Mastermind-v0")
    verifier = FAMILY.verifier(env)
    copy = pickle.loads(pickle.dumps(verifier))
    assert (copy.name, copy.version, copy.parallel_safe) == ("textarena_replay", "1", True)
    assert set(copy.columns) == {"env", "task_id", "messages", "tools", "score", "metadata"}
    for record in generate(env, n=2):
        assert copy.verify(record) == verifier.verify(record)


def test_the_family_module_imports_without_textarena():
    code = ("import sys, orbit.envs.textarena.family as f; "
            "assert 'textarena' not in sys.modules, 'textarena imported'; "
            "f.FAMILY.check(__import__('orbit.envs.base', fromlist=['EnvSpec']).EnvSpec("
            "name='t', family='textarena', description='', options={'env_id': 'Sudoku-v0'})); "
            "assert 'textarena' not in sys.modules, 'check imported textarena'")
    subprocess.run([sys.executable, "-c", code], check=True, timeout=120)


def _refused(**options) -> EnvOptionError:
    with pytest.raises(EnvOptionError) as caught:
        FAMILY.check(spec(**options))
    return caught.value


def test_check_refuses_what_it_cannot_run_naming_the_option():
    unknown = _refused(env_id="TicTacToe-v9")
    assert unknown.key == "env_id" and "unknown TextArena env" in unknown.message
    assert "did you mean" in unknown.message and "TicTacToe-v0" in unknown.message
    unsupported = _refused(env_id="Chess-v0")
    assert unsupported.key == "env_id" and "does not support" in unsupported.message
    assert all(env_id in unsupported.message for env_id in GAMES)  # says which are supported
    wordle = _refused(env_id="Wordle-v0")
    assert wordle.key == "env_id" and "needs a download" in wordle.message and "fails offline" in wordle.message
    print(wordle.message)
    assert _refused(env_id=None).key == "env_id"
    assert _refused(opponent="minimax").key == "opponent"
    self_alone = _refused(env_id="Mastermind-v0", opponent="self")
    assert self_alone.key == "opponent" and "one-player" in self_alone.message
    assert _refused(learner="self").key == "learner"
    for bad in (0, "10", True, 10_000):
        assert _refused(max_turns=bad).key == "max_turns"
    assert _refused(max_tokens=0).key == "max_tokens"
    stray = _refused(game="tic_tac_toe")
    assert stray.key == "game" and "not an option of the textarena family" in stray.message
    FAMILY.check(spec("TicTacToe-v0", opponent="self", learner="random", max_turns=5, max_tokens=64))


def test_max_turns_ends_an_episode_unfinished():
    env = spec("Sudoku-v0", max_turns=3)
    records = generate(env, n=2)
    verifier = FAMILY.verifier(env)
    for record in records:
        m = meta(record)
        assert m["terminated"] == "max_turns" and m["rewards"] is None and record["score"] == 0.0
        assert sum(msg["role"] == "assistant" for msg in record["messages"]) == 3
        assert verify_record(record, verifier, env.pass_threshold)[2] == ["game.not_terminal"]


def test_policy_tasks_are_the_generated_tasks():
    env = spec("ConnectFour-v0")
    tasks = FAMILY.policy_tasks(request(env, n=4))
    assert [task_id for task_id, _ in tasks] == [r["task_id"] for r in generate(env, n=4)]
    assert all(task.task_id == task_id for task_id, task in tasks)
