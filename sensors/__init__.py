"""Dagster sensors and automation."""

from orbit_assets.key_checks import round_key_sensor
from sensors.automation import orbit_automation
from sensors.checkpoints import checkpoint_sensor
from sensors.rounds import round_registry_sensor, run_watchdog

SENSORS = [orbit_automation, checkpoint_sensor, round_registry_sensor, round_key_sensor, run_watchdog]
