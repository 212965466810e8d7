"""The reasoning-gym env family: one reasoning-gym task per env, oracle teacher rows, answer-tag verifier.

``family`` (``FAMILY``), ``options`` (the env options and ``check``), ``library`` (reasoning-gym,
imported lazily, with its eval-ing scorers hardened), ``items`` (task specs, seeds, the dataset and
item caches), ``prompts``, ``answers`` (the final-answer format), ``guards`` (answers some scorers
must not see), ``grading``, ``teacher``, ``rollout`` and ``verifier``.
"""
