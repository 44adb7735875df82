# cbp: the two commands of the README are `make test` and `make book`.
# Each creates .venv with the pinned torch pair and what it needs; nothing is installed by hand.
PYTHON ?= python3
VENV   := .venv
PY     := $(VENV)/bin/python
PIP    := $(VENV)/bin/pip

.PHONY: test lint lint-workflows format book notebooks workshop clean

# The pinned torch pair is a CUDA build (it runs on the CPU): .venv takes about 6.5 GB. The disk is
# checked before the venv is created and before an install into a venv without torch yet (e.g. a
# rerun after an install that died halfway), so a full disk fails with a plain message, not halfway
# through pip's install. pip also unpacks in $TMPDIR, which may be on another disk.
VENV_MIN_FREE_GB ?= 8
CHECK_DISK = @free=$$(df -Pk . | awk 'NR == 2 {print int($$4 / 1048576)}'); \
	if ! ls -d $(VENV)/lib/python*/site-packages/torch >/dev/null 2>&1 && [ "$$free" -lt "$(VENV_MIN_FREE_GB)" ]; then \
	  echo "make: $$free GiB free on this disk, and .venv (the pinned torch pair, a CUDA build that also runs on the CPU) needs about $(VENV_MIN_FREE_GB) GiB: free some space, or set VENV_MIN_FREE_GB=0 to try anyway." >&2; \
	  exit 1; \
	fi

$(VENV)/bin/activate:
	$(CHECK_DISK)
	$(PYTHON) -m venv $(VENV)
	$(PIP) install -q --upgrade pip

# One stamp per extra, so `make test` does not pay for the book's dependencies. Both install at
# the versions of requirements.lock (pip-compile of pyproject.toml's extras; the
# CONTRIBUTING.md says how to refresh it), so tests, book and study run on one environment.
LOCK := requirements.lock

$(VENV)/.test-installed: pyproject.toml $(LOCK) | $(VENV)/bin/activate
	$(CHECK_DISK)
	$(PIP) install -c $(LOCK) -e ".[test]"
	touch $@

$(VENV)/.book-installed: pyproject.toml $(LOCK) | $(VENV)/bin/activate
	$(CHECK_DISK)
	$(PIP) install -c $(LOCK) -e ".[test,book]"
	touch $@

# A workshop laptop (book/teaching.md): the book's environment plus the workshop extra (JupyterLab,
# jupytext's server extension), also at requirements.lock's versions.
$(VENV)/.workshop-installed: pyproject.toml $(LOCK) $(VENV)/.book-installed
	$(CHECK_DISK)
	$(PIP) install -c $(LOCK) -e ".[workshop]"
	touch $@

# The ci extra (check-jsonschema, ruamel.yaml: ci/lint_workflows.py), also at requirements.lock's versions.
$(VENV)/.ci-installed: pyproject.toml $(LOCK) | $(VENV)/bin/activate
	$(CHECK_DISK)
	$(PIP) install -c $(LOCK) -e ".[ci]"
	touch $@

test: $(VENV)/.test-installed
	OMP_NUM_THREADS=1 $(PY) -m pytest -q $(PYTEST_ARGS)

lint: $(VENV)/.test-installed
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .

# The GitHub workflows (.github/workflows/*.yml), checked here where no Actions runner exists:
# check-jsonschema's vendored workflow schema, pinned actions, and `make`/`bash` steps that name
# targets and scripts of this repository (ci/lint_workflows.py). .ci/run runs it.
lint-workflows: $(VENV)/.ci-installed
	$(PY) ci/lint_workflows.py

format: $(VENV)/.test-installed
	$(VENV)/bin/ruff format .
	$(VENV)/bin/ruff check --fix .

# One command for a participant's laptop: .venv with the book's and the workshop's extras, the
# "python3" kernel registered, notebooks/*.py paired to notebooks/*.ipynb (make-book.mk).
workshop: $(VENV)/.workshop-installed notebooks
	@echo "Ready: start JupyterLab with '$(VENV)/bin/jupyter lab notebooks/' and open 01_ambiguity.ipynb"

clean:
	rm -rf book/_build notebooks/*.ipynb .pytest_cache .ruff_cache

include book/make-book.mk
