"""Task files: JSON Lines, one task object a line, read with limits and checked line by line.

Shared by the math and code families. A file that cannot be used raises ``TaskFileError`` naming
the line (1-based) and what is wrong; blank lines are skipped.
"""

import json
from pathlib import Path
from typing import Any, Callable, Iterator

MAX_FILE_BYTES = 64 << 20
MAX_LINE_CHARS = 1 << 20
MAX_TASKS = 1_000_000
ID_CHARS = frozenset("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_-.:/")
MAX_ID_CHARS = 128


class TaskFileError(ValueError):
    def __init__(self, path: str | Path, message: str, line: int | None = None):
        where = f"{path}:{line}" if line is not None else str(path)
        super().__init__(f"{where}: {message}")
        self.path, self.line, self.message = str(path), line, message


def check_id(value: Any) -> str | None:
    """Why ``value`` is not a task id, or None: a non-empty string of letters, digits and ``_-.:/``."""
    if type(value) is not str or not value:
        return "id must be a non-empty string"
    if len(value) > MAX_ID_CHARS:
        return f"id is longer than {MAX_ID_CHARS} characters"
    if not set(value) <= ID_CHARS:
        return "id may hold only ASCII letters, digits and _ - . : /"
    return None


def read_objects(path: str | Path) -> Iterator[tuple[int, dict]]:
    """(line number, object) for every non-blank line of the file."""
    path = Path(path)
    try:
        size = path.stat().st_size
    except OSError as exc:
        raise TaskFileError(path, f"cannot be read: {exc.strerror or exc}") from exc
    if not path.is_file():
        raise TaskFileError(path, "is not a file")
    if size > MAX_FILE_BYTES:
        raise TaskFileError(path, f"larger than {MAX_FILE_BYTES} bytes")
    try:
        text = path.read_bytes().decode("utf-8")
    except UnicodeDecodeError as exc:
        raise TaskFileError(path, f"not UTF-8 text ({exc.reason} at byte {exc.start})") from exc
    except OSError as exc:
        raise TaskFileError(path, f"cannot be read: {exc.strerror or exc}") from exc
    count = 0
    for number, line in enumerate(text.split("\n"), 1):
        if not line.strip():
            continue
        if len(line) > MAX_LINE_CHARS:
            raise TaskFileError(path, f"line longer than {MAX_LINE_CHARS} characters", number)
        try:
            value = json.loads(line)
        except (ValueError, RecursionError) as exc:
            raise TaskFileError(path, f"not JSON: {exc}", number) from exc
        if not isinstance(value, dict):
            raise TaskFileError(path, "expected a JSON object", number)
        count += 1
        if count > MAX_TASKS:
            raise TaskFileError(path, f"more than {MAX_TASKS} tasks")
        yield number, value


def read_tasks(path: str | Path, build: Callable[[dict], Any]) -> list:
    """Every task of the file: ``build(obj)`` per line (a ``ValueError`` it raises names the line);
    task ids (``.task_id``) must be unique; an empty file is an error."""
    tasks, seen = [], {}
    for number, obj in read_objects(path):
        try:
            task = build(obj)
        except ValueError as exc:
            raise TaskFileError(path, str(exc), number) from exc
        if task.task_id in seen:
            raise TaskFileError(path, f"id {task.task_id!r} repeats line {seen[task.task_id]}", number)
        seen[task.task_id] = number
        tasks.append(task)
    if not tasks:
        raise TaskFileError(path, "holds no task")
    return tasks
