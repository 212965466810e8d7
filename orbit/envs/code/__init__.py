"""The code family: programming tasks with unit tests, graded by running them in the sandbox.

``tasks`` (the env's tasks from a JSONL file or the shipped sample set ``data/code_sample.jsonl``, a
partition's pick, prompts), ``extract`` (the one fenced code block of a reply), ``harness_program``
(what runs inside the sandbox: never imported), ``verifier`` (the sandboxed run and its verdict) and
``family`` (``FAMILY``). The sandbox itself is ``orbit.compute.sandbox``.
"""
