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

.PHONY: venv run test lint format bench bench-full bench-peers clean

venv: $(STAMP)

$(STAMP): pyproject.toml Makefile
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade "pip>=23"
	$(BIN)/python -m pip install --quiet $(TORCH_PAIR)
	$(BIN)/python -m pip install --quiet --no-deps $(CRYPTEN)
	$(BIN)/python -m pip install --quiet -e '.[dev,vision,bench,dp,he]'
	@touch $@

run: venv
	$(BIN)/secure-ml run $(SPEC) --out $(OUT)

bench: venv
	$(BIN)/secure-ml bench --suite quick --out benchmarks/results/quick

bench-full: venv
	$(BIN)/secure-ml bench --suite full --out benchmarks/results/full --peers benchmarks/results/peers

# SecretFlow SPU trains the same logistic regression in its own virtualenv
# (spu 0.9.5 needs numpy<2 and its own jax); `make bench-full` then puts its
# records beside ours.
SPU_VENV := benchmarks/.venv-spu
bench-peers:
	@test -x $(SPU_VENV)/bin/python || $(PYTHON) -m venv $(SPU_VENV)
	$(SPU_VENV)/bin/python -m pip install --quiet -r benchmarks/spu/requirements.txt
	mkdir -p benchmarks/results/peers
	for n in 2 3; do \
	  $(SPU_VENV)/bin/python benchmarks/spu/run_spu_logreg.py --parties $$n --epochs 5 \
	    --out benchmarks/results/peers/spu-$$n.json || exit 1; \
	done

lint: venv
	$(BIN)/ruff check secure_ml tests protocols benchmarks

test: venv lint
	$(BIN)/python -m pytest

format: venv
	$(BIN)/ruff format secure_ml tests
	$(BIN)/ruff check --fix secure_ml tests

clean:
	rm -rf build dist *.egg-info runs .pytest_cache .ruff_cache
