"""The Dagster event log on SQLite, with one connection per database file instead of one per event.

Dagster's ``SqliteEventLogStorage`` opens a new SQLite connection for every statement batch and closes it
afterwards. Closing the last connection of a WAL database checkpoints it, and each commit and checkpoint
waits for the disk (``synchronous=FULL``): on these disks about 45 ms per event, some 50 events per
round x env run (``bench/bench_round.py`` measured the whole round at 4-6x the engine's own work).

``OrbitSqliteEventLogStorage`` is the same storage, same files and tables, with these changes:

* each database file (a run's shard, the cross-run index) keeps its engine and pooled connection for the
  life of the process (the least recently used are closed past ``MAX_ENGINES``), so nothing is
  checkpointed per event;
* ``synchronous=NORMAL`` in WAL mode: a commit no longer waits for the disk. SQLite documents this
  setting as safe against corruption on power loss; an OS crash may lose the last events written before
  it, never the database. A process that dies (a killed run) loses nothing;
* a new run's shard is a copy of an empty shard made once per process with the same tables, the same
  alembic stamp (from a migration script directory read once: Dagster reads its ~90 migration files twice
  per run) and WAL mode in its header, written to a synced temporary file and hard-linked into place only if
  no shard is there; building each shard statement by statement and converting it to WAL cost 30-40 ms of
  every run here.

Watchers (the UI following a running run) are told of new events when the run's shard changes; with the
connection kept open the changes land in ``<run>.db-wal``, so the watch covers that file too.

``orbit home`` writes it into ``dagster.yaml`` for SQLite instances (``orbit.io.home.storage_yaml``);
PostgreSQL instances keep dagster-postgres' storage.
"""

import os
import tempfile
import threading
from collections import OrderedDict
from contextlib import contextmanager
from typing import Iterator

import dagster._core.storage.event_log.sqlite.sqlite_event_log as dagster_sqlite
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from dagster._core.storage.event_log.schema import SqlEventLogStorageMetadata, SqlEventLogStorageTable
from dagster._core.storage.runs.sqlite.sqlite_run_storage import SqliteRunStorage
from dagster._core.storage.event_log.sqlite.sqlite_event_log import (
    INDEX_SHARD_NAME,
    SQLITE_BUSY_TIMEOUT_SECONDS,
    SqliteEventLogStorage,
    SqliteEventLogStorageWatchdog,
)
from dagster._core.storage.sql import create_engine, get_alembic_config
from dagster._serdes import ConfigurableClassData

from resources.planned_events import PlannedEventBatches
from resources.storage_checks import RecentPartitions, RememberedRunChecks, RememberedTables
from sqlalchemy import event
from sqlalchemy.pool import NullPool
from sqlalchemy.engine import Connection, Engine

MAX_ENGINES = 16  # open database files per process: the index and the shards of the runs it writes
_SCRIPTS: list = []  # the event log's alembic script directory, read once per process
_SCRIPTS_LOCK = threading.Lock()
_TEMPLATE: list[bytes] = []  # an empty run shard's bytes, made once per process
_TEMPLATE_LOCK = threading.Lock()


def _scripts() -> ScriptDirectory:
    with _SCRIPTS_LOCK:
        if not _SCRIPTS:
            _SCRIPTS.append(ScriptDirectory.from_config(get_alembic_config(dagster_sqlite.__file__)))
        return _SCRIPTS[0]


class OrbitSqliteEventLogStorage(PlannedEventBatches, RecentPartitions, RememberedTables, SqliteEventLogStorage):
    """``SqliteEventLogStorage`` keeping one engine per shard (``synchronous=NORMAL``, WAL)."""

    def __init__(self, base_dir: str, inst_data: ConfigurableClassData | None = None):
        self._engines: "OrderedDict[str, Engine]" = OrderedDict()
        self._engines_lock = threading.Lock()
        super().__init__(base_dir, inst_data)

    def _engine(self, shard: str) -> Engine:
        with self._engines_lock:
            engine = self._engines.get(shard)
            if engine is not None:
                self._engines.move_to_end(shard)
                return engine
            engine = create_engine(self.conn_string_for_shard(shard),
                                   connect_args={"timeout": SQLITE_BUSY_TIMEOUT_SECONDS, "check_same_thread": False},
                                   pool_size=1, max_overflow=4)
            event.listen(engine, "connect", _wal_normal)
            self._engines[shard] = engine
            while len(self._engines) > MAX_ENGINES:
                _, old = self._engines.popitem(last=False)
                old.dispose()
            return engine

    @contextmanager
    def _connect(self, shard: str) -> Iterator[Connection]:
        with self._db_lock:
            if shard not in self._initialized_dbs:
                # a new run's shard starts as a copy of the template (before any connection creates the file);
                # a shard that exists already, or that another process created first, is checked as Dagster does
                if shard == INDEX_SHARD_NAME or not self._place_new_shard(self.path_for_shard(shard)):
                    self._initdb(self._engine(shard))
                self._initialized_dbs.add(shard)
            engine = self._engine(shard)
            with engine.connect() as conn:
                with conn.begin():
                    yield conn

    def _init_run_shard(self, engine: Engine) -> None:
        """A new run's shard: Dagster's tables, stamped with the migration head (as ``_initdb`` does)."""
        SqlEventLogStorageMetadata.create_all(engine)
        with engine.connect() as connection:
            MigrationContext.configure(connection).stamp(_scripts(), "head")
            connection.commit()

    def _template(self) -> bytes:
        """The bytes of an empty run shard (tables, stamp, WAL mode in its header), made once per process: a
        shard built statement by statement and converted to WAL cost 30-40 ms of every run here, a copy ~1 ms."""
        with _TEMPLATE_LOCK:
            if not _TEMPLATE:
                with tempfile.TemporaryDirectory(prefix="orbit-shard-") as folder:
                    path = os.path.join(folder, "template.db")
                    engine = create_engine(f"sqlite:///{path}", poolclass=NullPool)
                    event.listen(engine, "connect", _wal_normal)
                    self._init_run_shard(engine)
                    engine.dispose()  # the last connection closes: the WAL is checkpointed into the file
                    assert not os.path.exists(path + "-wal") or not os.path.getsize(path + "-wal")
                    with open(path, "rb") as f:
                        _TEMPLATE.append(f.read())
            return _TEMPLATE[0]

    def _place_new_shard(self, path: str) -> bool:
        """Create a run's shard at ``path`` from the template, durably and only if no file is there (a hard link
        of a synced temporary file: another process's shard is never replaced). False if one exists."""
        if os.path.exists(path):
            return False
        tmp = f"{path}.{os.getpid()}.{threading.get_ident()}.tmp"
        try:
            with open(tmp, "wb") as f:
                f.write(self._template())
                f.flush()
                os.fsync(f.fileno())
            try:
                os.link(tmp, path)
            except FileExistsError:
                return False
        finally:
            try:
                os.unlink(tmp)
            except FileNotFoundError:
                pass
        return True

    def _insert_run_rows(self, rows: list[dict]) -> None:
        """The run's shard gets the rows in one insert."""
        with self.run_connection(rows[0]["run_id"]) as conn:
            conn.execute(SqlEventLogStorageTable.insert().values(rows))

    def _insert_index_rows(self, conn: Connection, rows: list[dict]) -> list[int]:
        """A copy of each row in the index, as ``store_event`` mirrors asset and check events there."""
        return [conn.execute(SqlEventLogStorageTable.insert().values(**row)).inserted_primary_key[0] for row in rows]

    def _table_exists(self, table_name: str) -> bool:
        """Whether the index has a table, through the kept engine (Dagster's check opens and closes a
        connection each time it is asked: before every dynamic-partition and asset-check query)."""
        with self._engine(INDEX_SHARD_NAME).connect() as conn:
            return bool(conn.dialect.has_table(conn, table_name))

    def watch(self, run_id: str, cursor: str | None, callback) -> None:
        from watchdog.observers import Observer

        if not self._obs:
            self._obs = Observer()
            self._obs.start()
        watchdog = _ShardWatchdog(self, run_id, callback, cursor)
        self._watchers[run_id][callback] = (watchdog, self._obs.schedule(watchdog, self._base_dir, recursive=True))

    def dispose(self) -> None:
        with self._engines_lock:
            while self._engines:
                self._engines.popitem()[1].dispose()
        super().dispose()

    @classmethod
    def from_config_value(cls, inst_data: ConfigurableClassData | None, config_value) -> "OrbitSqliteEventLogStorage":
        return cls(inst_data=inst_data, **config_value)


def _wal_normal(dbapi_conn, _record) -> None:
    cursor = dbapi_conn.cursor()
    try:
        cursor.execute("PRAGMA journal_mode=WAL")
        cursor.execute("PRAGMA synchronous=NORMAL")
    finally:
        cursor.close()


class _ShardWatchdog(SqliteEventLogStorageWatchdog):
    """Dagster's watchdog for one run's shard, also woken by writes to the shard's WAL file."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self._paths = {self._log_path, self._log_path + "-wal"}
        self._patterns = sorted(self._paths)

    @property
    def patterns(self):
        return self._patterns

    def on_modified(self, event) -> None:
        if os.fsdecode(event.src_path) in self._paths:
            self._process_log()


class OrbitSqliteRunStorage(RememberedRunChecks, SqliteRunStorage):
    """Dagster's SQLite run storage (same file, ``history/runs.db``, same tables) with one kept engine per
    process in WAL mode with ``synchronous=NORMAL``, instead of a new engine and connection per statement batch
    (a round x env run made some 60 of them, each closing the database's last connection: a WAL checkpoint).
    Migration checks and snapshot lookups as ``resources.storage_checks`` answers them."""

    def __init__(self, conn_string: str, inst_data: ConfigurableClassData | None = None):
        self._kept: Engine | None = None
        self._kept_lock = threading.Lock()
        super().__init__(conn_string, inst_data)

    def _kept_engine(self) -> Engine:
        with self._kept_lock:
            if self._kept is None:
                # overflow connections serve a daemon's or webserver's threads at once; one stays pooled
                self._kept = create_engine(self._conn_string, pool_size=1, max_overflow=16,
                                           connect_args={"timeout": SQLITE_BUSY_TIMEOUT_SECONDS,
                                                         "check_same_thread": False})
                event.listen(self._kept, "connect", _wal_normal)
            return self._kept

    @contextmanager
    def connect(self) -> Iterator[Connection]:
        with self._kept_engine().connect() as conn:
            with conn.begin():
                yield conn

    def dispose(self) -> None:
        with self._kept_lock:
            if self._kept is not None:
                self._kept.dispose()
                self._kept = None
        super().dispose()

    @classmethod
    def from_config_value(cls, inst_data: ConfigurableClassData | None, config_value) -> "OrbitSqliteRunStorage":
        return cls.from_local(inst_data=inst_data, **config_value)
