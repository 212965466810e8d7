"""The verifier's speed-ups change nothing: the replay cache, the narrow read and the worker pool give
the same verdicts, reasons, counts and output batches as a plain serial replay."""

import copy
import json
import random
from concurrent.futures import Future

import pyarrow as pa
import pytest

import orbit.stages.verify as V
from orbit.compute import workers
from orbit.envs import GenerationRequest, env_spec, family_of
from orbit.envs.openspiel import replay_cache
from orbit.envs.openspiel.tasks import load_game
from orbit.io.plain_messages import chat_order
from orbit.io.schema import RECORD_SCHEMA

GAMES = ["tic_tac_toe", "connect_four", "kuhn_poker", "leduc_poker"]


def generate(env, n):
    spec = env_spec(env)
    req = GenerationRequest(env=spec, round_key="r0000", num_tasks=n, samples_per_task=1, workers=1)
    return pa.Table.from_batches(list(family_of(spec).generate(req))).to_pylist()


def tampered(records, seed=0):
    """Every record once more with one edit: history, answers, prompts, claims, trailing turns."""
    rng = random.Random(seed)
    out = []
    for rec in records:
        r = copy.deepcopy(rec)
        meta = json.loads(r["metadata"])
        kind = rng.randrange(7)
        if kind == 0 and meta["history"]:
            meta["history"][rng.randrange(len(meta["history"]))] += 1
        elif kind == 1 and meta["history"]:
            meta["history"] = meta["history"][: rng.randrange(len(meta["history"]))]
        elif kind == 2 and len(r["messages"]) > 2:
            r["messages"][2]["content"] = str(rng.randrange(-1, 12))
        elif kind == 3 and len(r["messages"]) > 1:
            r["messages"][1]["content"] = r["messages"][1]["content"].replace("\n", " \n", 1)
        elif kind == 4 and len(r["messages"]) > 1:
            r["messages"][1]["content"] += "\n99 -> x(9,9)"
        elif kind == 5:
            r["score"] = 1.0 - (r["score"] or 0.0)
            meta["returns"] = [0.5, 0.5]
        else:
            r["messages"] = r["messages"] + [dict(r["messages"][-1])]
        r["metadata"] = json.dumps(meta)
        out.append(r)
    return out


@pytest.mark.parametrize("env", GAMES)
def test_replay_cache_gives_the_verdicts_of_a_plain_replay(env, monkeypatch):
    spec = env_spec(env)
    records = generate(env, 30)
    records += tampered(records)
    verifier = family_of(spec).verifier(spec)
    task = json.loads(records[0]["metadata"])["task"]
    game = load_game(task["game"], task["params"])
    replay_cache.clear()
    cold = [verifier.verify(r) for r in records]  # builds the trie: nodes that two replays went through
    admitted = replay_cache.game_tree(game).nodes
    warm = [verifier.verify(r) for r in records]  # ... and their children
    warmer = [verifier.verify(r) for r in records]  # every node known
    monkeypatch.setattr(replay_cache, "ADMIT_VISITS", 0)  # every new node remembered at once
    replay_cache.clear()
    eager = [verifier.verify(r) for r in records]
    assert 1 < admitted <= replay_cache.game_tree(game).nodes
    monkeypatch.setattr(replay_cache, "MAX_NODES", 1)  # nothing remembered: every node from pyspiel
    replay_cache.clear()
    plain = [verifier.verify(r) for r in records]
    assert cold == warm == warmer == eager == plain
    assert any(v.reasons and v.reasons != ("score.below_threshold",) for v in plain)


@pytest.mark.parametrize("pool_up_after", [0, 3], ids=["pool_running", "pool_starting"])
def test_parallel_verify_batches_match_serial(monkeypatch, pool_up_after):
    """The pool either runs already, or comes up after this process has verified the first batches."""
    spec = env_spec("kuhn_poker")
    records = generate("kuhn_poker", 60)
    records += tampered(records, seed=3)
    table = pa.Table.from_pylist(records, schema=RECORD_SCHEMA)
    batches = table.to_batches(max_chunksize=25)
    verifier = family_of(spec).verifier(spec)

    serial_counts = V.VerifyCounts()
    serial = list(V.verify_batches(batches, verifier, spec.pass_threshold, serial_counts, workers=1))
    monkeypatch.setattr(V, "PARALLEL_MIN_ROWS", 50)
    monkeypatch.setattr(verifier, "parallel_safe", True, raising=False)
    pool = workers.start_pool(2).result()
    ready = Future()
    if not pool_up_after:
        ready.set_result(pool)
    monkeypatch.setattr(workers, "start_pool", lambda n: ready)
    handed = []

    def stream():  # the pool comes up once this many batches were handed over
        for batch in batches:
            if len(handed) == pool_up_after and not ready.done():
                ready.set_result(pool)
            handed.append(batch)
            yield batch

    parallel_counts = V.VerifyCounts()
    before = workers.POOL_STATS["requests"]
    parallel = list(V.verify_batches(stream(), verifier, spec.pass_threshold, parallel_counts, workers=2))
    assert [b.num_rows for b in parallel] == [b.num_rows for b in serial]
    assert pa.Table.from_batches(parallel).equals(pa.Table.from_batches(serial))
    assert parallel_counts == serial_counts and list(parallel_counts.reasons) == list(serial_counts.reasons)
    assert serial_counts.failed > 0
    assert workers.POOL_STATS["requests"] == before + 1  # it ran on the worker pool


def message_variants(records):
    """Records whose messages are not plain chat in one way each (the batch path must see it too)."""
    call = {"id": "call_1", "type": "function", "function": {"name": "f", "arguments": "{}"}}
    edits = [
        lambda m: m[1].update(tool_calls=[call]),
        lambda m: m[1].update(tool_calls=[]),
        lambda m: m[2].update(tool_call_id="call_1"),
        lambda m: m[1].update(role="tool"),
        lambda m: m[2].update(content=None),
        lambda m: m.__setitem__(1, None),
        lambda m: m.__setitem__(slice(None), [x for x in m if x is None or x.get("role") != "assistant"]),
        lambda m: m[2].update(content="x" * (V.MAX_CONTENT_CHARS + 1)),
        lambda m: m[1].update(content="\u00e9" * (V.MAX_CONTENT_CHARS + 1)),  # too many characters, not just bytes
        lambda m: m.__setitem__(slice(None), m * (V.MAX_MESSAGES // len(m) + 1)),
        lambda m: m.clear(),
    ]
    out = []
    for i, rec in enumerate(records):
        r = copy.deepcopy(rec)
        edits[i % len(edits)](r["messages"])
        out.append(r)
    out.append(dict(copy.deepcopy(records[0]), messages=None))
    return out


def plain_variants(records):
    """Records whose messages are still plain chat, but out of chat order or long in bytes only."""
    edits = [
        lambda m: m.__setitem__(slice(1, 3), [m[2], m[1]]),  # an assistant turn before the user's
        lambda m: m[0].update(role="user"),  # no system prompt
        lambda m: m.append({"role": "user", "content": "and now?"}),  # in order, ending on a user turn
        lambda m: m.insert(3, {"role": "system", "content": "be brief"}),  # a second system prompt
        lambda m: m.insert(2, {"role": "user", "content": "hm"}),  # two user turns in a row
        lambda m: m[1].update(content="\u00e9" * (V.MAX_CONTENT_CHARS // 2 + 1)),  # over the limit in bytes only
    ]
    out = []
    for i, rec in enumerate(records):
        r = copy.deepcopy(rec)
        edits[i % len(edits)](r["messages"])
        out.append(r)
    return out


@pytest.mark.parametrize("env", GAMES)
def test_column_checked_plain_rows_give_the_row_by_row_verdicts(env):
    """verify_batch (plain rows found column-wise, counts per batch) == verify_record row by row on plain lists."""
    spec = env_spec(env)
    records = generate(env, 30)
    variants = message_variants(records)
    records += tampered(records) + plain_variants(records) + variants
    table = pa.Table.from_pylist(records, schema=RECORD_SCHEMA)
    verifier = family_of(spec).verifier(spec)
    counts = V.VerifyCounts()
    out = pa.Table.from_batches([V.verify_batch(b, verifier, spec.pass_threshold, counts)
                                 for b in table.to_batches(max_chunksize=17)])
    expected_counts = V.VerifyCounts()
    expected = []
    for row in table.to_pylist():
        assert type(row["messages"]) is not V.PlainMessages
        score, passed, reasons = V.verify_record(row, verifier, spec.pass_threshold)
        expected.append({"score": score, "passed": passed, "reasons": reasons})
        expected_counts.add(passed, reasons)
    assert out.select(["score", "passed", "reasons"]).to_pylist() == expected
    assert counts == expected_counts and list(counts.reasons) == list(expected_counts.reasons)
    plain = V.plain_rows(table.column("messages"))
    assert 0 < plain.sum() < len(records)
    assert not any(plain[-len(variants):])  # every message variant is caught column-wise
    assert all(plain[-len(variants) - 30:-len(variants)])  # and no plain variant is


def test_plain_texts_hold_the_roles_and_texts_of_the_plain_message_lists():
    """A verifier that reads only roles and texts gets PlainTexts for exactly the plain rows, with the
    roles and texts of the dicts every other verifier gets (sliced batches included)."""
    records = generate("tic_tac_toe", 20)
    records += plain_variants(records) + message_variants(records)
    table = pa.Table.from_pylist(records, schema=RECORD_SCHEMA)
    assert getattr(family_of(env_spec("tic_tac_toe")).verifier(env_spec("tic_tac_toe")), "reads_plain_texts", False)
    seen = shared = 0
    for batch in table.to_batches(max_chunksize=7):
        messages = batch.column("messages")
        plain = V.plain_rows(messages)
        dicts = V.plain_message_lists(messages, plain)
        texts = V.plain_text_lists(messages, plain)
        for is_plain, d, t in zip(plain, dicts, texts):
            if is_plain:
                assert type(t) is V.PlainTexts and type(d) is V.PlainMessages
                assert (t.roles, t.texts) == ([m["role"] for m in d], [m["content"] for m in d]) and len(t) == len(d)
                seen += 1
                shared += t.roles is chat_order(len(t))
            else:
                assert t == d and type(t) is not V.PlainTexts
    assert seen == 20 + 20  # the generated rows, and the plain variants
    # rows in chat order share their roles (the generated ones, and the variants ending on a user turn or
    # long in bytes only); the rows out of order have their own
    assert shared == 20 + 3 + 3


@pytest.mark.parametrize("game_name", ["tic_tac_toe", "connect_four", "kuhn_poker", "leduc_poker", "othello", "hex",
                                       "clobber", "liars_dice", "gin_rummy", "chess"])
def test_remembered_legal_action_lines_are_the_states_own(game_name):
    """A game of STATELESS_ACTION_STRINGS reuses its legal-action texts by (player, legal actions): every
    state met in random play must spell its actions that way. Any other game (chess names a move by
    the position) is rendered from each state."""
    import pyspiel

    from orbit.envs.openspiel import prompts

    game = pyspiel.load_game(game_name)
    remembered = prompts.game_text(game).lines
    assert (remembered is not None) == (game_name in prompts.STATELESS_ACTION_STRINGS)
    rng = random.Random(11)
    checked = 0
    for _ in range({"chess": 4, "othello": 12, "hex": 12, "gin_rummy": 20}.get(game_name, 300)):
        state = game.new_initial_state()
        moves = 0
        while not state.is_terminal() and moves < 40:
            if state.is_chance_node():
                state.apply_action(rng.choice([a for a, _ in state.chance_outcomes()]))
                continue
            player = state.current_player()
            expected = "\n".join(f"{a} -> {state.action_to_string(player, a)}" for a in state.legal_actions(player))
            assert prompts.legal_action_lines(state, player) == expected
            assert prompts.turn_prompt(state, player).endswith(f"{prompts.LEGAL_HEADER}\n{expected}")
            checked += 1
            state.apply_action(rng.choice(state.legal_actions()))
            moves += 1
    assert checked > 100 and (remembered is None or 0 < len(remembered) < checked)


def test_the_batches_read_ahead_are_let_go_as_they_are_handed_on():
    """verify_batches reads the first PARALLEL_MIN_ROWS rows ahead to choose the pool; each of those batches is
    released once handed on, in order (at 1M tic_tac_toe rows holding them cost the parent ~100 MiB)."""
    from orbit.stages.verify import _drained

    head = ["b0", "b1", "b2"]
    seen = []
    for item in _drained(head):
        seen.append((item, list(head)))
    assert [s[0] for s in seen] == ["b0", "b1", "b2"]
    assert [s[1] for s in seen] == [["b2", "b1"], ["b2"], []]  # the list no longer holds what was handed on
