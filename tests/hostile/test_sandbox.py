"""Hostile generated code against the sandbox (``orbit.compute.sandbox``) and the code verifier.

Each class of the issue's bad input is contained: the run ends, the record fails with its reason,
nothing runs afterwards, nothing is written outside the sandbox's temp dir, no connection leaves it.
Most classes are shown twice: through the code verifier with the audit guard on (the named reason), and
on the bare sandbox with the guard off, where the namespaces and rlimits alone must hold.
"""

import os
import socket
import threading
import time
import uuid

import pyarrow as pa
import pytest

from orbit.compute.sandbox import UID_RANGE, Limits, sandbox
from orbit.envs import EnvSpec, GenerationRequest, env_spec
from orbit.envs.code.family import FAMILY
from orbit.envs.code.tasks import teacher_completion
from orbit.io.schema import RECORD_SCHEMA
from orbit.stages.verify import VerifyCounts, verify_batch

pytestmark = pytest.mark.timeout(300)

RUN = "exec(compile(PAYLOAD, 'candidate.py', 'exec'), {'__name__': '__main__'})"
SPEC = EnvSpec(name="code_sample", family="code", description="", options={"timeout": 5, "output_kb": 256,
                                                                                "memory_mb": 256})


def _status(pid: str) -> tuple[int, int] | None:
    """(uid, parent pid) of a process, or None when it is gone."""
    try:
        with open(f"/proc/{pid}/status") as fh:
            fields = dict(line.split(":", 1) for line in fh if ":" in line)
        return int(fields["Uid"].split()[0]), int(fields["PPid"].split()[0])
    except (OSError, KeyError, ValueError, IndexError):
        return None


def _another_workers(pid: int) -> bool:
    """Whether ``pid`` descends from a sibling of this test process: under pytest-xdist, another worker,
    whose test is making that run at this moment."""
    me, parent = os.getpid(), os.getppid()
    seen = set()
    while pid > 1 and pid not in seen:
        seen.add(pid)
        status = _status(str(pid))
        if status is None:
            return False
        if status[1] == parent and pid != me:
            return True
        pid = status[1]
    return False


def sandbox_processes(uid: int | None = None) -> list[int]:
    """Processes running as a sandbox uid (every run gets its own in UID_RANGE), or as ``uid``.

    A run that another xdist worker's test is making at this moment is not this test's: processes under
    another worker are left out; an escaped process (parent: init) is counted whoever made it.
    """
    found = []
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            status = _status(entry)
            if status is None:
                continue
            owner = status[0]
            if (owner == uid if uid is not None else UID_RANGE[0] <= owner < UID_RANGE[1]) \
                    and not _another_workers(int(entry)):
                found.append(int(entry))
    return found


@pytest.fixture(autouse=True)
def nothing_left_running():
    yield
    assert sandbox_processes() == []


def raw(code: str, guard: bool = False, **limits):
    options = {"wall_seconds": 20.0, "cpu_seconds": 10, **limits}  # generous: a loaded host must not time them out
    return sandbox().run_python(RUN, code, Limits(guard=guard, **options))


@pytest.fixture(scope="module")
def gcd_row():
    spec = env_spec("code_sample")
    request = GenerationRequest(env=spec, round_key="r0009", num_tasks=31, samples_per_task=1, workers=1)
    rows = pa.Table.from_batches(list(FAMILY.generate(request)), schema=RECORD_SCHEMA).to_pylist()
    return next(r for r in rows if r["task_id"] == "gcd")


@pytest.fixture(scope="module")
def verifier():
    return FAMILY.verifier(SPEC)


def verdict(verifier, row, code):
    messages = [dict(m) for m in row["messages"]]
    messages[-1]["content"] = teacher_completion(code)
    return verifier.verify({**row, "messages": messages, "record_id": uuid.uuid4().hex})


GCD = "def gcd(a, b):\n    a, b = abs(a), abs(b)\n    while b:\n        a, b = b, a % b\n    return a\n"

# class -> (candidate code, the verifier's reason with the guard on)
HOSTILE = {
    "loops_forever": ("while True:\n    pass\n", "code.timeout"),
    "loops_forever_in_the_function": ("def gcd(a, b):\n    while True:\n        pass\n", "code.timeout"),
    "sleeps_forever": ("import time\ntime.sleep(3600)\n", "code.timeout"),
    "forks_without_end": ("import os\nwhile True:\n    os.fork()\n", "code.forbidden:os.fork"),
    "spawns_a_process": ("import subprocess\nsubprocess.run(['sleep', '100'])\n", "code.forbidden:import _posixsubprocess"),
    "allocates_until_killed": ("x = []\nwhile True:\n    x.append(bytearray(1 << 24))\n", "code.memory"),
    "writes_a_huge_file": ("with open('/tmp/big', 'wb') as fh:\n    while True:\n        fh.write(b'0' * (1 << 20))\n",
                           "code.crash:OSError"),
    "floods_stdout": ("while True:\n    print('flood' * 100)\n", "code.output_limit"),
    "floods_stderr": ("import sys\nwhile True:\n    sys.stderr.write('e' * 4096)\n", "code.output_limit"),
    "deletes_files_elsewhere": ("import os\nos.remove('/root/.bashrc')\n", "code.forbidden:os.remove"),
    "writes_files_elsewhere": ("open('/usr/owned', 'w').write('x')\n", "code.forbidden:open"),
    "connects_to_localhost": ("import socket\nsocket.create_connection(('127.0.0.1', 22))\n",
                              "code.forbidden:socket.getaddrinfo"),
    "kills_its_parent": ("import os, signal\nos.kill(os.getppid(), signal.SIGKILL)\n", "code.forbidden:os.kill"),
    "kills_its_process_group": ("import os, signal\nos.killpg(0, signal.SIGKILL)\n", "code.forbidden:os.killpg"),
    "loads_ctypes": ("import ctypes\n", "code.forbidden:import ctypes"),
    "exits_early": ("import sys\nsys.exit(0)\n", "code.crash:SystemExit"),
    "exits_0_without_tests": ("import os\nos._exit(0)\n", "code.tests_failed:0/6"),
    "returns_an_object_equal_to_anything": (
        "class Anything:\n    def __eq__(self, other):\n        return True\n\ndef gcd(a, b):\n    return Anything()\n",
        "code.tests_failed:0/6"),
    "prints_the_expected_output": ("def gcd(a, b):\n    print(6)\n    return 6\n", "code.tests_failed:0/6"),
}


@pytest.mark.parametrize("name", list(HOSTILE))
def test_the_verifier_fails_each_hostile_class_with_its_reason(verifier, gcd_row, name):
    code, reason = HOSTILE[name]
    got = verdict(verifier, gcd_row, code)
    assert got.score == 0.0 and got.reasons == (reason,)


def test_a_partition_of_hostile_records_finishes_and_the_good_ones_pass(verifier, gcd_row):
    rows, expected = [], {}
    for i, (name, (code, reason)) in enumerate(HOSTILE.items()):
        messages = [dict(m) for m in gcd_row["messages"]]
        messages[-1]["content"] = teacher_completion(code)
        rows.append({**gcd_row, "record_id": name, "messages": messages})
        expected[name] = [reason]
        if i % 4 == 0:
            good = f"good_{i}"
            good_messages = messages[:-1] + [{**messages[-1], "content": teacher_completion(GCD + f"# {i}\n")}]
            rows.append({**gcd_row, "record_id": good, "messages": good_messages})
            expected[good] = []
    counts = VerifyCounts()
    out = verify_batch(pa.RecordBatch.from_pylist(rows, schema=RECORD_SCHEMA), verifier, 1.0, counts).to_pylist()
    assert {r["record_id"]: r["reasons"] for r in out} == expected
    assert counts.passed == sum(1 for k in expected if k.startswith("good_"))


def test_batched_runs_contain_too(verifier, gcd_row):
    codes = [HOSTILE["loops_forever"][0], GCD, HOSTILE["forks_without_end"][0], GCD + "\n# twice\n",
             HOSTILE["allocates_until_killed"][0]]
    rows = []
    for code in codes:
        messages = [dict(m) for m in gcd_row["messages"]]
        messages[-1]["content"] = teacher_completion(code)
        rows.append({**gcd_row, "messages": messages})
    got = [v.reasons for v in verifier.verify_many(rows)]
    assert got == [("code.timeout",), (), ("code.forbidden:os.fork",), (), ("code.memory",)]


# ---- the bare sandbox, audit guard off: the namespaces and rlimits hold alone ----------------------

def test_unguarded_fork_bomb_is_held_by_nproc_and_the_pid_namespace():
    code = ("import os, sys, time\nn = 0\ntry:\n    while True:\n        os.fork()\n        n += 1\n"
            "except OSError as exc:\n    print('refused', type(exc).__name__, flush=True)\ntime.sleep(60)\n")
    run = raw(code, processes=16, wall_seconds=3.0)
    assert run.status == "timeout" and run.killed
    assert b"refused BlockingIOError" in run.output


def test_unguarded_daemon_does_not_outlive_the_run():
    code = ("import os, sys, time\nprint(os.getuid(), flush=True)\nif os.fork() == 0:\n    os.setsid()\n"
            "    if os.fork() == 0:\n        time.sleep(120)\n    os._exit(0)\nos.wait()\n")
    run = raw(code)
    assert run.status == "exited" and run.returncode == 0 and not run.killed
    uid = int(run.output.split()[0])
    assert UID_RANGE[0] <= uid < UID_RANGE[1]
    # the run has returned: its pid namespace's init is gone, so the kernel kills the daemon. The kill may still
    # be under way as the run returns (a loaded host: the process is in /proc for some ms); an escaped daemon
    # would sleep on for two minutes, so a few seconds tell the two apart
    deadline = time.monotonic() + 10
    while sandbox_processes(uid) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert sandbox_processes(uid) == []


def test_unguarded_kill_of_parent_group_and_everyone_stays_inside():
    code = ("import os, signal\nfor target in (lambda: os.kill(os.getppid(), 9), lambda: os.kill(1, 9),\n"
            "               lambda: os.kill(-1, 9), lambda: os.killpg(0, 9)):\n"
            "    try:\n        target()\n    except OSError as exc:\n        print(type(exc).__name__, flush=True)\n")
    run = raw(code)
    assert run.status in ("signaled", "exited")  # it may well have killed itself
    assert os.getpgrp() and os.getppid()  # and we are here


def test_unguarded_network_reaches_nothing():
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen(5)
    server.settimeout(0.2)
    port = server.getsockname()[1]
    accepted = []

    def accept():
        for _ in range(20):
            try:
                conn, _ = server.accept()
                accepted.append(conn)
            except OSError:
                pass

    thread = threading.Thread(target=accept)
    thread.start()
    code = (f"import socket\nfor host in ('127.0.0.1', 'localhost', '10.0.2.2'):\n    try:\n"
            f"        socket.create_connection((host, {port}), timeout=1).sendall(b'hi')\n        print('CONNECTED', host)\n"
            f"    except OSError as exc:\n        print(host, type(exc).__name__, flush=True)\n")
    run = raw(code)
    thread.join()
    server.close()
    assert accepted == []
    assert b"CONNECTED" not in run.output and b"127.0.0.1 ConnectionRefusedError" in run.output


def test_unguarded_writes_and_deletes_elsewhere_change_nothing(tmp_path):
    lake = tmp_path / "lake" / "raw_samples"
    lake.mkdir(parents=True)
    canary = lake / "part-0.parquet"
    canary.write_text("data")
    host_tmp = f"/tmp/orbit-sandbox-escape-{uuid.uuid4().hex}"
    targets = [str(canary), str(tmp_path / "new-file"), "/root/.bashrc", "/usr/lib/os-release", host_tmp,
               os.path.expanduser("~/orbit-escape")]
    code = (f"import os, shutil\nfor path in {targets!r}:\n"
            "    for act in (lambda: os.remove(path), lambda: open(path, 'w').write('owned'),\n"
            "                lambda: shutil.rmtree(os.path.dirname(path))):\n"
            "        try:\n            act()\n            print('DID', path, flush=True)\n"
            "        except OSError as exc:\n            print('refused', path, type(exc).__name__, flush=True)\n")
    run = raw(code)
    assert run.status == "exited"
    assert canary.read_text() == "data"
    assert not (tmp_path / "new-file").exists() and not os.path.exists(host_tmp)
    assert not os.path.exists(os.path.expanduser("~/orbit-escape"))
    # only the sandbox's own /tmp took the write to host_tmp's name (a private tmpfs, gone now)
    assert b"DID " + host_tmp.encode() in run.output
    assert b"DID " + str(canary).encode() not in run.output


def test_unguarded_huge_file_hits_the_file_size_limit():
    code = ("import os\nn = 0\ntry:\n    with open('/tmp/big', 'wb') as fh:\n        while True:\n"
            "            fh.write(b'0' * (1 << 20))\n            fh.flush()\n            n += 1\n"
            "except OSError as exc:\n    print('stopped', n, exc.errno, flush=True)\n")
    run = raw(code, file_mb=4)
    assert run.status == "exited" and b"stopped" in run.output
    assert int(run.output.split()[1]) <= 4


def test_secrets_are_not_there(tmp_path, monkeypatch, verifier, gcd_row):
    secret = f"sk-secret-{uuid.uuid4().hex}"
    monkeypatch.setenv("OPENAI_API_KEY", secret)
    monkeypatch.setenv("ORBIT_SECRET_TOKEN", secret)
    home = tmp_path / "home"
    home.mkdir()
    (home / ".netrc").write_text(f"machine x password {secret}\n")
    monkeypatch.setenv("HOME", str(home))
    paths = [str(home / ".netrc"), "/proc/1/environ", f"/proc/{os.getpid()}/environ", "/etc/shadow", "/root/.gitconfig"]
    code = (f"import os, json\nseen = dict(os.environ)\nfor path in {paths!r}:\n    try:\n"
            "        seen[path] = open(path, 'rb').read().decode('latin-1')\n    except OSError as exc:\n"
            "        seen[path] = type(exc).__name__\nprint(json.dumps(seen))\n")
    for guard in (False, True):
        run = raw(code, guard=guard)
        assert run.status == "exited" and run.booted
        assert secret.encode() not in run.output + run.results
        assert b"ORBIT_" not in run.output and b"OPENAI" not in run.output
    leak = "import os\ndef gcd(a, b):\n    return os.environ.get('OPENAI_API_KEY', 'none')\n"
    assert verdict(verifier, gcd_row, leak).reasons == ("code.tests_failed:0/6",)


def test_the_run_is_unprivileged_and_alone():
    code = ("import os\nst = open('/proc/self/status').read()\n"
            "print([l for l in st.splitlines() if l.startswith(('Uid', 'CapEff', 'CapPrm', 'NoNewPrivs'))])\n"
            "print(sorted(p for p in os.listdir('/proc') if p.isdigit()))\nprint(sorted(os.listdir('/')))\n"
            "import socket\nprint(socket.if_nameindex())\n")
    run = raw(code)
    text = run.output.decode()
    assert "CapEff:\\t0000000000000000" in text and "CapPrm:\\t0000000000000000" in text
    assert "NoNewPrivs:\\t1" in text and "Uid:\\t0" not in text
    assert "['1', '2']" in text  # bwrap's init and the run: no host process is visible
    assert "'work'" not in text and "'home'" not in text
    assert "[(1, 'lo')]" in text  # a loopback of its own, no other interface
