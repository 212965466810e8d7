"""Shared fixtures: one real demo cache per session, and writable copies of it."""

import json
import shutil
from pathlib import Path

import pytest

from orbit.envs.liveweb.cache import PageCache
from orbit.envs.liveweb.demo_sites import ensure_demo_cache


@pytest.fixture(scope="session")
def demo_cache_dir(tmp_path_factory) -> Path:
    return ensure_demo_cache(tmp_path_factory.mktemp("liveweb") / "cache", seed=0)


@pytest.fixture(scope="session")
def demo_cache(demo_cache_dir) -> PageCache:
    return PageCache(demo_cache_dir)


@pytest.fixture
def cache_copy(demo_cache_dir, tmp_path) -> Path:
    """A private copy of the demo cache that a test may damage."""
    return Path(shutil.copytree(demo_cache_dir, tmp_path / "cache"))


@pytest.fixture
def edit_page():
    """``edit_page(file, edit)`` rewrites one page.json through ``edit(data)``, which changes it in place."""

    def edit(page_file: Path, change) -> None:
        data = json.loads(page_file.read_text())
        change(data)
        page_file.write_text(json.dumps(data))

    return edit
