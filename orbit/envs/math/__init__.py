"""The math family: problems with a gold answer, graded by math-verify in killable worker processes.

``taskfile`` (JSONL task files, read and checked line by line), ``sample`` (the generated sample set
behind the built-in env ``math_sample``), ``tasks`` (the env's tasks, a partition's pick, prompts),
``answers`` (the final ``\\boxed{}`` or ``<answer>`` of a reply), ``grading`` (what a worker runs:
``verify(parse(gold), parse(answer))``), ``verifier`` and ``family`` (``FAMILY``).
math-verify and sympy are imported in the workers only, never by importing this package.
"""
