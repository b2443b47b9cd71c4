# Two entry points for a fresh machine:
#   make demo   the main job: an agent completes a task on the built-in virtual phone
#   make test   the whole test suite
VENV ?= .venv
PYTHON ?= python3
PY := $(VENV)/bin/python
STAMP := $(VENV)/.edgepilot-installed

.PHONY: demo test bench clean

demo: $(STAMP)
	$(VENV)/bin/edgepilot demo

test: $(STAMP)
	./scripts/system-deps.sh
	$(PY) -m pytest -q

bench: $(STAMP)
	$(VENV)/bin/edgepilot bench --agent oracle --split test
	$(VENV)/bin/edgepilot bench --suite observe

$(STAMP): pyproject.toml setup.py
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -e ".[dev,android]"
	touch $(STAMP)

clean:
	rm -rf $(VENV) build *.egg-info
