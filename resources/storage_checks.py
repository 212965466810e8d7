"""Answers Dagster's storages look up again and again that cannot change back, remembered once they are yes.

Every run asks its instance's storages whether a migration was applied (a column, an index, a table) before
the queries that depend on it, and whether the run's execution plan snapshot is stored. Dagster answers the
first by inspecting the database (the SQLite and PostgreSQL has-table checks open a connection each time) and
the second by reading and deserializing the whole snapshot. Migrations only add, so a yes stays a yes for the
life of the process and is remembered; a no is asked again (a migration may run meanwhile). A snapshot is
looked up by its id, a hash of its content.

``RecentPartitions`` is the one answer that can change back (a partition may be deleted): it remembers a yes
for a second only.

Mixed into Orbit's storage classes (``resources.sqlite_storage``, ``resources.pg_storage``) before the Dagster
class they extend.
"""

import time


class _Remembered:
    """The yes answers of one storage (``_known()``: migrations, tables, columns, index markers); a no is asked
    again each time."""

    def _known(self) -> set:
        return self.__dict__.setdefault("_orbit_known", set())

    def _remembered(self, name: str, ask) -> bool:
        known = self._known()
        if name in known:
            return True
        yes = bool(ask())
        if yes:
            known.add(name)
        return yes


class RememberedRunChecks(_Remembered):
    """For a ``SqlRunStorage`` subclass."""

    def has_run_stats_index_cols(self) -> bool:
        return self._remembered("run_stats_index_cols", super().has_run_stats_index_cols)

    def has_bulk_actions_selector_cols(self) -> bool:
        return self._remembered("bulk_actions_selector_cols", super().has_bulk_actions_selector_cols)

    def has_backfill_id_column(self) -> bool:
        return self._remembered("backfill_id_column", super().has_backfill_id_column)

    def has_bulk_action_job_name_column(self) -> bool:
        return self._remembered("bulk_action_job_name_column", super().has_bulk_action_job_name_column)

    def has_built_index(self, migration_name: str) -> bool:
        parent = super()
        return self._remembered(f"index:{migration_name}", lambda: parent.has_built_index(migration_name))

    def has_execution_plan_snapshot(self, execution_plan_snapshot_id: str) -> bool:
        """Whether the snapshot's row exists (Dagster's reads and unpacks the whole snapshot to say so)."""
        return self._has_snapshot_id(execution_plan_snapshot_id)


class RememberedTables(_Remembered):
    """For an event log storage: ``has_table`` through ``_table_exists`` (default: Dagster's own answer), and
    the asset-key table's columns, which Dagster inspects (a catalog query) before every read of asset records
    to know whether the status cache and index columns were migrated in."""

    def has_table(self, table_name: str) -> bool:
        return self._remembered(table_name, lambda: self._table_exists(table_name))

    def has_secondary_index(self, name: str) -> bool:
        """A data migration marked complete (asked before every read of asset rows; SQLite's sharded event
        log queries it each time, PostgreSQL's remembers it as this does)."""
        parent = super()
        return self._remembered(f"index:{name}", lambda: parent.has_secondary_index(name))

    def disable_secondary_index(self, name: str) -> None:
        self._known().discard(f"index:{name}")
        super().disable_secondary_index(name)

    def has_asset_key_col(self, column_name: str) -> bool:
        parent = super()
        return self._remembered(f"asset_keys.{column_name}", lambda: parent.has_asset_key_col(column_name))

    def _has_asset_key_col_on_connection(self, conn, column_name: str) -> bool:
        parent = super()
        return self._remembered(f"asset_keys.{column_name}",
                                lambda: parent._has_asset_key_col_on_connection(conn, column_name))

    def _table_exists(self, table_name: str) -> bool:
        return super().has_table(table_name)


RECENT_PARTITION_S = 1.0  # how long a dynamic partition found to exist is taken to exist without asking again


class RecentPartitions:
    """For an event log storage: a dynamic partition found to exist is remembered for ``RECENT_PARTITION_S``.

    Dagster asks whether a run's round partition exists some 16 times per round x env run (validating the key,
    then for every step's input and output ranges, twice per range), each a query. A yes is remembered for a
    second; a no is always asked again. Deleting a partition through this storage forgets it at once; one
    deleted by another process may be taken to exist here for up to a second longer, as if this process had
    asked a second earlier (a run that started then would go on all the same).
    """

    def _recent(self) -> dict:
        """(partitions_def_name, partition_key) -> when it was last found to exist (monotonic seconds)."""
        return self.__dict__.setdefault("_recent_partitions", {})

    def has_dynamic_partition(self, partitions_def_name: str, partition_key: str) -> bool:
        seen = self._recent()
        key = (partitions_def_name, partition_key)
        now = time.monotonic()
        if key in seen and now - seen[key] < RECENT_PARTITION_S:
            return True
        found = super().has_dynamic_partition(partitions_def_name, partition_key)
        if found:
            if len(seen) > 4096:
                seen.clear()
            seen[key] = now
        else:
            seen.pop(key, None)
        return found

    def delete_dynamic_partition(self, partitions_def_name: str, partition_key: str) -> None:
        self._recent().pop((partitions_def_name, partition_key), None)
        super().delete_dynamic_partition(partitions_def_name, partition_key)

    def wipe(self) -> None:
        self._recent().clear()
        super().wipe()
