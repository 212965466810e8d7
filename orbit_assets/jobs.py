"""The jobs of the code location (asset selections; partitioning comes from the assets)."""

import dagster as dg

from orbit_assets.export import dpo_export, grpo_export, sft_export, training_set
from orbit_assets.filter import filtered_dataset
from orbit_assets.flywheel import flywheel_report, policy_checkpoint, verifier_noise_study
from orbit_assets.generate import cfr_policies, raw_samples
from orbit_assets.key_checks import invalid_round_key
from orbit_assets.report import round_yields, yield_report
from orbit_assets.verify import verified_samples
from orbit_assets.yields import yield_metrics

ROUND_ASSETS = [raw_samples, verified_samples, filtered_dataset, yield_metrics]
EXPORT_ASSETS = [sft_export, dpo_export, grpo_export, training_set]
ROUND_REPORT_ASSETS = [round_yields]  # per round, all envs: headless runs materialize it with the exports
REPORT_ASSETS = [yield_report, flywheel_report]

round_job = dg.define_asset_job(
    "round_job", selection=dg.AssetSelection.assets(*ROUND_ASSETS),
    description="One round x env partition: generate -> verify -> filter -> measure.",
)
export_job = dg.define_asset_job(
    "export_job", selection=dg.AssetSelection.assets(*EXPORT_ASSETS, *ROUND_REPORT_ASSETS),
    description="One round's training sets (all envs): SFT, DPO, GRPO and the cumulative set; and the round's "
    "yields (round_yields: p per env, plotted across rounds).",
)
train_job = dg.define_asset_job(
    "train_job", selection=dg.AssetSelection.assets(policy_checkpoint),
    description="Train the embedded policy on the cumulative training set of a round; writes the next checkpoint.",
)
report_job = dg.define_asset_job(
    "report_job", selection=dg.AssetSelection.assets(*REPORT_ASSETS),
    description="Rebuild the DuckDB report and the flywheel report over every partition in the lake.",
)
cfr_job = dg.define_asset_job("cfr_job", selection=dg.AssetSelection.assets(cfr_policies))
noise_study_job = dg.define_asset_job(
    "noise_study_job", selection=dg.AssetSelection.assets(verifier_noise_study),
    description="Run the flywheel at several verifier noise levels from the same start and report g for each.",
)

ALL_ASSETS = [cfr_policies, *ROUND_ASSETS, *EXPORT_ASSETS, *ROUND_REPORT_ASSETS, policy_checkpoint, *REPORT_ASSETS,
              verifier_noise_study]
JOBS = [round_job, export_job, train_job, report_job, cfr_job, noise_study_job, invalid_round_key]
