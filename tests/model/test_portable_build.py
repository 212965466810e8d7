"""The llama.cpp build behind the model tier is portable: no AMX tile instruction, no AVX-512, no -march=native.

A native build on a CPU with AMX (Sapphire Rapids and later) executes ``ldtilecfg`` and the server dies
with a general protection fault on its first completion there, and on any CPU its wheel is copied to.
The Makefile builds with ``GGML_NATIVE=OFF`` and an explicit target (AVX2 or plain x86-64) and keeps the
wheel under a key of the pin and those flags; this checks the installed library itself, so it holds
on any machine, whatever its own CPU has.
"""

import os
import re
import shutil
import subprocess
from pathlib import Path

import pytest

AMX = re.compile(r"\b(ldtilecfg|sttilecfg|tileloadd|tileloaddt1|tilestored|tilerelease|tilezero|tdpb[a-z]*|tdpfp16ps)\b")
ZMM = re.compile(r"%zmm\d+")


def _llama_lib_dir() -> Path:
    python = Path(os.environ.get("ORBIT_LLAMA_PYTHON") or "")
    if not python.exists():
        pytest.fail("ORBIT_LLAMA_PYTHON does not point at the llama.cpp tool venv's Python")
    out = subprocess.run([str(python), "-c", "import llama_cpp, pathlib; print(pathlib.Path(llama_cpp.__file__).parent / 'lib')"],
                         capture_output=True, text=True, check=True).stdout.strip()
    return Path(out)


def test_the_cpu_library_holds_no_amx_or_avx512_instruction():
    objdump = shutil.which("objdump")
    assert objdump, "objdump (binutils) is needed to read the built library"
    libs = sorted(_llama_lib_dir().glob("libggml-cpu*.so*"))
    libs = [p for p in libs if not p.is_symlink()]
    assert libs, "no libggml-cpu in the llama.cpp tool venv"
    for lib in libs:
        text = subprocess.run([objdump, "-d", "--no-show-raw-insn", str(lib)], capture_output=True, text=True,
                              check=True).stdout
        assert len(text) > 100_000, f"{lib}: objdump printed almost nothing"
        amx = sorted(set(AMX.findall(text)))
        assert not amx, f"{lib} holds AMX tile instructions {amx}: it crashes on CPUs with AMX and was not built portable"
        zmm = len(ZMM.findall(text))
        assert not zmm, f"{lib} uses AVX-512 registers ({zmm} times): not the portable target"


def test_the_installed_wheel_is_the_keyed_portable_build():
    venv = Path(os.environ["ORBIT_LLAMA_PYTHON"]).parent.parent
    marker = venv / ".wheel"
    assert marker.exists(), f"{venv} was not installed from a keyed portable wheel (no {marker.name})"
    wheels = Path(marker.read_text().strip())
    flags = (wheels / "CMAKE_ARGS").read_text().split()
    assert "-DGGML_NATIVE=OFF" in flags and "-DGGML_AMX_TILE=OFF" in flags and "-DGGML_AVX512=OFF" in flags, flags
    assert any(wheels.glob("llama_cpp_python-*.whl")), wheels
