"""Dagster sensors and automation."""

from sensors.automation import orbit_automation
from sensors.checkpoints import checkpoint_sensor
from sensors.rounds import round_registry_sensor, run_watchdog

SENSORS = [orbit_automation, checkpoint_sensor, round_registry_sensor, run_watchdog]
