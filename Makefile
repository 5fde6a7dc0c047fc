# Two commands do all set-up on a fresh Debian/Ubuntu machine: `make demo` and `make test`.
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed

.PHONY: demo test lint bench clean

$(STAMP): pyproject.toml
	bash scripts/system-deps.sh
	test -x $(PY) || python3 -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	# torch first, pinned: 2.13.0 is the CPU build on our machines; GPU hosts bring their own.
	$(PY) -m pip install -q torch==2.13.0
	$(PY) -m pip install -q -e '.[engine,dashboard,dev]'
	touch $@

demo: $(STAMP)
	$(VENV)/bin/orchestrate sweep sweeps/demo.yaml
	$(VENV)/bin/orchestrate results demo

test: $(STAMP)
	bash scripts/system-deps.sh test
	$(VENV)/bin/ruff check .
	RAY_USAGE_STATS_ENABLED=0 $(PY) -m pytest -q

lint: $(STAMP)
	$(VENV)/bin/ruff check .

clean:
	rm -rf $(VENV) benchsweep.db benchsweep.db-*
