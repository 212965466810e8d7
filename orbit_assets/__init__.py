"""The Orbit Dagster code location (``orbit_assets.definitions``)."""

import warnings

import dagster as dg

# Multi-to-single partition mappings and partitioned asset checks are marked beta/preview in
# dagster 1.13; Orbit pins the version, so the notices only add noise to every command.
warnings.filterwarnings("ignore", category=dg.BetaWarning)
warnings.filterwarnings("ignore", category=dg.PreviewWarning)
