"""A run's planned events stored as one batch instead of one by one.

When a run is created Dagster writes one ``ASSET_MATERIALIZATION_PLANNED`` event per asset and one
``ASSET_CHECK_EVALUATION_PLANNED`` per check, and hands them to the event log as a single batch. Dagster's
storages batch only materializations and observations, so a round x env run's seven planned events were seven
separate writes, each with its own connection, commit and index updates (about 22 ms a run here, on SQLite and
PostgreSQL alike).

``PlannedEventBatches`` stores such a batch with one insert into the run's events and one transaction for the
cross-run index rows (the asset-key rows and tags, as ``store_event`` writes them); the checks' execution rows
are then written by Dagster's own ``store_asset_check_event``. Any other batch goes to the storage's own
``store_event_batch``. Mixed into Orbit's event log storages (``resources.sqlite_storage``,
``resources.pg_storage``) before the Dagster class, which provides the inserts (``_insert_run_rows``,
``_insert_index_rows``).
"""

from typing import Sequence

from dagster._core.events import ASSET_CHECK_EVENTS, ASSET_EVENTS, DagsterEventType

PLANNED = frozenset({DagsterEventType.ASSET_MATERIALIZATION_PLANNED, DagsterEventType.ASSET_CHECK_EVALUATION_PLANNED})


def planned_only(events: Sequence) -> bool:
    """Whether ``events`` are all planned events of one run (what a run's creation writes)."""
    return (len(events) > 1 and len({e.run_id for e in events}) == 1
            and all(e.is_dagster_event and e.dagster_event_type in PLANNED for e in events))


class PlannedEventBatches:
    def store_event_batch(self, events) -> None:
        if not planned_only(events):
            return super().store_event_batch(events)
        rows = [self._event_to_row(e) for e in events]
        checks = []
        self._insert_run_rows(rows)
        with self.index_transaction() as conn:
            ids = self._insert_index_rows(conn, rows)
            for event, event_id in zip(events, ids, strict=True):
                if event.dagster_event_type in ASSET_EVENTS and event.dagster_event.asset_key:
                    self._store_asset_event_tags(conn, [event], [event_id])
                    self._store_asset_event(conn, event, event_id)
                elif event.dagster_event_type in ASSET_CHECK_EVENTS:
                    checks.append((event, event_id))
        for event, event_id in checks:
            self.store_asset_check_event(event, event_id)

    def _insert_run_rows(self, rows: list[dict]) -> None:
        """Insert the events' rows where the storage keeps the run's events, if that is not the index."""

    def _insert_index_rows(self, conn, rows: list[dict]) -> list[int]:
        """Insert the events' rows into the cross-run index (``conn``, an open transaction on it); their ids
        there, in order."""
        raise NotImplementedError
