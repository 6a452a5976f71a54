# Two commands on a fresh machine: `make run` and `make test`. Both bootstrap
# .venv through the one `venv` target; a second call installs nothing.
#
# The pins below are what this environment holds on disk (see DESIGN.md §6);
# pyproject.toml declares the honest ranges a library should.

PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.secure-ml-installed
# torch and torchvision must come as a matched pair, or torchvision fails to
# import ("operator torchvision::nms does not exist").
TORCH_PAIR := torch==2.14.1 torchvision==0.29.1
# crypten 0.4.1 declares the dead `sklearn` package: install it without its
# metadata; pyproject.toml lists its real runtime needs.
CRYPTEN    := crypten==0.4.1

SPEC ?= protocols/mpc_train_quickstart.toml
OUT  ?= runs/quickstart

.PHONY: venv run test lint format bench bench-full clean

venv: $(STAMP)

$(STAMP): pyproject.toml Makefile
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade "pip>=23"
	$(BIN)/python -m pip install --quiet $(TORCH_PAIR)
	$(BIN)/python -m pip install --quiet --no-deps $(CRYPTEN)
	$(BIN)/python -m pip install --quiet -e '.[dev,vision,bench]'
	@touch $@

run: venv
	$(BIN)/secure-ml run $(SPEC) --out $(OUT)

bench: venv
	$(BIN)/secure-ml bench --suite quick --out benchmarks/results/quick

bench-full: venv
	$(BIN)/secure-ml bench --suite full --out benchmarks/results/full

lint: venv
	$(BIN)/ruff check secure_ml tests protocols

test: venv lint
	$(BIN)/python -m pytest

format: venv
	$(BIN)/ruff format secure_ml tests
	$(BIN)/ruff check --fix secure_ml tests

clean:
	rm -rf build dist *.egg-info runs .pytest_cache .ruff_cache
