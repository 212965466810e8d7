"""The test harness, run inside the sandbox (``orbit.compute.sandbox``): never imported by Orbit.

Its source is the sandbox's trusted ``program``; the globals ``PAYLOAD`` (``{"code", "entry_point",
"tests"}``, each test ``{"args": [...], "kwargs": {...}}`` or ``{"call": "<expression>"}``) and
``RESULTS_FD`` come from the sandbox's bootstrap. It compiles the candidate (``{"syntax": ...}`` when it
does not compile), runs it as the module ``solution`` (``{"crash": "<ExceptionType>"}`` or
``{"memory": ...}`` when that fails), then calls the entry point once per test and reports what came
back as plain JSON: ``{"t": i, "v": value}``, ``{"t": i, "e": "<ExceptionType>"}`` or
``{"t": i, "memory": true}``; ``{"done": n}`` last. The expected values never enter the sandbox: Orbit
compares outside, so a candidate that patches this harness, fakes its lines or exits early gains
nothing but failed tests.
"""

import os
import sys

MAX_DEPTH = 64
_quote = QUOTE  # noqa: F821 -- the sandbox gives it: a str as a JSON string (json's C encoder, no import)


def _json(value):
    """JSON text of plain data (what ``_plain`` returns), without ``import json`` (costly at start-up)."""
    if value is None:
        return "null"
    if value is True:
        return "true"
    if value is False:
        return "false"
    kind = type(value)
    if kind is int:
        return int.__repr__(value)
    if kind is float:
        return float.__repr__(value)
    if kind is str:
        return _quote(value)
    if kind is list:
        return "[" + ",".join([_json(v) for v in value]) + "]"
    return "{" + ",".join([_quote(k) + ":" + _json(v) for k, v in value.items()]) + "}"


def _emit(obj):
    try:
        data = (_json(obj) + "\n").encode("ascii")
    except Exception as exc:  # noqa: BLE001 -- a value that does not serialise is an error of that test
        data = (_json({"t": obj.get("t"), "e": "Unserializable:" + type(exc).__name__}) + "\n").encode("ascii")
    view = memoryview(data)
    while view:
        written = os.write(RESULTS_FD, view)  # noqa: F821 -- a global the sandbox gives
        view = view[written:]


def _plain(value, depth=0):
    """``value`` as JSON data, by exact type (a subclass of int or list is not the value it claims)."""
    if depth > MAX_DEPTH:
        return {"__type__": "too_deep"}
    kind = type(value)
    if value is None or kind is bool or kind is str or kind is int:
        return value
    if kind is float:
        return value if value == value and value not in (float("inf"), float("-inf")) else {"__float__": repr(value)}
    if kind is list or kind is tuple:
        return [_plain(v, depth + 1) for v in value]
    if kind is dict and all(type(k) is str for k in value):
        return {k: _plain(v, depth + 1) for k, v in value.items()}
    return {"__type__": kind.__name__}


def _main(payload):
    code, entry, tests = payload["code"], payload["entry_point"], payload["tests"]
    try:
        compiled = compile(code, "solution.py", "exec")
    except SyntaxError as exc:
        _emit({"syntax": f"line {exc.lineno}: {exc.msg}"})
        return
    except (ValueError, OverflowError, RecursionError, MemoryError) as exc:
        _emit({"syntax": type(exc).__name__})
        return
    module = type(sys)("solution")
    module.__file__ = "solution.py"
    sys.modules["solution"] = module
    try:
        exec(compiled, module.__dict__)
    except MemoryError:
        _emit({"memory": "load"})
        return
    except BaseException as exc:  # noqa: BLE001 -- SystemExit too: the candidate does not end the run
        _emit({"crash": type(exc).__name__})
        return
    function = module.__dict__.get(entry)
    if not callable(function):
        _emit({"missing": entry})
        return
    for i, test in enumerate(tests):
        try:
            if "call" in test:
                value = eval(test["call"], module.__dict__)
            else:
                value = function(*test.get("args", []), **test.get("kwargs", {}))
            _emit({"t": i, "v": _plain(value)})
        except MemoryError:
            _emit({"t": i, "memory": True})
        except BaseException as exc:  # noqa: BLE001 -- the test's outcome
            _emit({"t": i, "e": type(exc).__name__})
    _emit({"done": len(tests)})


_main(PAYLOAD)  # noqa: F821 -- a global the sandbox gives
try:
    sys.stdout.flush()
except BaseException:  # noqa: BLE001 -- a stdout the candidate replaced or closed
    pass
os._exit(0)
