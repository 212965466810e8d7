"""Composite LiveWeb tasks: 1-4 questions on distinct sites, all derived from one seed.

The seed picks the sites and one template per site (without reading the cache,
so a task's id is known even when its pages turn out to be bad); each template
then draws its parameters from its own seed-derived RNG and the cache.
"""

import random
from dataclasses import dataclass
from typing import Any, Mapping

from orbit.envs.liveweb.cache import PageCache
from orbit.envs.liveweb.plugins import PLUGINS, Truth
from orbit.envs.liveweb.templates import Template, templates_of
from orbit.io.schema import stable_hash

MAX_SUBTASKS = len(PLUGINS)


@dataclass(frozen=True)
class Subtask:
    template: Template
    params: Mapping[str, Any]
    question: str
    truth: Truth


@dataclass(frozen=True)
class Task:
    seed: int
    task_id: str
    subtasks: tuple[Subtask, ...]

    @property
    def prompt(self) -> str:
        return task_prompt([s.question for s in self.subtasks])

    def spec(self) -> dict:
        """What a verifier needs to rebuild the task: the seed, template ids and parameters."""
        return {"seed": self.seed,
                "subtasks": [{"template": s.template.id, "params": dict(s.params)} for s in self.subtasks]}


def _rng(*parts: Any) -> random.Random:
    return random.Random(int(stable_hash(*parts, length=16), 16))


def check_subtask_count(count: Any) -> int:
    if isinstance(count, bool) or not isinstance(count, int) or not 1 <= count <= MAX_SUBTASKS:
        raise ValueError(f"subtasks must be an integer from 1 to {MAX_SUBTASKS}, got {count!r}")
    return count


def choose_templates(seed: int, count: int) -> list[Template]:
    """One template on each of ``count`` distinct sites, chosen by the seed alone."""
    rng = _rng("liveweb-templates", seed, check_subtask_count(count))
    return [rng.choice(templates_of(site)) for site in rng.sample(sorted(PLUGINS), count)]


def task_id_of(templates: list[Template], seed: int) -> str:
    return f"liveweb-{stable_hash('liveweb-task', [t.id for t in templates], seed, length=16)}"


def task_prompt(questions: list[str]) -> str:
    lines = ["Answer the following question(s) by browsing the websites with the tools."]
    lines += [f"{number}. {question}" for number, question in enumerate(questions, 1)]
    lines.append(f"When you are done, call stop with answers: a list of {len(questions)} string(s), "
                 "one per question, in order.")
    return "\n".join(lines)


def build_task(cache: PageCache, seed: int, count: int) -> Task:
    """The task of ``seed``; PageError when a page it needs is bad."""
    templates = choose_templates(seed, count)
    subtasks = []
    for index, template in enumerate(templates):
        params = template.params(_rng("liveweb-params", seed, index, template.id), cache)
        subtasks.append(Subtask(template, params, template.question(params), template.truth(cache, params)))
    return Task(seed, task_id_of(templates, seed), tuple(subtasks))

