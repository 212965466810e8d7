"""Step stdout/stderr through Orbit's compute log manager (``orbit home`` writes it into ``dagster.yaml``): what a
process prints, what its C code writes to the descriptors and what its child processes print all land in the
files the UI reads and on the console, in order, with no helper process started."""

import os
import subprocess
import sys
from pathlib import Path

import dagster as dg
import pytest


ROOT = Path(__file__).resolve().parents[2]

pytestmark = pytest.mark.timeout(300)

# run in a child process: pytest's own capture replaces sys.stdout with an object without a descriptor
CHILD = r'''
import json, os, subprocess, sys, time
import dagster as dg

@dg.op
def talk() -> int:
    print("python print", flush=True)
    os.write(1, b"fd one\n")
    os.write(2, b"fd two\n")
    subprocess.run(["sh", "-c", "echo child out; echo child err >&2"], check=True)
    print("x" * 200000, flush=True)  # more than one chunk of the mirror
    print("last line", flush=True)
    return 1

@dg.job
def talk_job():
    talk()

with dg.DagsterInstance.get() as instance:
    result = talk_job.execute_in_process(instance=instance)
    manager = instance.compute_log_manager
    (event,) = instance.all_logs(result.run_id, of_type=dg.DagsterEventType.LOGS_CAPTURED)
    key = manager.build_log_key_for_run(result.run_id, event.dagster_event.logs_captured_data.file_key)
    data = manager.get_log_data(key)
    print(json.dumps({"ok": result.success, "kind": type(manager).__name__, "complete": manager.is_capture_complete(key),
                      "out": data.stdout.decode(), "err": data.stderr.decode()}), file=sys.__stderr__, flush=True)
'''


def test_everything_a_step_prints_reaches_the_files_and_the_console(home):
    import json

    proc = subprocess.run([sys.executable, "-c", CHILD], cwd=ROOT, env={**os.environ}, capture_output=True,
                          text=True, timeout=240)
    assert proc.returncode == 0, proc.stderr[-3000:]
    report = json.loads(proc.stderr.strip().splitlines()[-1])
    assert report["ok"] and report["kind"] == "OrbitComputeLogManager" and report["complete"]
    # the files the UI shows: every writer, in the order written
    out, err = report["out"], report["err"]
    lines = out.splitlines()
    assert lines[:3] == ["python print", "fd one", "child out"] and lines[-1] == "last line", lines[:4]
    assert "x" * 200000 in out
    assert "fd two" in err and "child err" in err
    # the console: the same bytes, mirrored while the run went on
    assert out in proc.stdout
    assert "fd two\n" in proc.stderr and "child err\n" in proc.stderr


def test_a_stream_without_a_descriptor_is_left_alone(tmp_path):
    """Under a test runner's captured output (no descriptor) the mirror redirects nothing, as Dagster's does."""
    import io

    from resources.compute_logs import mirror_to_file

    stream = io.StringIO()
    with mirror_to_file(stream, str(tmp_path / "x.out")):
        stream.write("kept in the stream")
    assert stream.getvalue() == "kept in the stream"
    assert (tmp_path / "x.out").read_text() == ""


def test_no_helper_process_is_started(home, tmp_path):
    """Dagster's mirror starts `tail -F` and a Python watcher per stream; Orbit's starts none."""
    code = r'''
import os, subprocess, sys
from resources.compute_logs import mirror_to_file
spawned = []
real = subprocess.Popen.__init__
def spy(self, *a, **k):
    spawned.append(a[0] if a else k.get("args"))
    return real(self, *a, **k)
subprocess.Popen.__init__ = spy
with mirror_to_file(sys.stdout, sys.argv[1]):
    print("hello", flush=True)
print("spawned", len(spawned), flush=True)
'''
    path = tmp_path / "m.out"
    proc = subprocess.run([sys.executable, "-c", code, str(path)], cwd=ROOT, capture_output=True, text=True,
                          timeout=120, check=True)
    assert proc.stdout.splitlines() == ["hello", "spawned 0"]
    assert path.read_text() == "hello\n"
