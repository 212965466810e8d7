"""Invalid round partition keys never start runs: the automation skips them and the round-key sensor shows them."""

import dagster as dg

from orbit.envs import env_names
from orbit_assets.automation import partition_round
from orbit_assets.partitions import ROUNDS, round_env_key, round_env_partitions, round_partitions


def test_partition_round_reads_both_key_shapes():
    assert partition_round(round_env_partitions, str(round_env_key("r0003", env_names()[0]))) == "r0003"
    assert partition_round(round_partitions, "r5") == "r5"
    assert partition_round(None, "x") is None


def test_automation_requests_no_partition_of_an_invalid_round_key():
    from orbit_assets.definitions import defs

    with dg.instance_for_test() as instance:
        result = dg.evaluate_automation_conditions(defs=defs, instance=instance)
        instance.add_dynamic_partitions(ROUNDS, ["r5", "r0000", "R0001", "r00001"])
        result = dg.evaluate_automation_conditions(defs=defs, instance=instance, cursor=result.cursor)
        requested = set(result.get_requested_partitions(dg.AssetKey("raw_samples")))
        assert requested == {str(round_env_key("r0000", env)) for env in env_names()}
        # every later tick too: the invalid keys stay in the instance and are still never requested
        again = dg.evaluate_automation_conditions(defs=defs, instance=instance, cursor=result.cursor)
        assert not any("r5" in k.split("|") for k in again.get_requested_partitions(dg.AssetKey("raw_samples")))


def test_round_key_sensor_launches_one_failing_run_per_invalid_key():
    from orbit_assets.key_checks import INVALID_KEY_TAG, invalid_round_key, round_key_sensor

    with dg.instance_for_test() as instance:
        instance.add_dynamic_partitions(ROUNDS, ["r0000"])
        ctx = dg.build_sensor_context(instance=instance)
        assert isinstance(round_key_sensor(ctx), dg.SkipReason)
        instance.add_dynamic_partitions(ROUNDS, ["r5"])
        ctx = dg.build_sensor_context(instance=instance, cursor=ctx.cursor)
        requests = round_key_sensor(ctx)
        assert [r.tags[INVALID_KEY_TAG] for r in requests] == ["r5"]
        first = requests[0].run_key
        ctx = dg.build_sensor_context(instance=instance, cursor=ctx.cursor)
        assert [r.run_key for r in round_key_sensor(ctx)] == [first]  # the same run key: Dagster launches it once
        instance.delete_dynamic_partition(ROUNDS, "r5")
        ctx = dg.build_sensor_context(instance=instance, cursor=ctx.cursor)
        assert isinstance(round_key_sensor(ctx), dg.SkipReason)
        instance.add_dynamic_partitions(ROUNDS, ["r5"])
        ctx = dg.build_sensor_context(instance=instance, cursor=ctx.cursor)
        again = round_key_sensor(ctx)
        assert [r.run_key for r in again] != [first]  # added again: shown again

        result = invalid_round_key.execute_in_process(run_config=again[0].run_config, instance=instance,
                                                      raise_on_error=False)
        assert not result.success
        failure = next(e for e in result.all_events if e.event_type_value == "STEP_FAILURE")
        message = failure.event_specific_data.error_display_string + str(failure.event_specific_data.user_failure_data)
        assert "'r5'" in message and "orbit round remove r5" in message and "Delete partition" in message
