"""Shared fixtures of the hostile-input tests: a winning record of every env and the env's own verifier."""

import pyarrow as pa
import pytest

from orbit.envs import GenerationRequest, env_names, env_spec, family_of
from orbit.envs.liveweb.cache import PageCache
from orbit.envs.liveweb.demo_sites import ensure_demo_cache
from orbit.envs.liveweb.teacher import Teacher, teacher_records



@pytest.fixture(scope="session")
def liveweb_cache_dir(tmp_path_factory):
    return ensure_demo_cache(tmp_path_factory.mktemp("hostile-liveweb") / "cache", seed=0)


@pytest.fixture(scope="session")
def verifiers(liveweb_cache_dir) -> dict:
    """env -> the verifier the verify stage builds for it (from the env spec)."""
    out = {}
    for env in env_names():
        spec = env_spec(env)
        options = {"cache_dir": str(liveweb_cache_dir)} if spec.family == "liveweb" else None
        out[env] = family_of(spec).verifier(spec, options)
    return out


@pytest.fixture(scope="session")
def winners(liveweb_cache_dir) -> dict:
    """env -> one record of that env that passes verification (score 1.0)."""
    out = {}
    for env in env_names():
        spec = env_spec(env)
        if spec.family == "liveweb":
            continue
        for tasks in (12, 60):  # a few tasks are enough for every env's generator to win one
            request = GenerationRequest(env=spec, round_key="r0000", num_tasks=tasks, samples_per_task=1, workers=1)
            rows = pa.Table.from_batches(list(family_of(spec).generate(request))).to_pylist()
            found = [r for r in rows if r["score"] == 1.0 and len(r["messages"]) >= 3]
            if found:
                out[env] = found[0]
                break
        else:
            raise AssertionError(f"{env}: no winning record in 60 tasks")
    teacher = Teacher(PageCache(liveweb_cache_dir))
    out["liveweb"] = next(r for r in teacher_records(teacher, range(2000, 2010), 2, "liveweb", "r0000", 1)
                          if r["score"] == 1.0)
    return out
