"""Dagster sensors and automation."""

from sensors.automation import orbit_automation
from sensors.checkpoints import checkpoint_sensor

SENSORS = [orbit_automation, checkpoint_sensor]
