"""The LiveWeb env family: teacher trajectories over a page cache, and their trace verifier.

Options: ``cache_dir`` (default ``$ORBIT_HOME/liveweb_cache``, where the demo cache
is generated with seed 0 when missing; a ``cache_dir`` that was set but does not
exist is an error naming it) and ``subtasks`` (questions per task, 1-4, default 2).

Task ``i`` of a partition has seed ``stable_hash(round, base_seed, i)``, so every
round draws fresh tasks. The teacher is deterministic: the ``samples_per_task``
rows of a task repeat its one trajectory (same ``task_id``, ``sample_idx``
0..N-1). With ``workers > 1`` and at least ``PARALLEL_MIN_TASKS`` tasks (below
that, starting processes costs more than it saves), chunks of seeds are built by
a forkserver pool of ``workers - 1`` processes and by the calling process (see
``orbit.envs.liveweb.parallel``); batches come out in seed order either way, so the
output does not depend on the number of workers.
"""

import json
from functools import partial
from pathlib import Path
from typing import Any, Iterator, Mapping, Sequence

import pyarrow as pa

from orbit.envs.base import EnvOptionError, EnvSpec, GenerationRequest, assistant_turns, canonical_tool_calls, normalise_text
from orbit.io.home import orbit_home
from orbit.envs.liveweb.cache import PageCache, PageError
from orbit.envs.liveweb.environment import PAGE_INVALID
from orbit.envs.liveweb.rollout import DEFAULT_MAX_TURNS, browse
from orbit.envs.liveweb.demo_sites import ensure_demo_cache
from orbit.envs.liveweb.parallel import ordered_map
from orbit.envs.liveweb.tasks import build_task, check_subtask_count
from orbit.envs.liveweb.teacher import BUILD_FAILED, Teacher, failed_records, teacher_records
from orbit.envs.liveweb.verifier import TraceVerifier
from orbit.io.schema import make_record, records_to_batch, stable_hash

DEFAULT_SUBTASKS = 2
DEMO_SEED = 0
CACHE_DIR_NAME = "liveweb_cache"
PARALLEL_MIN_TASKS = 5000
MIN_CHUNK, MAX_CHUNK = 50, 500


def default_cache_dir() -> Path:
    return orbit_home() / CACHE_DIR_NAME


def open_cache(cache_dir: str | Path | None = None) -> PageCache:
    """The cache at ``cache_dir``; without one, the default cache (generating the demo cache if missing)."""
    if cache_dir is None:
        return PageCache(ensure_demo_cache(default_cache_dir(), DEMO_SEED))
    return PageCache(cache_dir)


def task_seeds(round_key: str, base_seed: int, num_tasks: int) -> list[int]:
    return [int(stable_hash("liveweb-seed", round_key, int(base_seed), i, length=12), 16) for i in range(num_tasks)]


def _chunks(seeds: Sequence[int], workers: int) -> list[Sequence[int]]:
    size = min(max(-(-len(seeds) // (workers * 4)), MIN_CHUNK), MAX_CHUNK)
    return [seeds[i:i + size] for i in range(0, len(seeds), size)]


_worker_teacher: Teacher | None = None


def _start_worker(cache_dir: str) -> None:
    global _worker_teacher
    _worker_teacher = Teacher(PageCache(cache_dir))


def _build_chunk(seeds: Sequence[int], job: tuple) -> pa.RecordBatch:
    return records_to_batch(teacher_records(_worker_teacher, seeds, *job))


OPTION_KEYS = ("subtasks", "cache_dir", "max_turns", "max_tokens")


class LiveWebFamily:
    name = "liveweb"

    @staticmethod
    def trajectory_key(record: Mapping[str, Any]) -> str:
        """The dedup stage's canonical trajectory of a browsing episode: every assistant turn's canonical
        tool calls (name and arguments with sorted keys; the final ``stop`` carries the answers) and its
        normalised text. Two questions walked by the same calls to the same answers are one trajectory."""
        turns = [normalise_text(m.get("content")) + "".join(canonical_tool_calls(m)) for m in assistant_turns(record)]
        return "tools\x00" + "\x00".join(turns)

    def check(self, spec: EnvSpec) -> None:
        for key, value in spec.options.items():
            if key not in OPTION_KEYS:
                raise EnvOptionError(key, f"not an option of the liveweb family (it takes {', '.join(OPTION_KEYS)})")
            if key == "cache_dir":
                if not isinstance(value, str) or not Path(value).is_dir():
                    raise EnvOptionError(key, f"{value!r} is not a folder")
            elif key == "subtasks":
                try:
                    check_subtask_count(value)
                except ValueError as exc:
                    raise EnvOptionError(key, str(exc)) from exc
            elif type(value) is not int or not 1 <= value <= 1_000_000:
                raise EnvOptionError(key, f"expected a whole number from 1 to 1000000, got {value!r}")

    def __init__(self):
        self._caches: dict[str, PageCache] = {}

    def _cache(self, request: GenerationRequest) -> PageCache:
        """One cache object per folder, so rollouts share its memoised pages."""
        key = str(request.option("cache_dir"))
        if key not in self._caches:
            self._caches[key] = open_cache(request.option("cache_dir"))
        return self._caches[key]

    def generate(self, request: GenerationRequest) -> Iterator[pa.RecordBatch]:
        count = check_subtask_count(request.option("subtasks", DEFAULT_SUBTASKS))
        cache = open_cache(request.option("cache_dir"))
        seeds = task_seeds(request.round_key, request.base_seed, request.num_tasks)
        workers = max(int(request.workers or 1), 1)
        chunks = _chunks(seeds, workers)
        job = (count, request.env.name, request.round_key, request.samples_per_task)
        teacher = Teacher(cache)

        def build_here(chunk: Sequence[int]) -> pa.RecordBatch:
            return records_to_batch(teacher_records(teacher, chunk, *job))

        if workers > 1 and len(seeds) >= PARALLEL_MIN_TASKS:
            yield from ordered_map(build_here, partial(_build_chunk, job=job), chunks, workers,
                                   _start_worker, (str(cache.root),))
        else:
            for chunk in chunks:
                yield build_here(chunk)

    def policy_tasks(self, request: GenerationRequest) -> list[tuple[str, Any]]:
        """The partition's tasks for policy sampling; a task that cannot be built stays in the list as
        its failed teacher row, so it is counted, never dropped."""
        count = check_subtask_count(request.option("subtasks", DEFAULT_SUBTASKS))
        cache = self._cache(request)
        out: list[tuple[str, Any]] = []
        for seed in task_seeds(request.round_key, request.base_seed, request.num_tasks):
            try:
                task = build_task(cache, seed, count)
                out.append((task.task_id, task))
            except Exception as exc:  # bad pages: the same named reasons as the teacher's rows
                reason = PAGE_INVALID if isinstance(exc, PageError) else BUILD_FAILED
                row = failed_records(seed, count, reason, str(exc), request.env.name, request.round_key, 1)[0]
                out.append((row["task_id"], row))
        return out

    async def rollout(self, request: GenerationRequest, task: Any, sample_idx: int, policy_id: str, complete,
                      extra_metadata: Mapping[str, Any] | None = None) -> dict:
        if isinstance(task, dict):  # a task that could not be built: its failed row, as a policy sample
            meta = {**json.loads(task["metadata"]), **dict(extra_metadata or {})}
            return make_record(env=task["env"], task_id=task["task_id"], round_key=task["round"],
                               sample_idx=sample_idx, source="policy", policy=policy_id, seed=task["seed"],
                               messages=task["messages"], score=0.0, metadata=meta, tools=task["tools"])
        return await browse(task, self._cache(request), env_name=request.env.name,
                            round_key=request.round_key, sample_idx=sample_idx, policy_id=policy_id,
                            complete=complete, max_turns=int(request.option("max_turns", DEFAULT_MAX_TURNS)),
                            extra_metadata=extra_metadata)

    def verifier(self, env: EnvSpec, options: Mapping[str, Any] | None = None) -> TraceVerifier:
        cache_dir = (options or {}).get("cache_dir", env.options.get("cache_dir"))
        return TraceVerifier(open_cache(cache_dir), env)


FAMILY = LiveWebFamily()
