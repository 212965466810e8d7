"""Imported by the forkserver that starts the math workers (never by Orbit itself): math-verify, warmed.

Importing it imports math-verify and grades one pair, so the forkserver holds sympy, the LaTeX parser and
their first-use state, and every worker it forks (the first ones, and each one replacing a killed
worker) starts warm in milliseconds instead of paying the imports and the first parse.
"""

import gc

from orbit.envs.math.grading import warm

try:
    warm()
except Exception:  # noqa: BLE001 -- a worker that cannot grade says so itself, when it starts
    pass
gc.freeze()  # the forkserver's objects stay put in every worker: no collection walks (or copies) them
