# Songsmith: `make demo` and `make test` set themselves up from nothing (pip only, no root).
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed-stamp
PROTO_DIR := protos
PROTO_OUT := protos/songsmith/v1

.PHONY: venv test lint protos demo bench clean

venv: $(STAMP)

# torch goes first with its exact pin so that nothing later can pull the CUDA build; the lyric
# front end's data package is installed without its dependencies (its metadata asks for torchaudio).
$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet torch==2.13.0 setuptools==80.10.2
	$(BIN)/pip install --quiet -e ".[dev]"
	$(BIN)/pip install --quiet --no-deps diffrhythm2-fork==20260128
	touch $(STAMP)

protos: $(STAMP)
	$(BIN)/python -m services.runtime.protogen

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	cd $(PROTO_DIR) && ../$(BIN)/buf lint

test: lint
	$(BIN)/python -m pytest

# Writes the untrained demo models when no model is installed, starts the four stages, the chart stage
# and the gateway on 127.0.0.1, makes out/demo.mp3 from gateway/examples/morning-light.txt and its
# osu!mania chart out/demo.osz through the gateway, and stops them again.
demo: $(STAMP)
	$(BIN)/songsmith demo --output out/demo.mp3

# Runs every benchmark even when one misses its target, then fails if any did.
bench: $(STAMP)
	status=0; for name in transport pipeline throughput; do $(BIN)/python -m bench.$$name || status=1; done; exit $$status

clean:
	rm -rf $(VENV) out .pytest_cache
