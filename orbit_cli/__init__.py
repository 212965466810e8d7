"""The ``orbit`` command, above both layers: ``main`` is the entry point and runs the query
subcommands on the engine alone (no Dagster import); ``commands`` holds the subcommands that drive
Dagster through the code location. The engine (``orbit``) never imports this package."""
