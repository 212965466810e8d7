"""A reply graded against its item: the final answer, screened, then the task's own scorer.

``grade`` returns (score, reasons). The score is the float ``dataset.score_answer(answer, entry)``
returns; only exactly 1.0 passes: a score between 0 and 1 carries ``answer.partial_credit``, a score
of 0 (or less) ``answer.wrong`` (``answer.empty`` for an empty answer: the scorer decides it too, as
some oracle answers are empty). A reply without one final answer, with digits of another script
(unless the oracle has them), or with an expression its scorer must not parse (``guards``) scores 0
with that reason and never reaches the scorer. A scorer that raises, or returns no finite number,
gives ``answer.scorer_error:<ExceptionType>`` (``InvalidScore`` for a value that is not a number).
"""

import math
from typing import Any, Callable

from orbit.envs.reasoning_gym.answers import EMPTY, NON_ASCII_DIGITS, extract_answer, foreign_digits
from orbit.envs.reasoning_gym.guards import UNSAFE

PARTIAL = "answer.partial_credit"
WRONG = "answer.wrong"
SCORER_ERROR = "answer.scorer_error"


def grade(text: Any, entry: dict, dataset: Any, guard: Callable[[str], bool] | None = None) -> tuple[float, tuple[str, ...]]:
    answer, problem = extract_answer(text)
    if problem is not None:
        return 0.0, (problem,)
    if not answer.isascii() and foreign_digits(answer):
        oracle = entry.get("answer")
        if not (isinstance(oracle, str) and foreign_digits(oracle)):
            return 0.0, (NON_ASCII_DIGITS,)
    if guard is not None and not guard(answer):
        return 0.0, (UNSAFE,)
    try:
        raw = dataset.score_answer(answer, entry)
    except Exception as exc:  # the task's scorer, on any answer: never out of the verifier
        return 0.0, (f"{SCORER_ERROR}:{type(exc).__name__}",)
    if raw.__class__ is float:
        score = raw
    else:
        try:
            score = float(raw)
        except (TypeError, ValueError, OverflowError):
            return 0.0, (f"{SCORER_ERROR}:InvalidScore",)
    if not math.isfinite(score):
        return 0.0, (f"{SCORER_ERROR}:InvalidScore",)
    if score == 1.0:
        return 1.0, ()
    if 0.0 < score < 1.0:
        return score, (PARTIAL,)
    if score <= 0.0:
        return 0.0, (WRONG if answer else EMPTY,)
    return score, ()  # above 1: the verify stage names it (score.out_of_range)
