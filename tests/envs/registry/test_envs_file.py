"""The env registry read from an envs file: additions, overrides, refusals that name file, env and key,
re-reading on change, inactive envs, and `orbit envs` / the partitions following the file."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from orbit.envs import registry
from orbit.envs.registry import EnvsFileError, envs_file, read_envs_file

ROOT = Path(__file__).resolve().parents[3]
ORBIT = str(ROOT / ".venv" / "bin" / "orbit")
BUILTIN = {s.name: s for s in registry.BUILTIN_SPECS}


@pytest.fixture
def envs_toml(tmp_path, monkeypatch):
    path = tmp_path / "envs.toml"
    monkeypatch.setenv("ORBIT_ENVS_FILE", str(path))
    return path


def test_no_file_means_the_builtin_envs(envs_toml):
    assert not envs_toml.exists()
    assert registry.env_names()[:5] == ("tic_tac_toe", "connect_four", "kuhn_poker", "leduc_poker", "liveweb")
    assert registry.env_names() == tuple(BUILTIN)
    assert all(s.source == "built-in" for s in registry.envs().values())


def test_the_file_adds_and_overrides(envs_toml):
    envs_toml.write_text("""
[envs.tic_tac_toe]
num_tasks = 12
opponent = { kind = "random" }

[envs.kuhn_fast]
family = "openspiel"
game = "kuhn_poker"
learner = { kind = "random" }
num_tasks = 7
""")
    envs = registry.envs()
    assert list(envs)[:len(BUILTIN)] == list(BUILTIN) and list(envs)[len(BUILTIN):] == ["kuhn_fast"]
    ttt = envs["tic_tac_toe"]
    assert ttt.num_tasks == 12 and ttt.source == str(envs_toml)
    # options merge key by key: the learner stays the built-in's, the opponent is the file's
    assert ttt.options["learner"] == BUILTIN["tic_tac_toe"].options["learner"]
    assert ttt.options["opponent"] == {"kind": "random"} and ttt.options["game"] == "tic_tac_toe"
    assert envs["kuhn_fast"].family == "openspiel" and envs["kuhn_fast"].num_tasks == 7
    assert envs["connect_four"] == BUILTIN["connect_four"]


def test_the_file_is_read_again_when_it_changes(envs_toml):
    envs_toml.write_text('[envs.a1]\nfamily = "openspiel"\ngame = "kuhn_poker"\n')
    assert "a1" in registry.env_names()
    envs_toml.write_text('[envs.b2]\nfamily = "openspiel"\ngame = "tic_tac_toe"\nnum_tasks = 3\n')
    os.utime(envs_toml, ns=(1, 1))  # a change within the same mtime tick is still seen (size, inode, mtime)
    assert "b2" in registry.env_names() and "a1" not in registry.env_names()


@pytest.mark.parametrize("text, env, key, words", [
    ('[envs.x1]\nfamily = "nope"\n', "x1", "family", "unknown family 'nope'"),
    ('[envs.x1]\ngame = "kuhn_poker"\n', "x1", "family", "missing"),
    ('[envs.x1]\nfamily = "openspiel"\ngame = "chess"\n', "x1", "game", "unsupported game"),
    ('[envs.x1]\nfamily = "openspiel"\ngame = "kuhn_poker"\nlearner = { kind = "mcts", sims = 3 }\n',
     "x1", "learner.sims", "not an option"),
    ('[envs.x1]\nfamily = "openspiel"\ngame = "kuhn_poker"\nnum_tasks = 0\n', "x1", "num_tasks", "whole number"),
    ('[envs.x1]\nfamily = "openspiel"\ngame = "kuhn_poker"\nnum_tasks = true\n', "x1", "num_tasks", "whole number"),
    ('[envs.x1]\nfamily = "openspiel"\ngame = "kuhn_poker"\npass_threshold = 1.5\n', "x1", "pass_threshold", "(0, 1]"),
    ('[envs.x1]\nfamily = "liveweb"\nsubtasks = 9\n', "x1", "subtasks", "from 1 to 4"),
    ('[envs.x1]\nfamily = "liveweb"\ncolour = "red"\n', "x1", "colour", "not an option"),
    ('[envs."Bad-Name"]\nfamily = "openspiel"\n', None, None, "env name 'Bad-Name'"),
    ('[envs."../etc"]\nfamily = "openspiel"\n', None, None, "env name '../etc'"),
    ('envs = 3\n', None, "envs", "expected [envs.<name>] tables"),
    ('[env.x1]\nfamily = "openspiel"\n', None, "env", "unknown top-level key"),
    ('[envs.x1\n', None, None, "not valid TOML"),
])
def test_a_bad_file_is_refused_naming_file_env_and_key(envs_toml, text, env, key, words):
    envs_toml.write_text(text)
    with pytest.raises(EnvsFileError) as err:
        registry.envs()
    message = str(err.value)
    assert message.startswith(f"{envs_toml}: ") and words in message, message
    assert err.value.env == env and err.value.key == key
    if env:
        assert f"[envs.{env}]" in message


def test_hostile_bytes_are_refused_not_crashed_on(envs_toml):
    envs_toml.write_bytes(b"\xff\xfe[envs.x]\x00")
    with pytest.raises(EnvsFileError, match="not UTF-8"):
        registry.envs()
    envs_toml.write_bytes(b"#" * (registry.MAX_ENVS_FILE_BYTES + 10))
    with pytest.raises(EnvsFileError, match="larger than"):
        registry.envs()


def test_a_refused_file_does_not_replace_the_last_good_one_silently(envs_toml):
    """Every read of a broken file refuses again: no command runs on a half-read file."""
    envs_toml.write_text('[envs.k1]\nfamily = "openspiel"\ngame = "kuhn_poker"\n')
    assert "k1" in registry.env_names()
    envs_toml.write_text('[envs.k1]\nfamily = "openspiel"\ngame = "chess"\n')
    for _ in range(2):
        with pytest.raises(EnvsFileError):
            registry.env_names()


def test_envs_file_defaults_to_the_home(monkeypatch, tmp_path):
    monkeypatch.delenv("ORBIT_ENVS_FILE")
    monkeypatch.setenv("ORBIT_HOME", str(tmp_path / "h"))
    assert envs_file() == (tmp_path / "h" / "envs.toml").resolve()


def _orbit(args, home, envs_path=None, **kw):
    env = {k: v for k, v in os.environ.items() if k not in ("ORBIT_ENVS_FILE", "ORBIT_LAKE")}
    env.update(ORBIT_HOME=str(home), DAGSTER_HOME=str(home / "dagster"), DAGSTER_DISABLE_TELEMETRY="1")
    if envs_path is not None:
        env["ORBIT_ENVS_FILE"] = str(envs_path)
    env.update(kw.pop("extra_env", {}))
    return subprocess.run([ORBIT, *args], env=env, capture_output=True, text=True, timeout=600, **kw)


def test_orbit_envs_lists_declared_and_inactive_envs(tmp_path):
    home = tmp_path / "home"
    home.mkdir()
    (home / "envs.toml").write_text('[envs.kuhn_fast]\nfamily = "openspiel"\ngame = "kuhn_poker"\n'
                                    'description = "Kuhn poker, random bots"\n')
    (home / "lake" / "raw_samples" / "r0000" / "old_env").mkdir(parents=True)  # an env removed from the file
    out = _orbit(["envs", "--format", "json"], home)
    assert out.returncode == 0, out.stderr
    rows = {r["env"]: r for r in json.loads(out.stdout)}
    assert list(rows)[:len(BUILTIN)] == list(BUILTIN)
    assert rows["kuhn_fast"] == {"env": "kuhn_fast", "family": "openspiel", "description": "Kuhn poker, random bots",
                                 "source": str((home / "envs.toml").resolve()), "status": "active"}
    assert rows["old_env"]["status"] == "inactive"
    assert (home / "lake" / "raw_samples" / "r0000" / "old_env").is_dir()  # listed, never deleted
    (home / "envs.toml").write_text('[envs.kuhn_fast]\nfamily = "openspiel"\ngame = "chess"\n')
    out = _orbit(["envs"], home)
    assert out.returncode == 2 and "Traceback" not in out.stderr
    assert f"{(home / 'envs.toml').resolve()}: [envs.kuhn_fast] game: unsupported game 'chess'" in out.stderr


def test_orbit_run_follows_the_file_and_keeps_data_of_a_removed_env(tmp_path):
    home = tmp_path / "home"
    home.mkdir()
    (home / "envs.toml").write_text('[envs.kuhn_fast]\nfamily = "openspiel"\ngame = "kuhn_poker"\n'
                                    'learner = { kind = "random" }\nopponent = { kind = "random" }\n')
    out = _orbit(["run", "--rounds", "1", "--envs", "kuhn_fast", "--tasks", "10"], home)
    assert out.returncode == 0, out.stderr[-3000:]
    part = home / "lake" / "raw_samples" / "r0000" / "kuhn_fast"
    assert part.is_dir()
    out = _orbit(["yields", "--format", "json"], home)
    rows = json.loads(out.stdout)
    assert [r["env"] for r in rows] == ["kuhn_fast"] and rows[0]["tasks"] == 10 and rows[0]["attempts"] >= 10
    (home / "envs.toml").write_text("")  # the env is removed from the file
    out = _orbit(["envs", "--format", "json"], home)
    assert {r["env"]: r["status"] for r in json.loads(out.stdout)}["kuhn_fast"] == "inactive"
    assert part.is_dir()
    out = _orbit(["yields", "--format", "json"], home)  # its yields stay queryable
    assert [r["env"] for r in json.loads(out.stdout)] == ["kuhn_fast"]
    out = _orbit(["run", "--rounds", "1", "--envs", "kuhn_fast", "--tasks", "10"], home)
    assert out.returncode != 0 and "unknown env 'kuhn_fast'" in out.stderr


def test_enabled_false_switches_a_builtin_env_off(envs_toml):
    envs_toml.write_text('[envs.liveweb]\nenabled = false\n\n[envs.leduc_poker]\nenabled = false\n')
    assert registry.env_names() == tuple(n for n in BUILTIN if n not in ("liveweb", "leduc_poker"))
    envs_toml.write_text('[envs.liveweb]\nenabled = "no"\n')
    with pytest.raises(EnvsFileError, match=r"\[envs.liveweb\] enabled: expected true or false"):
        registry.env_names()


def test_a_passed_check_is_remembered_and_a_changed_spec_checked_again(envs_toml, tmp_path, monkeypatch):
    """Every command and Dagster run process reads the file: a family's check that passed (it may import
    its library) is remembered in the home under a key of the spec, and a changed spec is checked anew."""
    home = tmp_path / "home"
    home.mkdir()
    monkeypatch.setenv("ORBIT_HOME", str(home))
    monkeypatch.setattr(registry, "_CHECKED", None)
    calls = []
    family = registry.load_family("openspiel")
    monkeypatch.setattr(type(family), "check", lambda self, spec: calls.append(spec.name), raising=False)
    envs_toml.write_text('[envs.k1]\nfamily = "openspiel"\ngame = "kuhn_poker"\n')
    registry.env_names()
    assert calls == ["k1"] and (home / registry.CHECKED_FILE).exists()
    monkeypatch.setattr(registry, "_CHECKED", None)  # a new process: read back from the home
    os.utime(envs_toml, ns=(2, 2))
    registry.env_names()
    assert calls == ["k1"]
    envs_toml.write_text('[envs.k1]\nfamily = "openspiel"\ngame = "kuhn_poker"\nnum_tasks = 5\n')
    registry.env_names()
    assert calls == ["k1", "k1"]
