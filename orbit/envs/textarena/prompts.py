"""The family's system prompt and answer format; the game's rules come from TextArena's first observation."""

from functools import lru_cache

from orbit.envs.textarena.games import SUPPORTED

ANSWER_MAX_TOKENS = 128


@lru_cache(maxsize=None)
def answer_format(env_id: str) -> str:
    example = SUPPORTED[env_id].example if env_id in SUPPORTED else "[...]"
    return (f"Reply with your move in the bracketed form the game's rules give (e.g. {example}); the whole "
            f"reply is sent to the game as your action, so keep it short.")


@lru_cache(maxsize=None)
def system_prompt(env_id: str, seat: int) -> str:
    game = SUPPORTED.get(env_id)
    shown = "the board, the other player's moves and the game's messages" if game is None or game.num_players > 1 \
        else "the board and the game's feedback on your moves"
    return (f"You are playing the TextArena game {env_id} as Player {seat}. Each user message is what the game "
            f"shows you since your previous move: first its rules, then {shown}. {answer_format(env_id)}")
