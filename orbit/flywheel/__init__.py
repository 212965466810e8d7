"""Round over round: the round registry (``rounds``), checkpoints, the odds-growth fit (``growth``),
the flywheel report and the noise study. Uses the stages; the stages never import it."""
