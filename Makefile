# Orbit: `make run` installs everything with uv into .venv and runs round r0000; `make test` runs the tests.
SHELL := /bin/bash
UV := $(shell command -v uv 2>/dev/null || echo $(CURDIR)/.uv/bin/uv)
UV_VERSION := 0.13.8
export ORBIT_HOME ?= $(CURDIR)/.orbit
export DAGSTER_HOME ?= $(ORBIT_HOME)/dagster
export DAGSTER_DISABLE_TELEMETRY := 1
export UV_PYTHON_DOWNLOADS := never
export UV_SYSTEM_CERTS ?= 1
export UV_COMPILE_BYTECODE ?= 1

.PHONY: install run ui test bench clean
install: .venv/.installed

$(CURDIR)/.uv/bin/uv:
	python3 -m venv $(CURDIR)/.uv
	$(CURDIR)/.uv/bin/pip install --quiet uv==$(UV_VERSION)

.venv/.installed: pyproject.toml uv.lock | $(UV)
	$(UV) sync --frozen
	@touch $@

run: install
	.venv/bin/orbit flywheel --rounds 5

ui: install
	@.venv/bin/orbit home
	@echo "Dagster UI on http://127.0.0.1:3000 (instance: $(DAGSTER_HOME)); the plain dagster CLI needs the same"
	@echo "DAGSTER_HOME: eval \"\$$(.venv/bin/orbit home --shell)\""
	.venv/bin/dagster dev -w workspace.yaml --host 127.0.0.1 --port 3000

test: install
	.venv/bin/python -m pytest -q

bench: install
	.venv/bin/python bench/run_all.py

clean:
	rm -rf .orbit
