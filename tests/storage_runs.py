"""A small partitioned asset job with a blocking check, run on a given Dagster instance, and what its storage
recorded, for comparing Orbit's storage classes with Dagster's own (tests/assets/test_sqlite_storage.py,
tests/scale/test_postgres.py)."""

import dagster as dg

ROUNDS = dg.DynamicPartitionsDefinition(name="storage_rounds")
PARTS = dg.MultiPartitionsDefinition({"env": dg.StaticPartitionsDefinition(["a", "b"]), "round": ROUNDS})
CHECK = dg.AssetCheckSpec("positive", asset="made", blocking=True, partitions_def=PARTS)


@dg.asset(partitions_def=PARTS, check_specs=[CHECK])
def made(context):
    yield dg.Output(1, metadata={"partition": str(context.partition_key)})
    yield dg.AssetCheckResult(passed=True, check_name="positive", metadata={"seen": 1})


@dg.asset(partitions_def=PARTS, deps=[made])
def used(context) -> None:
    context.log.info("used %s", context.partition_key)


class NoIO(dg.ConfigurableIOManager):
    def handle_output(self, context, obj):
        pass

    def load_input(self, context):
        return None


JOB = dg.Definitions(assets=[made, used], resources={"io_manager": NoIO()},
                     jobs=[dg.define_asset_job("storage_job")]).resolve_job_def("storage_job")


def run_and_record(instance: dg.DagsterInstance) -> dict:
    """Two runs (partitions a|r1 then b|r1), then a third created for b|r1 and not started (what its planned
    events alone record), and what the storage answers about them, run ids replaced by their order so that two
    instances compare equal."""
    instance.add_dynamic_partitions("storage_rounds", ["r1"])
    ids = []
    for env in ("a", "b"):
        result = JOB.execute_in_process(instance=instance,
                                        partition_key=dg.MultiPartitionKey({"env": env, "round": "r1"}))
        assert result.success
        ids.append(result.run_id)
    key = dg.MultiPartitionKey({"env": "b", "round": "r1"})
    ids.append(instance.create_run_for_job(JOB, tags=JOB.get_tags_for_partition_key(key, selected_asset_keys=None))
               .run_id)
    name = {run_id: f"run{n}" for n, run_id in enumerate(ids)}
    events = [[(e.dagster_event_type.value if e.dagster_event_type else "LOG", e.step_key,
                e.dagster_event.partition if e.dagster_event else None) for e in instance.all_logs(run_id)]
              for run_id in ids]
    records = {}
    for asset in (dg.AssetKey("made"), dg.AssetKey("used")):
        (record,) = instance.get_asset_records([asset])
        entry = record.asset_entry
        records[asset.to_user_string()] = {
            "last_run": name[entry.last_run_id],
            "latest_planned_b": name[instance.get_latest_planned_materialization_info(asset, "b|r1").run_id],
            "last_materialized_partition": entry.last_materialization.asset_materialization.partition,
            "materialized": sorted(instance.get_materialized_partitions(asset)),
            "planned": [(name[r.run_id], r.event_log_entry.dagster_event.partition) for r in
                        instance.fetch_planned_materializations(dg.AssetRecordsFilter(asset_key=asset),
                                                                limit=10).records],
        }
    checks = [(name[c.run_id], c.status.value, c.partition) for c in instance.event_log_storage
              .get_asset_check_execution_history(CHECK.key, limit=10)]
    return {"events": events, "records": records, "checks": checks}
