"""Dagster's PostgreSQL storages (dagster-postgres) with the answers that cannot change back remembered.

The same tables, the same connections and settings; only ``resources.storage_checks``' remembered answers on
top. On PostgreSQL those lookups are catalog queries (SQLAlchemy's has-table inspection, several round trips
each) that dagster-postgres repeats before every asset event and dynamic-partition query, and a read of the
whole execution plan snapshot at every run's creation.

``orbit home --postgres URL`` writes these classes into ``dagster.yaml`` (run, event log and schedule storage,
each with the same ``postgres_db`` settings).
"""

from typing import Any, Mapping

from dagster._serdes import ConfigurableClassData
from dagster_postgres.event_log.event_log import PostgresEventLogStorage
from dagster_postgres.run_storage.run_storage import PostgresRunStorage
from dagster_postgres.utils import get_token_provider_from_config, pg_url_from_config

from resources.storage_checks import RememberedRunChecks, RememberedTables


def _settings(config_value: Mapping[str, Any]) -> dict:
    return {"postgres_url": pg_url_from_config(config_value),
            "should_autocreate_tables": config_value.get("should_autocreate_tables", True),
            "token_provider": get_token_provider_from_config(config_value)}


class OrbitPostgresRunStorage(RememberedRunChecks, PostgresRunStorage):
    """``PostgresRunStorage`` with migration checks and snapshot lookups remembered."""

    @classmethod
    def from_config_value(cls, inst_data: ConfigurableClassData | None, config_value) -> "OrbitPostgresRunStorage":
        return cls(inst_data=inst_data, **_settings(config_value))


class OrbitPostgresEventLogStorage(RememberedTables, PostgresEventLogStorage):
    """``PostgresEventLogStorage`` with ``has_table`` remembered once yes."""

    @classmethod
    def from_config_value(cls, inst_data: ConfigurableClassData | None,
                          config_value) -> "OrbitPostgresEventLogStorage":
        return cls(inst_data=inst_data, **_settings(config_value))
