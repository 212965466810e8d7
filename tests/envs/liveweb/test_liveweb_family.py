"""The family object: generation through the registry, determinism, workers and bad caches."""

import json
import shutil
import subprocess
import sys

import pyarrow as pa
import pytest

from orbit.envs.base import GenerationRequest
from orbit.envs.registry import env_spec, envs, family_of
from orbit.envs.liveweb import family as liveweb_family
from orbit.envs.liveweb.cache import CacheNotFoundError
from orbit.io.schema import RECORD_SCHEMA
from orbit.stages.verify import VerifyCounts, verify_batch

SPEC = env_spec("liveweb")


def _request(cache_dir, num_tasks=20, **options):
    workers = options.pop("workers", 1)
    samples = options.pop("samples_per_task", 1)
    options.setdefault("cache_dir", str(cache_dir))
    return GenerationRequest(env=SPEC, round_key="r0003", num_tasks=num_tasks, samples_per_task=samples,
                             base_seed=11, workers=workers, options=options)


def _rows(request):
    batches = list(liveweb_family.FAMILY.generate(request))
    for batch in batches:
        assert batch.schema.equals(RECORD_SCHEMA)
    return pa.Table.from_batches(batches, schema=RECORD_SCHEMA).to_pylist()


def _verify(rows, cache_dir):
    verifier = liveweb_family.FAMILY.verifier(SPEC, {"cache_dir": str(cache_dir)})
    counts = VerifyCounts()
    verified = verify_batch(pa.RecordBatch.from_pylist(rows, schema=RECORD_SCHEMA), verifier, 1.0, counts)
    return verified.to_pylist(), counts


def test_registered_and_satisfies_the_protocol(demo_cache_dir):
    assert envs()["liveweb"].family == "liveweb" and SPEC.options == {"subtasks": 2} and SPEC.num_tasks == 200
    family = family_of(SPEC)
    assert family is liveweb_family.FAMILY and family.name == "liveweb"
    assert callable(family.generate) and callable(family.verifier)
    verifier = family.verifier(SPEC, {"cache_dir": str(demo_cache_dir)})
    assert verifier.name == "liveweb_trace" and verifier.version == "1"


def test_generate_and_verify_through_the_stage(demo_cache_dir):
    rows = _rows(_request(demo_cache_dir, num_tasks=30, subtasks=3))
    assert len(rows) == 30 and len({r["task_id"] for r in rows}) == 30
    verified, counts = _verify(rows, demo_cache_dir)
    assert counts.passed == 30 and counts.failed == 0
    assert {r["verifier"] for r in verified} == {"liveweb_trace@1"}


def test_generation_is_deterministic(demo_cache_dir):
    request = _request(demo_cache_dir, num_tasks=25)
    assert _rows(request) == _rows(request)


def test_samples_repeat_the_trajectory(demo_cache_dir):
    rows = _rows(_request(demo_cache_dir, num_tasks=5, samples_per_task=3))
    assert len(rows) == 15
    for task in range(5):
        group = rows[task * 3:task * 3 + 3]
        assert [r["sample_idx"] for r in group] == [0, 1, 2]
        assert len({r["task_id"] for r in group}) == 1 and len({r["record_id"] for r in group}) == 3
        assert group[0]["messages"] == group[2]["messages"]


def test_process_pool_gives_the_same_rows(demo_cache_dir, monkeypatch):
    monkeypatch.setattr(liveweb_family, "PARALLEL_MIN_TASKS", 10)
    monkeypatch.setattr(liveweb_family, "MIN_CHUNK", 8)
    serial = _rows(_request(demo_cache_dir, num_tasks=60, workers=1))
    parallel = _rows(_request(demo_cache_dir, num_tasks=60, workers=2))
    assert parallel == serial


def test_user_cache_dir_that_does_not_exist_is_named(tmp_path):
    missing = tmp_path / "nowhere"
    with pytest.raises(CacheNotFoundError, match=str(missing)):
        list(liveweb_family.FAMILY.generate(_request(missing)))
    with pytest.raises(CacheNotFoundError, match=str(missing)):
        liveweb_family.FAMILY.verifier(SPEC, {"cache_dir": str(missing)})


def test_default_cache_is_generated_under_orbit_home(tmp_path, monkeypatch, demo_cache_dir):
    monkeypatch.setenv("ORBIT_HOME", str(tmp_path))
    request = GenerationRequest(env=SPEC, round_key="r0000", num_tasks=3, samples_per_task=1, workers=1)
    rows = _rows(request)
    assert (tmp_path / "liveweb_cache" / "stockquotes.test" / "_root" / "page.json").is_file()
    _, counts = _verify(rows, tmp_path / "liveweb_cache")
    assert counts.passed == 3
    assert liveweb_family.FAMILY.verifier(SPEC).verify(rows[0]).score == 1.0


def test_bad_pages_fail_their_tasks_and_spare_the_others(cache_copy, edit_page):
    # corrupt JSON: every stocks task needs the StockQuotes home page
    (cache_copy / "stockquotes.test" / "_root" / "page.json").write_bytes(b"{\"url\": \x00 oops")
    # HTML that does not parse: a city page
    city_dir = cache_copy / "cityweather.test" / "city"
    for city in city_dir.iterdir():
        edit_page(city / "page.json", lambda data: data.update(html="\x00\x01 binary \x02"))
    # api_data missing a field the points template needs
    for item in cache_copy.joinpath("newsagg.test").glob("item__id=*"):
        edit_page(item / "page.json", lambda data: data["api_data"].pop("points"))

    rows = _rows(_request(cache_copy, num_tasks=80, subtasks=1, samples_per_task=2))
    assert len(rows) == 160
    verified, counts = _verify(rows, cache_copy)
    assert counts.rows == 160 and counts.passed + counts.failed == 160

    by_template = {}
    for row in verified:
        template = json.loads(row["metadata"])["task"]["subtasks"][0]["template"]
        by_template.setdefault(template, []).append(row)
    for template, group in by_template.items():
        reasons = [" ".join(r["reasons"]) for r in group]
        if template.startswith("stocks."):
            assert all("stockquotes.test/_root/page.json: page.json is not valid JSON" in r for r in reasons)
        elif template in ("weather.temperature", "weather.forecast_high", "weather.warmer_city"):
            assert all("html contains binary control characters" in r and "cityweather.test/city/" in r
                       for r in reasons)
        elif template == "news.points":
            assert all("api_data missing field 'points'" in r and "newsagg.test/item__id=" in r for r in reasons)
        else:
            assert all(r["passed"] for r in group), template
    for row in verified:
        if not row["passed"]:
            assert row["reasons"][0] == "task.build_failed"
            assert row["reasons"][1].startswith("cache.page_invalid:")
            assert row["score"] == 0.0
    failed_templates = {t for t, group in by_template.items() if not group[0]["passed"]}
    assert any(t.startswith("stocks.") for t in failed_templates) and "news.points" in failed_templates
    assert failed_templates & {"weather.temperature", "weather.forecast_high", "weather.warmer_city"}
    assert counts.passed > 0


def test_verifier_flags_a_cache_that_went_bad_after_generation(demo_cache_dir, cache_copy):
    rows = [r for r in _rows(_request(demo_cache_dir, num_tasks=40, subtasks=1))
            if json.loads(r["metadata"])["task"]["subtasks"][0]["template"].startswith("stocks.")]
    assert rows
    (cache_copy / "stockquotes.test" / "_root" / "page.json").write_text("[]")
    verified, counts = _verify(rows, cache_copy)
    assert counts.passed == 0
    assert all(r["reasons"] == ["cache.page_invalid:stockquotes.test/_root/page.json: page.json is not a JSON object"]
               for r in verified)


def test_subtasks_option_is_validated(demo_cache_dir):
    with pytest.raises(ValueError, match="subtasks"):
        list(liveweb_family.FAMILY.generate(_request(demo_cache_dir, subtasks=7)))


def test_a_route_that_leaves_the_cache_fails_only_its_tasks(cache_copy):
    for folder in (cache_copy / "stockquotes.test").glob("search__q=*"):
        shutil.rmtree(folder)
    rows = _rows(_request(cache_copy, num_tasks=60, subtasks=1))
    verified, counts = _verify(rows, cache_copy)
    assert counts.rows == 60
    for row in verified:
        template = json.loads(row["metadata"])["task"]["subtasks"][0]["template"]
        if template in ("stocks.price", "stocks.compare_change", "stocks.history_high"):
            assert row["reasons"][:1] == ["task.build_failed"]
            assert row["reasons"][1].startswith("navigation.outside_cache:")
            assert "https://stockquotes.test/search?q=" in row["reasons"][1]
        else:
            assert row["passed"], (template, row["reasons"])
    assert counts.failed > 0 and counts.passed > 0


def test_the_engine_never_imports_dagster():
    code = ("import sys, orbit.envs.liveweb.family, orbit.envs.liveweb.environment; "
            "sys.exit(1 if any(m.split('.')[0] == 'dagster' for m in sys.modules) else 0)")
    assert subprocess.run([sys.executable, "-c", code]).returncode == 0
