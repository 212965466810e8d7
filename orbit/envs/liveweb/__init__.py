"""LiveWeb: multi-site browsing tasks answered with tool calls over a cached web.

Plain Python (no Dagster). Modules, bottom up: ``cache`` (page-cache layout, URL
normalisation, validated reads), ``demo_sites`` (the seeded demo cache),
``plugins`` (per-site facts and answer checking), ``templates`` (questions, routes,
ground truth), ``tasks`` (composite tasks from a seed), ``tools`` (OpenAI tool
schemas), ``environment`` (executes tool calls against the cache), ``teacher``
(scripted trajectories), ``verifier`` (replay and grading) and ``family`` (the
``EnvFamily`` registered as ``liveweb``).
"""
