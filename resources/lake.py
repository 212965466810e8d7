"""The lake as Dagster sees it: an IO manager writing Parquet partitions atomically.

Outputs may be an Arrow table or an ``orbit.io.lake.ArrowStream`` (streamed row
group by row group; its summary becomes output metadata once written). Inputs
are loaded as the ``Path`` of the upstream partition file: readers stream it or
query it with DuckDB instead of holding it in memory.
"""

from pathlib import Path

import dagster as dg
import pyarrow as pa

from orbit.io import lake
from orbit.io.lakefs import lake_path, lake_root
from orbit.io.keys import validate_env, validate_round


def _partition_parts(context) -> tuple[str | None, str | None]:
    if not context.has_asset_partitions:
        return None, None
    key = context.asset_partition_key
    if isinstance(key, dg.MultiPartitionKey):
        dims = key.keys_by_dimension
        return validate_round(dims["round"]), validate_env(dims["env"])
    return validate_round(key), None


class LakeIOManager(dg.ConfigurableIOManager):
    """Parquet under ``root``: ``<asset>/<round>/<env>/part-0.parquet``. ``root`` is a folder or an object-store
    prefix (``s3://bucket/prefix``): there a partition is written to a local temporary file and uploaded in one
    put, and inputs are ``S3Path``s the stages stream through pyarrow (see ``orbit.io.lakefs``)."""

    root: str = str(lake_root())

    def path_for(self, asset: str, round_key: str | None = None, env: str | None = None) -> Path:
        return lake.partition_file(self.root, asset, round_key, env)

    def handle_output(self, context: dg.OutputContext, obj) -> None:
        if obj is None:
            return
        round_key, env = _partition_parts(context)
        path = self.path_for(context.asset_key.path[-1], round_key, env)
        if isinstance(obj, lake.ArrowStream):
            lake.write_batches(obj, obj.schema, path)
            rows, extra = obj.rows, obj.summary()
        elif isinstance(obj, pa.Table):
            lake.write_table(obj, path)
            rows, extra = obj.num_rows, {}
        else:
            raise TypeError(f"the lake stores Arrow tables or ArrowStreams, not {type(obj).__name__}")
        context.add_output_metadata({"path": dg.MetadataValue.path(str(path)), "dagster/row_count": rows, **extra})
        if round_key is not None:
            self._stamp(context, round_key)

    def _stamp(self, context: dg.OutputContext, round_key: str) -> None:
        """The run's orbit/round and orbit/policy tags, for runs launched from the UI or by the automation."""
        from orbit_assets.rounds import stamp_run_tags

        try:
            step = context.step_context
        except Exception:  # an output context built outside a run (no step): no run to tag
            return
        stamp_run_tags(step.instance, context.run_id, round_key, lake_path(self.root), step.dagster_run)

    def load_input(self, context: dg.InputContext) -> Path:
        round_key, env = _partition_parts(context)
        path = self.path_for(context.upstream_output.asset_key.path[-1], round_key, env)
        if not path.exists():
            raise FileNotFoundError(f"upstream partition file {path} does not exist; materialize it first")
        return path
