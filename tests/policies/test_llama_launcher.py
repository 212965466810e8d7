"""The llama.cpp launcher binds what Orbit chose and passes the server no more of the caller's environment
than it needs (the real server runs in the model tier, tests/model)."""

import pytest

from orbit.policies.llama_server import SERVER_ENV, check_extra_args, server_env, start_llama_server


@pytest.mark.parametrize("args", [["--host", "0.0.0.0"], ["--host=0.0.0.0"], ["--port", "80"], ["--ho", "0.0.0.0"],
                                  ["--n_batch", "256", "--port=80"], ["--config_file", "/tmp/x.json"],
                                  ["--config", "x"]])
def test_extra_args_that_rebind_the_server_are_refused_before_anything_starts(tmp_path, args):
    with pytest.raises(ValueError, match="extra_args may not set"):
        start_llama_server(tmp_path / "missing.gguf", extra_args=args)


def test_other_extra_args_pass():
    assert check_extra_args(["--n_batch", "256", "--verbose", "true"]) == ["--n_batch", "256", "--verbose", "true"]


def test_the_server_environment_is_scrubbed(monkeypatch):
    for name, value in {"CONFIG_FILE": "/tmp/evil.json", "HOST": "0.0.0.0", "PORT": "80", "MODEL": "/x",
                        "ORBIT_API_KEY": "secret", "OPENAI_API_KEY": "sk-secret", "HF_TOKEN": "hf_x",
                        "PATH": "/usr/bin", "OPENBLAS_CORETYPE": "Haswell"}.items():
        monkeypatch.setenv(name, value)
    env = server_env()
    assert set(env) <= set(SERVER_ENV)
    assert env["PATH"] == "/usr/bin" and env["OPENBLAS_CORETYPE"] == "Haswell"
    for name in ("CONFIG_FILE", "HOST", "PORT", "MODEL", "ORBIT_API_KEY", "OPENAI_API_KEY", "HF_TOKEN"):
        assert name not in env
