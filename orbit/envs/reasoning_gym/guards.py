"""Answers some scorers must never see: the ones that would be run as code.

The scorers of ``EXPRESSION_TASKS`` parse the answer with sympy's ``parse_expr``, which evaluates
it as Python (``__import__('os').system(...)`` runs; so does ``exec(chr(...))``: sympy puts Python's
builtin functions in its namespace). Their answers are arithmetic or algebraic expressions, so an
answer reaches the scorer only when it is one: ASCII digits, letters, spaces, ``+ - * / ^ ( ) . ,``;
every name a single letter or a maths function sympy knows (``sin``, ``sqrt``, ``Integral``...);
no attribute access; no power of a power of numbers and no exponent of four or more digits
(``9**9**9`` never finishes). Any other answer fails with ``answer.unsafe_expression`` (the scorer
would have given it nothing). ``library`` hardens the scorers that call ``eval`` instead.
"""

import re

UNSAFE = "answer.unsafe_expression"
EXPRESSION_TASKS = frozenset({
    "countdown", "puzzle24", "simple_integration", "intermediate_integration", "polynomial_multiplication",
})
MATH_NAMES = frozenset({
    "sin", "cos", "tan", "cot", "sec", "csc", "asin", "acos", "atan", "acot", "asec", "acsc", "atan2",
    "sinh", "cosh", "tanh", "coth", "sech", "csch", "asinh", "acosh", "atanh", "acoth",
    "exp", "log", "ln", "sqrt", "cbrt", "root", "pi", "oo", "Abs", "sign", "Integral", "erf", "erfc",
})
_CHARS = re.compile(r"[0-9A-Za-z \t\r\n+\-*/^().,]*")
_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
_ATTRIBUTE = re.compile(r"\.\s*[A-Za-z_]")
_POWER = r"(?:\*\*|\^)"
_POWER_TOWER = re.compile(_POWER + r"\s*\(?[0-9.\s]+\)?\s*" + _POWER)
_BIG_EXPONENT = re.compile(_POWER + r"[\s(+\-]*[0-9]{4,}")


def safe_expression(answer: str) -> bool:
    """May an expression scorer parse ``answer``? (See the module docstring.)"""
    if _CHARS.fullmatch(answer) is None or _ATTRIBUTE.search(answer):
        return False
    for name in _NAME.findall(answer):
        if len(name) != 1 and name not in MATH_NAMES:
            return False
    return _POWER_TOWER.search(answer) is None and _BIG_EXPONENT.search(answer) is None


def answer_guard(task: str):
    """The screen a task's answers pass before its scorer sees them, or None."""
    return safe_expression if task in EXPRESSION_TASKS else None
