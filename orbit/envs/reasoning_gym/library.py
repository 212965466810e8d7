"""reasoning-gym itself, imported once and only when needed (the import takes seconds).

``load()`` imports the package and returns its factory module (``DATASETS``, ``CURRICULA``,
``create_dataset``, ``create_curriculum``). It also hardens the scorers of ``EVAL_TASKS``: each
calls Python's ``eval`` on a model answer that is not the exact oracle (to give partial credit
to an answer written as a Python list), which runs any code the model writes. Their module's
``eval`` becomes ``ast.literal_eval``: a list literal still gets its partial credit, code is
never run. (The sympy-parsing scorers are screened per answer instead: ``guards``.)
"""

import ast
import sys
import threading
import warnings
from types import ModuleType

EVAL_TASKS = ("binary_matrix", "n_queens", "spiral_matrix", "string_insertion")

_FACTORY: ModuleType | None = None
_LOCK = threading.Lock()


def literal_eval(source, *_scope):
    """``eval`` for the hardened scorers: Python literals only (anything else raises ValueError)."""
    if not isinstance(source, str):
        raise TypeError("literal_eval takes a string")
    return ast.literal_eval(source)


def _harden(factory: ModuleType) -> None:
    for task in EVAL_TASKS:
        entry = factory.DATASETS.get(task)
        if entry is not None:
            sys.modules[entry[0].__module__].eval = literal_eval


def load() -> ModuleType:
    """``reasoning_gym.factory``, imported (and its eval-ing scorers hardened) on the first call."""
    global _FACTORY
    if _FACTORY is None:
        with _LOCK:
            if _FACTORY is None:
                with warnings.catch_warnings():  # a dependency's import-time SyntaxWarnings
                    warnings.simplefilter("ignore", SyntaxWarning)
                    import reasoning_gym  # noqa: F401  (registers every dataset)
                    from reasoning_gym import factory
                _harden(factory)
                _FACTORY = factory
    return _FACTORY
