"""Dagster sensors and automation."""

from sensors.automation import orbit_automation

SENSORS = [orbit_automation]
