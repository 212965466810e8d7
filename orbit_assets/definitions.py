"""The Orbit code location: the round DAG as Dagster software-defined assets."""

import dagster as dg

from orbit_assets import checks
from orbit_assets.export import dpo_export, grpo_export, sft_export, training_set
from orbit_assets.filter import filtered_dataset
from orbit_assets.generate import cfr_policies, raw_samples
from orbit_assets.report import yield_report
from orbit_assets.verify import verified_samples
from orbit_assets.yields import yield_metrics
from resources import resources_for
from sensors import SENSORS

ROUND_ASSETS = [raw_samples, verified_samples, filtered_dataset, yield_metrics]
EXPORT_ASSETS = [sft_export, dpo_export, grpo_export, training_set]

round_job = dg.define_asset_job(
    "round_job",
    selection=dg.AssetSelection.assets(*ROUND_ASSETS),
    description="One round x env partition: generate -> verify -> filter -> measure.",
)
report_job = dg.define_asset_job(
    "report_job",
    selection=dg.AssetSelection.assets(yield_report),
    description="Rebuild the DuckDB report over every partition in the lake.",
)
cfr_job = dg.define_asset_job("cfr_job", selection=dg.AssetSelection.assets(cfr_policies))
export_job = dg.define_asset_job(
    "export_job",
    selection=dg.AssetSelection.assets(*EXPORT_ASSETS),
    description="One round's training sets (all envs): SFT, DPO, GRPO and the cumulative set.",
)



def build_defs(resources: dict | None = None) -> dg.Definitions:
    """The code location with the given resources (the deployment's defaults when None)."""
    return dg.Definitions(
        assets=[cfr_policies, *ROUND_ASSETS, yield_report, *EXPORT_ASSETS],
        asset_checks=dg.load_asset_checks_from_modules([checks]),
        jobs=[round_job, report_job, cfr_job, export_job],
        sensors=SENSORS,
        resources=resources if resources is not None else resources_for(),
    )


defs = build_defs()
