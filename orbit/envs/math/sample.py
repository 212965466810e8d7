"""The math sample set: problems the project generates, with exact gold answers in LaTeX.

``sample_problems()`` is a fixed list of ``SAMPLE_SIZE`` problems (the same on every machine: each
made by ``random.Random(index)``), twelve kinds in turn: fraction sums, linear equations, quadratic
roots (a set), simplified square roots, expansions, gcd/lcm, percentages, arithmetic series, powers,
linear inequalities (an interval), circle areas (in pi) and dice probabilities. Answers are written
the way math-verify reads them (``\\frac{3}{4}``, ``2\\sqrt{3}``, ``\\{-2, 5\\}``,
``(-\\infty, \\frac{7}{2})``), and an equivalent form (``0.75``, ``\\sqrt{12}``) grades the same.
"""

import random
from fractions import Fraction
from math import gcd

SAMPLE_SIZE = 500


def _frac(q: Fraction) -> str:
    if q.denominator == 1:
        return str(q.numerator)
    sign = "-" if q < 0 else ""
    return f"{sign}\\frac{{{abs(q.numerator)}}}{{{q.denominator}}}"


def _signed(n: int) -> str:
    return f"+ {n}" if n >= 0 else f"- {-n}"


def _fraction_sum(r: random.Random) -> tuple[str, str]:
    a, b, c, d = r.randint(1, 9), r.randint(2, 12), r.randint(1, 9), r.randint(2, 12)
    return (f"Compute $\\frac{{{a}}}{{{b}}} + \\frac{{{c}}}{{{d}}}$ and give the result as a fraction in lowest terms.",
            _frac(Fraction(a, b) + Fraction(c, d)))


def _linear(r: random.Random) -> tuple[str, str]:
    a = r.choice([n for n in range(-9, 10) if n not in (0, 1)])
    b, c = r.randint(-20, 20), r.randint(-20, 20)
    return f"Solve for $x$: ${a}x {_signed(b)} = {c}$.", _frac(Fraction(c - b, a))


def _quadratic(r: random.Random) -> tuple[str, str]:
    p, q = r.sample(range(-9, 10), 2)
    s, t = -(p + q), p * q
    lo, hi = sorted((p, q))
    return (f"Find all real solutions of $x^2 {_signed(s)}x {_signed(t)} = 0$. Give them as a set.",
            f"\\{{{lo}, {hi}\\}}")


def _sqrt(r: random.Random) -> tuple[str, str]:
    k, m = r.randint(2, 9), r.choice([2, 3, 5, 6, 7, 10, 11, 13])
    return f"Simplify $\\sqrt{{{k * k * m}}}$.", f"{k}\\sqrt{{{m}}}"


def _expand(r: random.Random) -> tuple[str, str]:
    a = r.choice([n for n in range(-9, 10) if n])
    return f"Expand $(x {_signed(a)})^2$.", f"x^2 {_signed(2 * a)}x {_signed(a * a)}"


def _gcd_lcm(r: random.Random) -> tuple[str, str]:
    g = r.randint(2, 12)
    a, b = g * r.randint(2, 15), g * r.randint(2, 15)
    if r.random() < 0.5:
        return f"What is the greatest common divisor of {a} and {b}?", str(gcd(a, b))
    return f"What is the least common multiple of {a} and {b}?", str(a * b // gcd(a, b))


def _percent(r: random.Random) -> tuple[str, str]:
    p, n = r.choice([5, 10, 12, 15, 20, 25, 30, 40, 45, 60, 75]), r.randint(2, 80) * 4
    return f"What is {p}\\% of {n}?", _frac(Fraction(p * n, 100))


def _series(r: random.Random) -> tuple[str, str]:
    a, d, n = r.randint(1, 20), r.randint(1, 9), r.randint(5, 40)
    return (f"What is the sum of the first {n} terms of the arithmetic sequence {a}, {a + d}, {a + 2 * d}, ...?",
            str(n * (2 * a + (n - 1) * d) // 2))


def _power(r: random.Random) -> tuple[str, str]:
    base, exp = r.choice([2, 3, 5, 7]), r.randint(3, 12)
    return f"Compute ${base}^{{{exp}}}$.", str(base ** exp)


def _inequality(r: random.Random) -> tuple[str, str]:
    a, b, c = r.randint(2, 9), r.randint(-20, 20), r.randint(-20, 20)
    return (f"Solve ${a}x {_signed(b)} < {c}$ and give the solution set as an interval.",
            f"(-\\infty, {_frac(Fraction(c - b, a))})")


def _circle(r: random.Random) -> tuple[str, str]:
    radius = r.randint(2, 15)
    return (f"A circle has radius {radius}. What is its area? Give the exact value in terms of $\\pi$.",
            f"{radius * radius}\\pi")


def _dice(r: random.Random) -> tuple[str, str]:
    total = r.randint(2, 12)
    ways = sum(1 for i in range(1, 7) for j in range(1, 7) if i + j == total)
    return (f"Two fair six-sided dice are rolled. What is the probability that the sum is {total}? "
            "Give a fraction in lowest terms.", _frac(Fraction(ways, 36)))


KINDS = (_fraction_sum, _linear, _quadratic, _sqrt, _expand, _gcd_lcm, _percent, _series, _power, _inequality,
         _circle, _dice)


def sample_problem(index: int) -> dict:
    """Problem ``index`` of the sample set: ``{"id", "problem", "answer"}``."""
    rng = random.Random(f"orbit-math-sample-{index}")
    problem, answer = KINDS[index % len(KINDS)](rng)
    return {"id": f"math_sample-{index:04d}", "problem": problem, "answer": answer}


def sample_problems(size: int = SAMPLE_SIZE) -> list[dict]:
    return [sample_problem(i) for i in range(size)]

