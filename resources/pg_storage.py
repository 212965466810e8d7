"""Dagster's PostgreSQL storages (dagster-postgres) with a kept connection and fewer round trips.

The same tables and settings, with these changes:

* **one connection kept per storage and process** (``KeptConnection``). dagster-postgres opens a new connection
  for every statement outside the webserver (a new server process, TCP and password authentication: about 12 ms
  of every event here, against 1 ms on a kept connection) so as to hold none open. Orbit keeps one per storage
  per process: a run worker, ``orbit run`` and the daemon each hold at most one idle connection per storage
  (two: runs and the event log; schedule storage is Dagster's own), recycled after an hour, pinged before use
  after 30 s idle (a connection a server restart or a proxy's idle timeout closed is replaced instead of failing
  the statement; busy connections cost no ping), and dropped in a forked child. More threads at once still get
  more connections, closed when returned, as before. Budget ``max_connections`` for two per process (the default
  100 leaves room for some 45 concurrent run workers);
* the answers that cannot change back remembered (``resources.storage_checks``): catalog queries
  (SQLAlchemy's has-table and column inspection, several round trips each) that dagster-postgres repeats
  before every asset event and asset read, a read of the whole execution plan snapshot at every run's
  creation; a round partition found to exist is remembered for a second;
* a run's planned events stored as one batch (``resources.planned_events``), and no ``NOTIFY`` per event.

``orbit home --postgres URL`` writes these classes into ``dagster.yaml`` (run, event log and schedule storage,
each with the same ``postgres_db`` settings).
"""

import os
import time
import weakref
from typing import Any, Mapping

from dagster._core.events import ASSET_CHECK_EVENTS, ASSET_EVENTS
from dagster._core.storage.event_log.schema import SqlEventLogStorageTable
from dagster._serdes import ConfigurableClassData
from dagster_postgres.event_log.event_log import PostgresEventLogStorage
from dagster_postgres.run_storage.run_storage import PostgresRunStorage
from dagster_postgres.utils import create_pg_engine, get_token_provider_from_config, pg_url_from_config
from sqlalchemy import event, exc

from resources.planned_events import PlannedEventBatches
from resources.storage_checks import RecentPartitions, RememberedRunChecks, RememberedTables


KEEP_RECYCLE_S = 3600  # a kept connection older than this is replaced
IDLE_PING_S = 30.0  # a kept connection idle longer than this is pinged before use (proxies drop idle ones)
_KEPT: "weakref.WeakSet" = weakref.WeakSet()  # the pooled engines of this process


def _drop_inherited() -> None:
    """In a forked child: forget the parent's pooled connections without closing them (they are the
    parent's sockets); the child opens its own."""
    for engine in list(_KEPT):
        engine.dispose(close=False)


os.register_at_fork(after_in_child=_drop_inherited)


def _mark_idle(_dbapi_conn, record) -> None:
    record.info["orbit_idle_since"] = time.monotonic()


def _ping_if_idle(dbapi_conn, record, _proxy) -> None:
    """A connection back from a long idle (a long step, a quiet daemon) is pinged first: a server restart or a
    proxy's idle timeout may have closed it, and a dead one is replaced here instead of failing the statement.
    Busy connections are not pinged (no round trip per statement)."""
    since = record.info.get("orbit_idle_since")
    if since is None or time.monotonic() - since < IDLE_PING_S:
        return
    try:
        cursor = dbapi_conn.cursor()
        try:
            cursor.execute("SELECT 1")
        finally:
            cursor.close()
    except Exception as err:  # the pool drops this connection and checks out a new one
        raise exc.DisconnectionError("kept connection closed while idle") from err


class KeptConnection:
    """For a dagster-postgres storage: its engine keeps one connection (see the module's note)."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        null_engine = self._engine
        self._engine = create_pg_engine(self.postgres_url, self._token_provider, isolation_level="AUTOCOMMIT",
                                        pool_size=1, max_overflow=-1, pool_recycle=KEEP_RECYCLE_S)
        event.listen(self._engine, "checkin", _mark_idle)
        event.listen(self._engine, "checkout", _ping_if_idle)
        _KEPT.add(self._engine)
        null_engine.dispose()

    def optimize_for_webserver(self, *args, **kwargs) -> None:
        kept = self._engine  # replaced by dagster-postgres' own pool for the webserver
        super().optimize_for_webserver(*args, **kwargs)
        kept.dispose()

    def dispose(self) -> None:
        super().dispose()
        self._engine.dispose()


def _settings(config_value: Mapping[str, Any]) -> dict:
    return {"postgres_url": pg_url_from_config(config_value),
            "should_autocreate_tables": config_value.get("should_autocreate_tables", True),
            "token_provider": get_token_provider_from_config(config_value)}


class OrbitPostgresRunStorage(KeptConnection, RememberedRunChecks, PostgresRunStorage):
    """``PostgresRunStorage`` with a kept connection, migration checks and snapshot lookups remembered."""

    @classmethod
    def from_config_value(cls, inst_data: ConfigurableClassData | None, config_value) -> "OrbitPostgresRunStorage":
        return cls(inst_data=inst_data, **_settings(config_value))


class OrbitPostgresEventLogStorage(KeptConnection, PlannedEventBatches, RecentPartitions, RememberedTables,
                                   PostgresEventLogStorage):
    """``PostgresEventLogStorage`` with a kept connection, schema checks remembered once yes, recent partitions
    remembered briefly, planned events stored as one batch, and no ``NOTIFY`` per event."""

    def store_event(self, event) -> None:
        """Dagster-postgres' ``store_event`` without its ``NOTIFY``: dagster-postgres no longer listens for it
        (it kept it for webservers of older releases reading the same database; an Orbit deployment runs one
        pinned release everywhere), and it cost a round trip and a commit per event."""
        with self._connect() as conn:
            event_id = int(conn.execute(self.prepare_insert_event(event).returning(SqlEventLogStorageTable.c.id))
                           .scalar_one())
        if event.is_dagster_event and event.dagster_event_type in ASSET_EVENTS and event.dagster_event.asset_key:
            with self.index_transaction() as conn:
                self._store_asset_event_tags(conn, [event], [event_id])
                self._store_asset_event(conn, event, event_id)
        if event.is_dagster_event and event.dagster_event_type in ASSET_CHECK_EVENTS:
            self.store_asset_check_event(event, event_id)

    def _insert_index_rows(self, conn, rows: list[dict]) -> list[int]:
        """One insert of all the rows (the run's events and the index are one table here), ids in order."""
        result = conn.execute(SqlEventLogStorageTable.insert().values(rows).returning(SqlEventLogStorageTable.c.id))
        return [int(i) for (i,) in result.fetchall()]

    @classmethod
    def from_config_value(cls, inst_data: ConfigurableClassData | None,
                          config_value) -> "OrbitPostgresEventLogStorage":
        return cls(inst_data=inst_data, **_settings(config_value))
