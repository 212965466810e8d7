"""A consumed checkpoint is immutable: training again writes a new version (or keeps identical bytes), the
registry keeps the version each round sampled from, a new version starts no round, and later rounds are listed
as stale."""

import os

import dagster as dg
import pyarrow as pa

from orbit.flywheel.checkpoints import (MANIFEST, POLICY_FILE, latest_version, split_version, stale_rounds,
                                        train_embedded, version_name, versions)
from orbit.flywheel.rounds import RoundRegistry
from orbit_assets.partitions import ROUNDS
from resources.settings import OrbitSettings
from sensors.checkpoints import checkpoint_sensor


def _records(n_moves: int) -> pa.Table:

    system = ("You are playing tic tac toe as player 0.\nRules: Tic-tac-toe on a 3x3 board.\nOn each turn you see "
              "your observation and the legal actions as 'ID -> action'. Answer with the ID of your chosen action only.")
    rows = []
    for move in range(n_moves):
        rows.append({"messages": [
            {"role": "system", "content": system},
            {"role": "user", "content": f"Observation (player 0):\n...\n...\n...\nLegal actions (answer with one ID):\n"
                                        f"{move} -> x({move // 3},{move % 3})"},
            {"role": "assistant", "content": str(move)}], "passed": True})
    return pa.Table.from_pylist(rows)


def _snapshot(folder):
    return {p.name: (p.read_bytes(), p.stat().st_ino, p.stat().st_mtime_ns) for p in sorted(folder.iterdir())}


def test_version_names_round_trip():
    assert split_version("embedded-r0003") == ("embedded-r0003", 1)
    assert split_version("embedded-r0003.v2") == ("embedded-r0003", 2)
    assert split_version("x.v1") == ("x.v1", 1) and split_version("a.v0") == ("a.v0", 1)
    assert version_name("b", 1) == "b" and version_name("b", 12) == "b.v12"


def test_training_again_never_rewrites_a_checkpoint(tmp_path):
    ckpts = tmp_path / "checkpoints"
    first, _ = train_embedded(_records(3), ckpts, "embedded-r0001", parent_round="r0000")
    assert first.created and first.checkpoint.name == "embedded-r0001" and first.superseded is None
    before = _snapshot(ckpts / "embedded-r0001")

    same, _ = train_embedded(_records(3), ckpts, "embedded-r0001", parent_round="r0000")
    assert not same.created and same.checkpoint.name == "embedded-r0001"
    assert _snapshot(ckpts / "embedded-r0001") == before  # bytes, inode and mtime
    assert [p.name for p in versions(ckpts, "embedded-r0001")] == ["embedded-r0001"]
    assert not [p for p in ckpts.iterdir() if p.name.startswith(".staging")]

    other, policy = train_embedded(_records(5), ckpts, "embedded-r0001", parent_round="r0000", alpha=0.3)
    assert other.created and other.checkpoint.name == "embedded-r0001.v2" and other.superseded == "embedded-r0001"
    assert _snapshot(ckpts / "embedded-r0001") == before
    assert latest_version(ckpts, "embedded-r0001").name == "embedded-r0001.v2"
    assert policy.id == "embedded:embedded-r0001.v2" and "embedded-r0001.v2" in other.checkpoint.policy
    # a folder left by a crashed writer (no manifest) is never written into
    (ckpts / "embedded-r0001.v3").mkdir()
    (ckpts / "embedded-r0001.v3" / POLICY_FILE).write_bytes(b"half")
    third, _ = train_embedded(_records(1), ckpts, "embedded-r0001", parent_round="r0000")
    assert third.checkpoint.name == "embedded-r0001.v4"
    assert (ckpts / "embedded-r0001.v3" / POLICY_FILE).read_bytes() == b"half"


def test_a_new_version_starts_no_round_and_later_rounds_are_stale(tmp_path):
    ckpts = tmp_path / "checkpoints"
    settings = OrbitSettings(lake=str(tmp_path / "lake"), checkpoints=str(ckpts), max_rounds=8)
    registry = RoundRegistry(settings.lake)
    registry.add("embedded:uniform")
    w1, _ = train_embedded(_records(3), ckpts, "embedded-r0001", parent_round="r0000")
    with dg.instance_for_test() as instance:
        instance.add_dynamic_partitions(ROUNDS, ["r0000"])
        ctx = dg.build_sensor_context(instance=instance, resources={"settings": settings})
        checkpoint_sensor(ctx)
        assert [(e.round, e.checkpoint) for e in registry.entries()] == [("r0000", None), ("r0001", "embedded-r0001")]
        registry.add("embedded:uniform", note="a later round")  # r0002
        assert stale_rounds(registry.entries(), ckpts) == {}

        w2, _ = train_embedded(_records(4), ckpts, "embedded-r0001", parent_round="r0000", alpha=0.5)
        assert w2.checkpoint.name == "embedded-r0001.v2"
        ctx = dg.build_sensor_context(instance=instance, cursor=ctx.cursor, resources={"settings": settings})
        reason = checkpoint_sensor(ctx)
        assert "newer versions ['embedded-r0001.v2'] start no round" in reason.skip_message
        assert [e.round for e in registry.entries()] == ["r0000", "r0001", "r0002"]
        assert registry.get("r0001").checkpoint == "embedded-r0001"  # the version r0001 sampled from
        stale = stale_rounds(registry.entries(), ckpts)
        assert list(stale) == ["r0001", "r0002"] and "embedded-r0001.v2" in stale["r0001"]


def test_max_rounds_and_manual_next_rounds_are_said_in_the_tick(tmp_path):
    ckpts = tmp_path / "checkpoints"
    for next_rounds, max_rounds, expected in [("manual", 8, "next_rounds=manual"), ("auto", 1, "MAX_ROUNDS REACHED")]:
        lake = tmp_path / f"lake-{next_rounds}"
        settings = OrbitSettings(lake=str(lake), checkpoints=str(ckpts), max_rounds=max_rounds, next_rounds=next_rounds)
        RoundRegistry(lake).add("embedded:uniform")
        if not (ckpts / "embedded-r0001").exists():
            train_embedded(_records(2), ckpts, "embedded-r0001", parent_round="r0000")
        with dg.instance_for_test() as instance:
            reason = checkpoint_sensor(dg.build_sensor_context(instance=instance, resources={"settings": settings}))
            assert expected in reason.skip_message, reason.skip_message
            assert [e.round for e in RoundRegistry(lake).entries()] == ["r0000"]


def test_sensor_description_shows_the_autonomy_settings(monkeypatch):
    from resources import autonomy

    monkeypatch.setenv("ORBIT_NEXT_ROUNDS", "manual")
    monkeypatch.setenv("ORBIT_MAX_ROUNDS", "3")
    assert "next_rounds=manual" in autonomy() and "max_rounds=3" in autonomy()
    assert "next_rounds=" in checkpoint_sensor.description and "max_rounds=" in checkpoint_sensor.description
