"""The six newer game envs (othello, hex, clobber, liars_dice, goofspiel, gin_rummy): self-play games/s,
verify replays/s, and the data-quality table (p of a uniform learner and of the self-play learner).

Per game env, with the registry's own settings (learner, opponent, params), in the same run:
  * self-play: ``FAMILY.generate`` with workers=1 (matches + chat messages + records + Arrow batches;
    every call a new round, so no call finds another's turn prompts remembered) vs a bare pyspiel loop
    that plays the very same games (the same tasks, seats and match seeds; checked move for move) with
    the same bots and settings: ``pyspiel.MCTSBot`` + ``RandomRolloutEvaluator`` for both seats
    (othello, hex, clobber), the same policy tables sampled with ``random.choices`` (liars_dice,
    goofspiel: CFR+ for the opponent, the best response for the learner), ``SimpleGinRummyBot`` for
    both seats (gin_rummy); chance drawn as the engine draws it; each state a clone of one initial
    state (as the engine makes gin_rummy's); no prompts, no records. Interleaved rounds, median.
    Goal: generator >= 0.9x bare;
  * verify: ``verify_batch`` with ``GameReplayVerifier`` on those rows (every timed round's) in a fresh
    process (no replay tree remembered; ``replay_cache.fresh_trees``) vs the bare replay (metadata
    JSON, fresh state, apply the history; as ``bench_verify.py``). Goal: >= 0.5x bare;
  * p: the share of games won (draws are not wins) by a uniform learner against the env's default
    opponent, and by the env's self-play learner (the generated rows), with Wilson 95% intervals.
    The policy tables are solved first, in this process (their wall time is printed: what a fresh
    lake's ``cfr_policies`` pays once).
"""

import argparse
import json
import random
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import _common as C  # noqa: E402

import pyspiel  # noqa: E402

from bench_verify import bare_replay, verify_all, verify_cold  # noqa: E402
from orbit.envs import GenerationRequest, env_spec, family_of  # noqa: E402
from orbit.envs.openspiel import cfr as cfr_module  # noqa: E402
from orbit.envs.openspiel.bots import MCTS_MAX_MEMORY_MB, MCTS_UCT_C  # noqa: E402
from orbit.envs.openspiel.family import game_tasks, table_config  # noqa: E402
from orbit.envs.openspiel.tasks import load_game, match_seeds  # noqa: E402
from orbit.stages.yields import wilson_interval  # noqa: E402

GAMES = ("othello", "hex", "clobber", "liars_dice", "goofspiel", "gin_rummy")
GOAL_SELFPLAY = 0.9
GOAL_VERIFY = 0.5
# games per self-play call and uniform-learner games, default (quick): MCTS othello is the slow one
SELFPLAY_GAMES = {"othello": 20, "hex": 200, "clobber": 600, "liars_dice": 3000, "goofspiel": 3000, "gin_rummy": 600}
QUICK_SELFPLAY = {"othello": 6, "hex": 30, "clobber": 120, "liars_dice": 600, "goofspiel": 600, "gin_rummy": 100}
UNIFORM_GAMES = {"othello": 200, "hex": 400, "clobber": 400, "liars_dice": 2000, "goofspiel": 2000, "gin_rummy": 400}
QUICK_UNIFORM = {"othello": 60, "hex": 200, "clobber": 200, "liars_dice": 1000, "goofspiel": 1000, "gin_rummy": 200}
_ROUNDS = iter(range(1, 10**6))


def request(env: str, games: int, round_key: str, **options) -> GenerationRequest:
    return GenerationRequest(env=env_spec(env), round_key=round_key, num_tasks=games, samples_per_task=1,
                             workers=1, options=options)


def generate(env: str, games: int, round_key: str | None = None, **options) -> list:
    """``FAMILY.generate`` consumed to the end (a new round unless ``round_key``): its batches."""
    req = request(env, games, round_key or f"r{next(_ROUNDS):04d}", **options)
    return list(family_of(req.env).generate(req))


def same_games(env: str, games: int) -> bool:
    """The bare loop plays the generator's very games: the same moves, chance draws and seats."""
    histories: list = []
    bare_selfplay(env, games, "r8888", histories)
    rows = [json.loads(m)["history"] for b in generate(env, games, "r8888") for m in b.column("metadata").to_pylist()]
    return rows == histories


def tables(env: str):
    spec = env_spec(env)
    req = request(env, 1, "r0000")
    return family_of(spec)._tables(req, spec.options["learner"], spec.options["opponent"])


def bare_bot(config, game, table, seed):
    """The bot ``config`` names, made from pyspiel directly (and the policy table as a dict)."""
    kind = config["kind"]
    if kind == "mcts":
        evaluator = pyspiel.RandomRolloutEvaluator(int(config.get("rollouts", 1)), seed)
        return pyspiel.MCTSBot(game, evaluator, MCTS_UCT_C, int(config["simulations"]), MCTS_MAX_MEMORY_MB, False,
                               seed, False).step
    if kind == "simple_gin_rummy":
        bots = {}
        params = game.get_parameters()

        def gin(state):
            player = state.current_player()
            if player not in bots:
                bots[player] = pyspiel.make_simple_gin_rummy_bot(params, player)
            return bots[player].step(state)
        return gin
    if kind == "random":
        rng = random.Random(seed)
        return lambda state: rng.choice(state.legal_actions())
    rng = random.Random(seed)

    def policy(state):
        entry = table.get(state.information_state_string(state.current_player()))
        if entry is None:
            return rng.choice(state.legal_actions())
        return rng.choices(entry[0], weights=entry[1], k=1)[0]
    return policy


def bare_selfplay(env: str, games: int, round_key: str, histories: list | None = None) -> int:
    """The ``games`` matches ``generate(env, games, round_key)`` plays (the same tasks, seats and match seeds,
    so the same moves), pyspiel and the tables only; each history appended to ``histories`` if given."""
    spec = env_spec(env)
    params = dict(spec.options.get("params") or {})
    game = load_game(spec.options["game"], params)
    learner_table, opponent_table = tables(env)
    initial = game.new_initial_state()
    moves = 0
    for task in game_tasks(spec.options["game"], params, games, 0):
        seed = match_seeds(round_key, env, task.seed)(0)
        learner = bare_bot(spec.options["learner"], game, learner_table, seed + 1)
        opponent = bare_bot(spec.options["opponent"], game, opponent_table, seed + 2)
        rng = None
        state = initial.clone()  # gin_rummy's new_initial_state costs 3 ms, a clone 0.03 ms (as the engine does)
        while not state.is_terminal():
            player = state.current_player()
            if player < 0:
                rng = rng or random.Random(seed)
                actions, probs = zip(*state.chance_outcomes())
                action = rng.choices(actions, weights=probs, k=1)[0]
            else:
                action = learner(state) if player == task.seat else opponent(state)
            state.apply_action(action)
            moves += 1
        if histories is not None:
            histories.append(state.history())
    return moves


def bare_replay_cloned(batches) -> int:
    """``bench_verify.bare_replay`` with each state a clone of one initial state per game (for gin_rummy,
    whose ``new_initial_state`` costs 3 ms, the stricter baseline)."""
    actions = 0
    initial: dict = {}
    for batch in batches:
        for row in batch.to_pylist():
            meta = json.loads(row["metadata"])
            task = meta["task"]
            game = load_game(task["game"], task.get("params"))
            if id(game) not in initial:
                initial[id(game)] = game.new_initial_state()
            state = initial[id(game)].clone()
            for action in meta["history"]:
                state.apply_action(action)
            actions += len(meta["history"])
    return actions


def solve_times(envs: list[str]) -> dict[str, float]:
    """Wall seconds to solve each env's policy tables from scratch in this process (then remembered)."""
    out = {}
    for env in envs:
        spec = env_spec(env)
        game, params = spec.options["game"], dict(spec.options.get("params") or {})
        configs = [table_config(game, params, spec.options["opponent"]),
                   table_config(game, params, spec.options["learner"], spec.options["opponent"])]
        configs = [c for c in configs if c is not None]
        if not configs:
            continue
        cfr_module._SOLVED.clear()
        started = time.perf_counter()
        for key, p, iterations in configs:
            cfr_module.solve_cfr(key, p, iterations)
        out[env] = time.perf_counter() - started
    return out


def wins(batches) -> tuple[int, int]:
    scores = [s for b in batches for s in b.column("score").to_pylist()]
    return sum(s == 1.0 for s in scores), len(scores)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--quick", action="store_true", help="small sizes for a smoke test")
    ap.add_argument("--games", nargs="+", default=list(GAMES), choices=GAMES)
    ap.add_argument("--repeat", type=int, default=None, help="interleaved rounds per figure, median (default 3)")
    ap.add_argument("--scale", type=float, default=1.0, help="multiply every game count")
    args = ap.parse_args(argv)
    repeat = args.repeat or 3
    sizes = QUICK_SELFPLAY if args.quick else SELFPLAY_GAMES
    uniform_sizes = QUICK_UNIFORM if args.quick else UNIFORM_GAMES

    solved = solve_times(args.games)
    # why the cheap games cannot reach the self-play goal: the whole match costs less than its record
    cheap_note = ("a liar's dice or goofspiel match takes 60-120 us in the bare loop; its record (ids, chat "
                  "messages, metadata JSON, Arrow columns, the learner's moves checked legal) costs about as "
                  "much again, so the generator's ratio to the bare loop stays near 0.5-0.65x at 4-7k games/s")
    rows, quality, notes = [], [], []
    for env in args.games:
        n = max(2, int(sizes[env] * args.scale))
        spec = env_spec(env)
        tables(env)  # the tables loaded into the family (the bare loop uses the same objects)
        same = same_games(env, 4)  # untimed: also the warm-up (game load, one-time imports)
        kept: list = []
        first = next(_ROUNDS)
        bare_keys, gen_keys = (iter(f"r{k:04d}" for k in range(first * 100, first * 100 + 99)) for _ in range(2))

        def gen():  # each interleaved round plays a round of its own, the bare loop the same games
            kept.extend(generate(env, n, next(gen_keys)))
        t_bare, t_gen = C.interleaved_medians([lambda: bare_selfplay(env, n, next(bare_keys)), gen], repeat,
                                              rotate=True)
        ratio = t_bare / t_gen
        rows.append(C.Row(f"{env} self-play, generator w=1", n / t_gen, "games/s", n / t_bare, ratio,
                          f">= {GOAL_SELFPLAY}x bare", ratio >= GOAL_SELFPLAY,
                          note=("" if same else "UNEXPECTED: the bare loop did not play the generator's games. ")
                          + (cheap_note if spec.options["game"] in ("liars_dice", "goofspiel") else "")))
        C.metric(f"{env}.selfplay_games_per_s", n / t_gen)
        C.metric(f"{env}.bare_games_per_s", n / t_bare)
        C.metric(f"{env}.selfplay_ratio_vs_bare", ratio)

        batches = kept
        records = sum(b.num_rows for b in batches)
        v = family_of(spec).verifier(spec)
        counts = verify_all(batches, v, spec.pass_threshold)
        bad = {k: c for k, c in counts.reasons.items() if k != "score.below_threshold"}
        t_cold, t_replay, t_cloned = C.interleaved_medians(
            [lambda: verify_cold(batches, v, spec.pass_threshold), lambda: bare_replay(batches),
             lambda: bare_replay_cloned(batches)], max(repeat, 3))
        vratio = t_replay / t_cold
        rows.append(C.Row(f"{env} verify_batch, fresh process", records / t_cold, "replays/s", records / t_replay,
                          vratio, f">= {GOAL_VERIFY}x bare", vratio >= GOAL_VERIFY))
        if spec.options["game"] == "gin_rummy":
            rows.append(C.Row(f"{env} verify_batch vs bare replay of cloned states", records / t_cold, "replays/s",
                              records / t_cloned, t_cloned / t_cold, f">= {GOAL_VERIFY}x bare",
                              t_cloned / t_cold >= GOAL_VERIFY,
                              note="the stricter baseline: the bare replay cloning one initial state, as the "
                                   "engine does (new_initial_state costs 3 ms here, a clone 0.03 ms)"))
            C.metric(f"{env}.cold_ratio_vs_bare_cloned", t_cloned / t_cold)
        C.metric(f"{env}.cold_replays_per_s", records / t_cold)
        C.metric(f"{env}.cold_ratio_vs_bare", vratio)
        msgs = [len(m) for b in batches for m in b.column("messages").to_pylist()]
        notes.append(f"{env}: {n} games per self-play figure (bare {t_bare:.2f}s, generator {t_gen:.2f}s); "
                     f"verified {counts.passed}/{counts.rows} passed, "
                     + (f"UNEXPECTED reasons {bad}" if bad else "no failure but score.below_threshold")
                     + f"; {statistics.mean(msgs):.1f} messages per record")

        u_games = max(2, int(uniform_sizes[env] * args.scale))
        won_u, n_u = wins(generate(env, u_games, learner={"kind": "random"}))
        won_l, n_l = wins(batches)
        for who, won, total in (("uniform", won_u, n_u), ("learner", won_l, n_l)):
            low, high = wilson_interval(won, total)
            C.metric(f"{env}.p_{who}", won / total)
            C.metric(f"{env}.p_{who}_low", low)
            C.metric(f"{env}.p_{who}_high", high)
        lu, hu = wilson_interval(won_u, n_u)
        ll, hl = wilson_interval(won_l, n_l)
        quality.append((env, spec, won_u / n_u, lu, hu, n_u, won_l / n_l, ll, hl, n_l))

    C.print_table("game envs: self-play games/s and verify replays/s vs bare pyspiel", rows, notes=[
        "self-play baseline = a bare loop with the same bots and settings (pyspiel MCTSBot, the same policy "
        "tables sampled with random.choices, SimpleGinRummyBot), no prompts or records; ratio = generator / bare",
        "verify baseline = bare replay (to_pylist + metadata JSON + apply history, no checks); ratio = verify / bare",
        f"median of {repeat} interleaved round(s) (self-play) and {max(repeat, 3)} (verify)",
        *notes, C.environment_note()])
    print()
    print("== data quality: p = share of games won (draws are not wins), Wilson 95% interval ==")
    print(f"{'env':<11} {'opponent':<26} {'learner':<26} {'p uniform':<22} {'p self-play learner':<22}")
    for env, spec, pu, lu, hu, nu, pl, ll, hl, nl in quality:
        label = lambda c: ",".join(f"{k}={v}" for k, v in c.items() if k != "kind") or ""  # noqa: E731
        opp = f"{spec.options['opponent']['kind']} {label(spec.options['opponent'])}".strip()
        lrn = f"{spec.options['learner']['kind']} {label(spec.options['learner'])}".strip()
        print(f"{env:<11} {opp:<26} {lrn:<26} {f'{pu:.3f} [{lu:.2f},{hu:.2f}] n={nu}':<22} "
              f"{f'{pl:.3f} [{ll:.2f},{hl:.2f}] n={nl}':<22}")
    for env, seconds in solved.items():
        C.metric(f"{env}.solve_s", seconds)
    print("  * policy tables solved from scratch in this process: "
          + ", ".join(f"{env} {s:.1f}s" for env, s in solved.items()))
    sys.stdout.flush()
    C.save_metrics("games")
    return 0


if __name__ == "__main__":
    sys.exit(main())
