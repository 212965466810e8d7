"""What a math worker runs: math-verify's ``verify(parse(gold), parse(answer))``, gold first.

Both texts are read as the content of a ``\\boxed{}`` (math-verify's LaTeX extraction, then its plain
expression one). math-verify's own timeouts (``signal.alarm``) are off: the pool that runs this
(``orbit.compute.killable_pool``) kills a worker that overruns, which also stops C code. A gold
answer's parse is kept per worker (the same gold comes with every sample of a task).
"""

import logging

PRELOAD = ["math_verify", "orbit.envs.math.preload"]  # the forkserver imports and warms them
TARGET = "orbit.envs.math.grading:grade"
WARMUP = "orbit.envs.math.grading:warm"
MAX_GOLD_CACHE = 4096

_GOLD: dict[str, list] = {}
_API = None


def _api():
    global _API
    if _API is None:
        import math_verify
        from math_verify import grader, parser

        for module in (grader, parser):  # our timeout is the pool's: no warning that math-verify's is off
            if hasattr(module, "TIMEOUT_WARNING_SHOWN"):
                module.TIMEOUT_WARNING_SHOWN = True
        logging.getLogger("math_verify").setLevel(logging.ERROR)
        logging.getLogger("latex2sympy2_extended").setLevel(logging.ERROR)
        _API = (math_verify.parse, math_verify.verify)
    return _API


def parse_boxed(text: str) -> list:
    parse, _ = _api()
    return parse("\\boxed{" + text + "}", parsing_timeout=None)


def grade(job: tuple[str, str]) -> bool:
    """Is ``answer`` equal to ``gold`` for math-verify? ``job`` is ``(gold, answer)``."""
    gold_text, answer_text = job
    _, verify = _api()
    gold = _GOLD.get(gold_text)
    if gold is None:
        if len(_GOLD) >= MAX_GOLD_CACHE:
            _GOLD.clear()
        gold = _GOLD[gold_text] = parse_boxed(gold_text)
    answer = parse_boxed(answer_text)
    if not gold or not answer:
        return False
    return bool(verify(gold, answer, timeout_seconds=None))



def warm() -> None:
    """Import math-verify and grade one pair, so a worker's first real answer is not the one paying for it."""
    grade(("\\frac{1}{2}", "0.5"))
