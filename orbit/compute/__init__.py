"""Where a stage's chunks run: one long-lived local worker pool per process (``workers``), or Ray tasks
on a cluster when ``ORBIT_RAY_ADDRESS`` names one (``ray_backend``).

Below the stages and the env families, which hand it work; it imports no other ``orbit`` package
(the modules its workers preload are named as strings).
"""
