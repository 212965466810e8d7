"""The heavy test tier: real LLM training (torch in the tool venv) and a real llama.cpp server.

Collected only with ORBIT_TEST_LLM=1 (``make test-llm``, which builds the tool venvs first), so
``make test`` stays fast and needs no torch.
"""

import os

collect_ignore_glob = [] if os.environ.get("ORBIT_TEST_LLM") == "1" else ["test_*.py"]
