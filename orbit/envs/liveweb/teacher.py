"""The LiveWeb teacher: a scripted browser that walks each template's route and answers.

For every question the teacher follows the route with real tool calls (typing
into search forms, clicking link ids, paging down long pages, scrolling a link
into view before clicking it), brings the answer into view, and finally calls
``stop`` with every answer as the site displays it. Every observation comes from
``LiveWebEnvironment``, so a verifier replaying the calls gets the same text.
"""

from typing import Any, Iterable

from orbit.envs.liveweb.cache import PageCache, PageError, normalize_url
from orbit.envs.liveweb.environment import PAGE_INVALID, LiveWebEnvironment
from orbit.envs.liveweb.tasks import Task, build_task, check_subtask_count, choose_templates, task_id_of
from orbit.envs.liveweb.templates import NavStep
from orbit.envs.liveweb.tools import SYSTEM_PROMPT, TOOLS_JSON
from orbit.io.schema import make_record, message, tool_call

TEACHER_VERSION = "1"
TEACHER_POLICY = f"teacher@{TEACHER_VERSION}"
BUILD_FAILED = "task.build_failed"
MAX_ERROR_CHARS = 300


class TeacherError(Exception):
    """The teacher could not walk a route: ``reason`` is a reason id, ``detail`` says where."""

    def __init__(self, reason: str, detail: str):
        self.reason = reason
        self.detail = detail
        super().__init__(f"{reason}: {detail}")


class Teacher:
    """Builds one trajectory per task; one instance serves many tasks over the same cache."""

    def __init__(self, cache: PageCache):
        self.cache = cache
        self.env = LiveWebEnvironment(cache)

    def trajectory(self, task: Task) -> list[dict]:
        """The messages of the whole episode: system, user, then tool calls and results."""
        self.env.reset()
        self.messages = [message("system", SYSTEM_PROMPT), message("user", task.prompt)]
        self.calls = 0
        for number, subtask in enumerate(task.subtasks, 1):
            self.think = f"Question {number}: I will {subtask.template.plan(subtask.params)}"
            for step in subtask.template.route(self.cache, subtask.params):
                self.follow(step)
            self.bring_into_view(subtask.truth.display)
        answers = [s.truth.display for s in task.subtasks]
        self.think = "Answers: " + "; ".join(f"{n}) {a}" for n, a in enumerate(answers, 1))
        self.call("stop", {"answers": answers})
        return self.messages

    def follow(self, step: NavStep) -> None:
        env = self.env
        if step.action == "goto":
            self.call("goto", {"url": step.target})
        elif step.action == "click":
            link = env.page.link_to(normalize_url(step.target), near=env.offset) if env.page else None
            if link is None:
                raise TeacherError(BUILD_FAILED, f"no link to {step.target} on {env.page.url if env.page else '-'}")
            self.show(link.line)
            self.call("click", {"selector": link.id})
        elif step.action == "search":
            field = env.page.search_field(step.form) if env.page else None
            if field is None:
                raise TeacherError(BUILD_FAILED, f"no {step.form} form on {env.page.url if env.page else '-'}")
            self.show(field.line)
            self.call("type", {"selector": field.id, "text": step.target, "press_enter": True})
        elif step.action == "read_all":
            while env.offset + env.window_lines < len(env.page.lines):
                self.call("view_more", {"direction": "down"})
        else:
            raise ValueError(f"unknown route step {step.action!r}")

    def show(self, line: int) -> None:
        """Scroll until ``line`` of the open page is in view (small moves by scroll, big ones by view_more)."""
        env = self.env
        while not env.visible(line):
            direction = "down" if line >= env.offset else "up"
            distance = line - (env.offset + env.window_lines - 1) if direction == "down" else env.offset - line
            half = env.window_lines // 2
            if distance <= half:
                self.call("scroll", {"direction": direction, "amount": half})
            else:
                self.call("view_more", {"direction": direction})

    def bring_into_view(self, text: str) -> None:
        page = self.env.page
        visible = page.lines[self.env.offset:self.env.offset + self.env.window_lines]
        if any(text in line for line in visible):
            return
        line = page.line_containing(text)
        if line is not None:
            self.show(line)

    def call(self, name: str, arguments: dict[str, Any]) -> None:
        self.calls += 1
        call_id = f"call_{self.calls:04d}"
        result = self.env.step(name, arguments)
        if result.error:
            raise TeacherError(result.error, result.observation)
        self.messages.append(message("assistant", self.think, tool_calls=[tool_call(call_id, name, arguments)]))
        self.messages.append(message("tool", result.observation, tool_call_id=call_id, name=name))
        self.think = None


def _record(env_name: str, round_key: str, sample_idx: int, task_id: str, seed: int, messages: list[dict],
            score: float, metadata: dict) -> dict:
    return make_record(env=env_name, task_id=task_id, round_key=round_key, sample_idx=sample_idx,
                       source="teacher", policy=TEACHER_POLICY, seed=seed, messages=messages, score=score,
                       metadata=metadata, tools=TOOLS_JSON)


def failed_records(seed: int, count: int, reason: str, detail: str, env_name: str, round_key: str,
                   samples: int) -> list[dict]:
    """Rows standing in for a task that could not be built; the verifier fails them by ``task_error``."""
    templates = choose_templates(seed, count)
    task_id = task_id_of(templates, seed)
    detail = detail[:MAX_ERROR_CHARS]
    messages = [message("system", SYSTEM_PROMPT), message("user", f"LiveWeb task {task_id} could not be built."),
                message("assistant", f"No trajectory: {reason}: {detail}")]
    metadata = {"task": {"seed": seed, "subtasks": [{"template": t.id} for t in templates]},
                "task_error": detail, "task_error_reason": reason}
    return [_record(env_name, round_key, i, task_id, seed, messages, 0.0, metadata) for i in range(samples)]


def teacher_records(teacher: Teacher, seeds: Iterable[int], count: int, env_name: str, round_key: str,
                    samples: int) -> list[dict]:
    """``samples`` rows per seed; the teacher is deterministic, so samples repeat one trajectory.

    A task whose pages are bad (or whose route cannot be walked) yields failed rows
    instead, so every requested task and sample has exactly one row.
    """
    check_subtask_count(count)
    rows: list[dict] = []
    for seed in seeds:
        try:
            task = build_task(teacher.cache, seed, count)
            messages = teacher.trajectory(task)
        except PageError as exc:
            rows += failed_records(seed, count, PAGE_INVALID, str(exc), env_name, round_key, samples)
            continue
        except TeacherError as exc:
            rows += failed_records(seed, count, exc.reason, exc.detail, env_name, round_key, samples)
            continue
        except Exception as exc:  # malformed cache data a template did not foresee must not sink the partition
            rows += failed_records(seed, count, BUILD_FAILED, f"{type(exc).__name__}: {exc}", env_name,
                                   round_key, samples)
            continue
        metadata = {"task": task.spec(), "teacher": TEACHER_VERSION}
        rows += [_record(env_name, round_key, i, task.task_id, seed, messages, 1.0, metadata)
                 for i in range(samples)]
    return rows
