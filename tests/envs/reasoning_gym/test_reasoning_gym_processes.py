"""Rows generated in one process verify in another (another hash seed, nothing cached): the items
regenerate from their specs alone."""

import json
import os
import subprocess
import sys
from pathlib import Path

from orbit.envs.base import EnvSpec

from rg_env import generate, leg_spec

CHILD = """
import json, sys
from orbit.envs.base import EnvSpec
from orbit.envs.reasoning_gym.family import FAMILY
from orbit.stages.verify import verify_record
out = []
for spec, rows in json.load(open(sys.argv[1])):
    verifier = FAMILY.verifier(EnvSpec(**spec))
    out.append([verify_record(row, verifier, 1.0) for row in rows])
print(json.dumps(out))
"""


def test_another_process_verifies_what_this_one_generated(tmp_path: Path):
    specs = [leg_spec(12), EnvSpec(name="chain_sum", family="reasoning_gym", description="",
                                   options={"task": "chain_sum", "config": {"max_terms": 4}}, num_tasks=12)]
    work = [({"name": s.name, "family": s.family, "description": s.description, "options": dict(s.options),
              "num_tasks": s.num_tasks}, generate(s, round_key="r0042")) for s in specs]
    path = tmp_path / "records.json"
    path.write_text(json.dumps(work))
    mine = os.environ.get("PYTHONHASHSEED", "")
    env = {**os.environ, "PYTHONHASHSEED": "7919" if mine != "7919" else "7920"}  # a hash seed not this process's
    done = subprocess.run([sys.executable, "-c", CHILD, str(path)], capture_output=True, text=True, env=env,
                          timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    verdicts = json.loads(done.stdout.strip().splitlines()[-1])
    assert verdicts == [[[1.0, True, []]] * 12] * 2
