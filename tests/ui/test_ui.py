"""What the user sees in the Dagster UI, in a real browser, checked against the ground truth (GraphQL, files).

a. round_yields' Plots: one plot per env (p_<env>, p_all_<env>, g_<env>) across the round partitions, the same
   numbers as the headline rule over the lake and yield_metrics' p.
b. An invalid round key (r5) added through the UI's *Add a partition* dialog starts no asset run; the failed
   invalid_round_key run names it and the fix.
c. Re-materializing policy_checkpoint r0000 from the UI (default config, then alpha 0.3) leaves the checkpoint
   r0001 sampled from byte-identical, same inode and mtime; the metadata says unchanged, then names the new version
   and the stale round.
"""

import json
import subprocess
import sys
import time
from pathlib import Path

import pyarrow.parquet as pq
import pytest

from dagster_ui import REPO, gql
from orbit.flywheel.rounds import RoundRegistry
from orbit.io import lake
from orbit.stages.yields import headline_row

ROOT = Path(__file__).resolve().parents[2]
ROUNDS = ("r0000", "r0001")

MATERIALIZATIONS = """query($asset: [String!]!) { assetNodeOrError(assetKey: {path: $asset}) { ... on AssetNode {
    assetMaterializations(limit: 100) { partition runId timestamp metadataEntries { label __typename
      ... on FloatMetadataEntry { floatValue } ... on TextMetadataEntry { text }
      ... on MarkdownMetadataEntry { mdStr } ... on PathMetadataEntry { path } } } } } }"""
RUNS = """query($filter: RunsFilter) { runsOrError(filter: $filter, limit: 500) { ... on Runs { results {
    runId jobName status creationTime tags { key value } } } } }"""
TICKS = """query($sensor: SensorSelector!) { sensorOrError(sensorSelector: $sensor) { ... on Sensor {
    sensorState { ticks(limit: 100) { timestamp status } } } } }"""
ROUND_KEYS = """{ assetNodeOrError(assetKey: {path: ["round_yields"]}) { ... on AssetNode { partitionKeys } } }"""


# --- helpers ------------------------------------------------------------------------------------------------

def _metadata(entries: list[dict]) -> dict:
    out = {}
    for e in entries:
        out[e["label"]] = next((e[k] for k in ("floatValue", "text", "mdStr", "path") if k in e), None)
    return out


def materializations(port: int, asset: str) -> list[dict]:
    """Newest first: [{partition, runId, timestamp, metadata}]."""
    node = gql(port, MATERIALIZATIONS, {"asset": [asset]})["assetNodeOrError"]
    return [{**m, "metadata": _metadata(m["metadataEntries"])} for m in node["assetMaterializations"]]


def latest_by_partition(port: int, asset: str) -> dict:
    latest = {}
    for m in sorted(materializations(port, asset), key=lambda m: float(m["timestamp"])):
        latest[m["partition"]] = m["metadata"]
    return latest


def runs(port: int, **filter_) -> list[dict]:
    return gql(port, RUNS, {"filter": filter_ or None})["runsOrError"]["results"]


def sensor_ticks(port: int, name: str) -> list[dict]:
    selector = {**REPO, "sensorName": name}
    return gql(port, TICKS, {"sensor": selector})["sensorOrError"]["sensorState"]["ticks"]


def wait_for(what: str, fn, timeout: float = 300, every: float = 2):
    deadline = time.time() + timeout
    while True:
        value = fn()
        if value:
            return value
        assert time.time() < deadline, f"timed out after {timeout:.0f}s waiting for {what}"
        time.sleep(every)


def wait_run_done(port: int, run_id: str, timeout: float = 600) -> dict:
    def done():
        (run,) = [r for r in runs(port, runIds=[run_id])]
        return run if run["status"] in ("SUCCESS", "FAILURE", "CANCELED") else None
    return wait_for(f"run {run_id}", done, timeout)


def open_ui(page, path: str) -> None:
    """Go to a UI path; the one-time "Join the Dagster community" dialog is skipped whenever it shows."""
    if not getattr(page, "_orbit_handler", False):
        page.add_locator_handler(page.get_by_text("Join the Dagster community"),
                                 lambda _: page.get_by_role("button", name="Skip").click())
        page._orbit_handler = True
    page.goto(page.base + path)


def shot(page, shots_dir: Path, name: str, full_page: bool = True) -> Path:
    # the dialog is marked seen by the dagster_dev fixture; should it show anyway, the handler of open_ui dismisses
    # it before the next action, and the screenshot waits for that (a click here would race the handler's click)
    page.get_by_text("Join the Dagster community").wait_for(state="hidden")
    path = shots_dir / name
    page.screenshot(path=str(path), full_page=full_page)
    return path


def file_facts(folder: Path) -> dict:
    """Every file of a folder: (bytes, inode, mtime_ns)."""
    facts = {}
    for path in sorted(folder.iterdir()):
        st = path.stat()
        facts[path.name] = (path.read_bytes(), st.st_ino, st.st_mtime_ns)
    return facts


# --- a. per-env yield plots ---------------------------------------------------------------------------------

@pytest.mark.timeout(1200)
def test_a_round_yields_plots_one_series_per_env(page, dagster_dev, ui_home, shots_dir, ui_envs):
    port, home = dagster_dev
    # ground truth: each round's round_yields materialization carries the headline p of every env (the rule of
    # orbit.stages.yields.headline_row over the lake's yield rows), p of every source, and g where defined
    reports = latest_by_partition(port, "round_yields")
    assert set(reports) == set(ROUNDS), reports.keys()
    yields = latest_by_partition(port, "yield_metrics")
    for r in ROUNDS:
        meta = reports[r]
        for env in ui_envs:
            rows = pq.read_table(lake.partition_file(home / "lake", "yield_metrics", r, env)).to_pylist()
            head = headline_row(rows)
            assert head["source"] == "policy", (r, env)  # the flywheel's rounds sample a policy: its p is the headline
            assert meta[f"p_{env}"] == pytest.approx(head["pass_rate"]), (r, env)
            assert meta[f"p_all_{env}"] == pytest.approx(next(x for x in rows if x["source"] == "all")["pass_rate"])
            # the same number on yield_metrics (whose p is the headline too, labelled)
            ym = yields[f"{env}|{r}"]
            assert ym["p"] == pytest.approx(meta[f"p_{env}"]) and ym["p_source"] == "policy", (r, env, ym)
            assert ym["p_all"] == pytest.approx(meta[f"p_all_{env}"])
            if r != ROUNDS[0]:
                assert meta[f"g_{env}"] == pytest.approx(head["g"]), (r, env)
        assert f"g_{ui_envs[0]}" not in reports[ROUNDS[0]]  # no g without a previous round
    # ... and the number `orbit yields` prints (the headline rule in SQL, HEADLINE_QUALIFY)
    _, env = ui_home
    cli = subprocess.run([sys.executable, "-m", "orbit_cli.main", "yields", "--format", "json"], cwd=ROOT, env=env,
                         capture_output=True, text=True, timeout=300)
    assert cli.returncode == 0, cli.stderr[-2000:]
    printed = {(row["env"], row["round"]): row for row in json.loads(cli.stdout)}
    assert set(printed) == {(e, r) for e in ui_envs for r in ROUNDS}
    for (e, r), row in printed.items():
        assert row["source"] == "policy", (e, r, row)
        assert row["p"] == pytest.approx(reports[r][f"p_{e}"], abs=5e-5), (e, r, row)  # printed to 4 places

    # what the user sees: Catalog > round_yields > Metadata > Plots, x axis the round partitions
    open_ui(page, "/assets/round_yields")
    page.get_by_role("button", name="Plots").click()
    partitions_axis = page.get_by_role("button", name="Partitions")
    assert partitions_axis.is_visible()  # plotted by partition (the other choice is by event)
    for env in ui_envs:
        for key in (f"p_{env}", f"p_all_{env}", f"g_{env}"):
            title = page.get_by_text(key, exact=True)
            title.first.wait_for(state="visible")
            assert title.count() == 1, key  # one plot per metadata key: one series per env
    n_plots = len([k for k in reports[ROUNDS[-1]] if k.startswith(("p_", "g_"))])
    page.locator("canvas").nth(n_plots - 1).wait_for(state="attached")  # a chart per plot (they draw after titles)
    page.set_viewport_size({"width": 1600, "height": 1900})  # the plots scroll inside the page: show them all
    page.wait_for_timeout(1500)  # the charts animate in
    shot(page, shots_dir, "a-round_yields-plots.png")
    page.set_viewport_size({"width": 1600, "height": 1000})

    # yield_metrics: p is the headline, labelled, beside p_all
    open_ui(page, "/assets/yield_metrics")
    page.get_by_text("p_source", exact=True).first.wait_for(state="visible")
    for key in ("p", "p_all", "p_source"):
        assert page.get_by_text(key, exact=True).count() >= 1, key
    shot(page, shots_dir, "a-yield_metrics-metadata.png")


# --- b. an invalid round key --------------------------------------------------------------------------------

@pytest.mark.timeout(1200)
def test_b_invalid_round_key_from_the_ui_starts_no_run_and_shows_the_problem(page, dagster_dev, shots_dir):
    port, home = dagster_dev
    before = {r["runId"] for r in runs(port)}
    # the user: Catalog > round_yields > Materialize... > Add a partition, types r5, saves, then cancels the launch
    open_ui(page, "/assets/round_yields")
    page.get_by_role("button", name="Materialize…").click()
    launch = page.get_by_role("dialog").filter(has_text="Launch runs to materialize")
    launch.get_by_role("button", name="Add a partition").click()
    add = page.get_by_role("dialog").filter(has_text="Add a partition for rounds")
    add.locator("input").fill("r5")
    shot(page, shots_dir, "b-add-partition-r5.png", full_page=False)
    added_at = time.time()
    add.get_by_role("button", name="Save").click()
    launch.get_by_text("r5", exact=True).first.wait_for(state="visible")  # the dialog selected the new key
    launch.get_by_role("button", name="Cancel").click()

    wait_for("r5 among the round partitions",
             lambda: "r5" in gql(port, ROUND_KEYS)["assetNodeOrError"]["partitionKeys"], 60)

    # the problem shown: one failed invalid_round_key run for r5, launched by round_key_sensor
    def shown():
        found = runs(port, tags=[{"key": "orbit/invalid_round_key", "value": "r5"}])
        return found if found and all(r["status"] == "FAILURE" for r in found) else None
    (problem,) = wait_for("the failed invalid_round_key run of r5", shown, 300)
    assert problem["jobName"] == "invalid_round_key"
    assert {t["key"]: t["value"] for t in problem["tags"]}["dagster/sensor_name"] == "round_key_sensor"

    # several automation ticks after the key was added (2 s interval): none requested anything for r5
    wait_for("5 automation ticks after adding r5",
             lambda: len([t for t in sensor_ticks(port, "orbit_automation") if t["timestamp"] > added_at + 1]) >= 5,
             180)
    new_runs = [r for r in runs(port) if r["runId"] not in before]
    for run in new_runs:
        tags = {t["key"]: t["value"] for t in run["tags"]}
        partition = " ".join(v for k, v in tags.items() if k.startswith("dagster/partition"))
        assert "r5" not in partition, run  # no run of any asset for a partition of r5
        assert run["jobName"] == "invalid_round_key" or "r5" not in str(tags), run
    assert not list((home / "lake").glob("*/r5")), "an asset wrote a partition of r5"
    backfills = gql(port, "{ partitionBackfillsOrError(limit: 50) { ... on PartitionBackfills { results { "
                          "partitionNames } } } }")["partitionBackfillsOrError"]["results"]
    assert not any("r5" in " ".join(b["partitionNames"] or []) for b in backfills)

    # what the user sees: the Runs page lists the failed run with its key; its page says what is wrong and the fix
    open_ui(page, "/runs")
    tag = page.get_by_text("orbit/invalid_round_key: r5").first
    tag.wait_for(state="visible")
    row = tag.locator("xpath=ancestor::*[contains(., 'Failure')][1]")  # the run's row in the table
    row_text = row.inner_text()
    assert "invalid_round_key" in row_text and "round_key_sensor" in row_text and problem["runId"][:8] in row_text
    shot(page, shots_dir, "b-runs-page.png", full_page=False)
    open_ui(page, f"/runs/{problem['runId']}")
    message = page.get_by_text("invalid round partition key 'r5'").first
    message.wait_for(state="visible")
    assert "orbit round remove r5" in message.inner_text()
    assert "Delete partition" in message.inner_text()
    shot(page, shots_dir, "b-invalid_round_key-run.png", full_page=False)


# --- c. a consumed checkpoint is never rewritten -------------------------------------------------------------

def _materialize_policy_checkpoint_r0000(page, port: int, config_yaml: str | None) -> dict:
    """Catalog > policy_checkpoint > Materialize... > partition r0000 (> Config > Add config) > Launch 1 run."""
    before = {r["runId"] for r in runs(port, tags=[{"key": "dagster/partition", "value": "r0000"}])}
    open_ui(page, "/assets/policy_checkpoint")
    page.get_by_role("button", name="Materialize…").click()
    launch = page.get_by_role("dialog").filter(has_text="Launch runs to materialize")
    launch.get_by_text("Select a partition or create one").click()
    page.get_by_role("menuitem").filter(has_text="r0000").click()
    page.keyboard.press("Escape")  # closes the partition menu, not the dialog
    if config_yaml:
        launch.get_by_text("Config", exact=True).click()
        launch.get_by_text("Add config").click()
        editor = page.get_by_role("dialog").filter(has_text="Config Editor")
        editor.locator(".CodeMirror").click()
        page.keyboard.insert_text(config_yaml)
        editor.get_by_text("No errors").wait_for(state="visible")
        editor.get_by_role("button", name="Save config").click()
        launch.get_by_text("Config saved").wait_for(state="visible")
    launch.get_by_role("button", name="Launch 1 run").click()
    page.get_by_text("Launched run").first.wait_for(state="visible")
    (run,) = wait_for("the launched run", lambda: [r for r in runs(
        port, tags=[{"key": "dagster/partition", "value": "r0000"}]) if r["runId"] not in before], 60)
    run = wait_run_done(port, run["runId"])
    assert run["status"] == "SUCCESS", run
    (mat,) = [m for m in materializations(port, "policy_checkpoint") if m["runId"] == run["runId"]]
    return mat["metadata"]


@pytest.mark.timeout(1500)
def test_c_rematerializing_upstream_leaves_the_consumed_checkpoint_untouched(page, dagster_dev, shots_dir):
    port, home = dagster_dev
    checkpoints = home / "checkpoints"
    consumed = checkpoints / "embedded-r0001"
    registry = RoundRegistry(home / "lake")
    assert registry.get("r0001").checkpoint == "embedded-r0001"  # r0001 sampled from it
    policy_tags = {t["key"]: t["value"] for t in runs(
        port, tags=[{"key": "dagster/partition", "value": "tic_tac_toe|r0001"}])[0]["tags"]}
    assert "embedded-r0001/" in policy_tags["orbit/policy"]
    facts = file_facts(consumed)
    assert set(facts) == {"policy.parquet", "orbit_checkpoint.json"}

    # the default config trains the same bytes: nothing is written
    meta = _materialize_policy_checkpoint_r0000(page, port, None)
    assert meta["written"].startswith("unchanged"), meta
    assert meta["checkpoint_version"] == "embedded-r0001"
    assert file_facts(consumed) == facts
    assert sorted(p.name for p in checkpoints.iterdir() if not p.name.startswith(".")) == ["embedded-r0001"]
    open_ui(page, "/assets/policy_checkpoint")
    page.get_by_text("unchanged: the training gave the bytes of embedded-r0001 again", exact=False).first.wait_for(
        state="visible")
    shot(page, shots_dir, "c-policy_checkpoint-unchanged.png")

    # another config trains other bytes: a new version beside it, the consumed folder untouched
    meta = _materialize_policy_checkpoint_r0000(page, port, "ops: {policy_checkpoint: {config: {alpha: 0.3}}}")
    assert meta["checkpoint_version"] == "embedded-r0001.v2", meta
    assert "new version embedded-r0001.v2" in meta["written"]
    assert "r0001" in meta["stale_rounds"], meta  # the round that sampled the old version is listed as stale
    assert meta["next_round"].startswith("none"), meta  # a new version starts no round by itself
    assert file_facts(consumed) == facts  # same bytes, same inode, same mtime
    assert (checkpoints / "embedded-r0001.v2" / "policy.parquet").read_bytes() != facts["policy.parquet"][0]
    open_ui(page, "/assets/policy_checkpoint")
    page.get_by_text("new version embedded-r0001.v2", exact=False).first.wait_for(state="visible")
    # the stale round: markdown metadata, which the UI renders after the plain values (its renderer loads lazily)
    page.get_by_text("sampled from embedded-r0001", exact=False).first.wait_for(state="visible")
    shot(page, shots_dir, "c-policy_checkpoint-new-version.png")

    # the new version starts no round by itself: a checkpoint-sensor tick after it registers nothing for it
    written_at = (checkpoints / "embedded-r0001.v2" / "orbit_checkpoint.json").stat().st_mtime
    wait_for("a checkpoint_sensor tick after the new version",
             lambda: any(t["timestamp"] > written_at + 1 for t in sensor_ticks(port, "checkpoint_sensor")), 120)
    assert all(e.checkpoint != "embedded-r0001.v2" for e in RoundRegistry(home / "lake").entries())
    assert file_facts(consumed) == facts
