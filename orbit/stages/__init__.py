"""The round's stages, in order: ``generate`` (sampling, best-of-N), ``verify``, ``filter``, ``yields``, ``export``.

Each stage reads and writes Arrow through ``orbit.io`` and asks the env families (``orbit.envs``) to
generate and verify; the Dagster code location wraps one module each (the engine never imports it).
"""
