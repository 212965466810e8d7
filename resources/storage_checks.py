"""Answers Dagster's storages look up again and again that cannot change back, remembered once they are yes.

Every run asks its instance's storages whether a migration was applied (a column, an index, a table) before
the queries that depend on it, and whether the run's execution plan snapshot is stored. Dagster answers the
first by inspecting the database (the SQLite and PostgreSQL has-table checks open a connection each time) and
the second by reading and deserializing the whole snapshot. Migrations only add, so a yes stays a yes for the
life of the process and is remembered; a no is asked again (a migration may run meanwhile). A snapshot is
looked up by its id, a hash of its content.

Mixed into Orbit's storage classes (``resources.sqlite_storage``, ``resources.pg_storage``) before the Dagster
class they extend.
"""


class RememberedRunChecks:
    """For a ``SqlRunStorage`` subclass."""

    def _remembered(self, name: str, ask) -> bool:
        applied = self.__dict__.setdefault("_applied", set())
        if name in applied:
            return True
        yes = bool(ask())
        if yes:
            applied.add(name)
        return yes

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


class RememberedTables:
    """For an event log storage: ``has_table`` through ``_table_exists`` (default: Dagster's own answer)."""

    def has_table(self, table_name: str) -> bool:
        tables = self.__dict__.setdefault("_tables", set())
        if table_name in tables:
            return True
        found = bool(self._table_exists(table_name))
        if found:
            tables.add(table_name)
        return found

    def _table_exists(self, table_name: str) -> bool:
        return super().has_table(table_name)
