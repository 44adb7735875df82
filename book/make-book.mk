# Book and notebook targets, included from the top-level Makefile (`include book/make-book.mk`,
# after VENV/PY are defined there).
#
#   make book        execute every notebook (cached) and build book/_build/html, warnings = errors
#   make notebooks   pair notebooks/*.py -> notebooks/*.ipynb and register the "python3" kernel,
#                    so that `papermill notebooks/05_train_ade.ipynb out.ipynb -p ...` works
#   make book-check  offline check of the built HTML + every page in Chromium at 1280/390 px
#   make dist        book/_build/dist/cbp-book-<version>.zip (+ .sha256): site, notebooks, PDF;
#                    a copy goes to the site's handout/ page, which the intro links
#   make serve       serve book/_build/html on http://$(HOST):$(PORT)/ (builds it only if there is none)
#
# A notebook is re-executed when its code changes or when the library (cbp/**/*.py), its data
# tables (cbp/**/*.tsv) or the recorded study (results/) change, so that no page shows output
# computed from older code or data (ci/execute_notebooks.py).

BOOK_DIR        := book
BOOK_HTML       := $(BOOK_DIR)/_build/html
MATHJAX_VERSION := 3.2.2
MATHJAX_DIR     := $(BOOK_DIR)/_vendor/mathjax
KERNEL_JSON     := $(VENV)/share/jupyter/kernels/python3/kernel.json
NOTEBOOK_PY     := $(sort $(wildcard notebooks/[0-9][0-9]_*.py))
NOTEBOOK_IPYNB  := $(NOTEBOOK_PY:.py=.ipynb)
JB_FLAGS        ?= -W -n --keep-going
SCREENSHOT_DIR  ?= $(BOOK_DIR)/_build/screenshots
DIST_DIR        ?= $(BOOK_DIR)/_build/dist

.PHONY: book notebooks book-check book-clean dist serve

# MathJax 3 from the npm registry (a local copy: the built site loads nothing from the network).
$(MATHJAX_DIR)/tex-chtml.js:
	@command -v npm >/dev/null || { echo "npm not found: install Node.js + npm (e.g. apt-get install -y npm) to vendor MathJax"; exit 1; }
	rm -rf $(MATHJAX_DIR) && mkdir -p $(MATHJAX_DIR)
	tmp=$$(mktemp -d) && npm pack --silent --pack-destination $$tmp mathjax@$(MATHJAX_VERSION) >/dev/null \
	  && tar -xzf $$tmp/mathjax-$(MATHJAX_VERSION).tgz -C $$tmp \
	  && cp $$tmp/package/LICENSE $$tmp/package/es5/tex-chtml.js $(MATHJAX_DIR)/ \
	  && mkdir -p $(MATHJAX_DIR)/output/chtml $(MATHJAX_DIR)/input/tex \
	  && cp -r $$tmp/package/es5/output/chtml/fonts $(MATHJAX_DIR)/output/chtml/ \
	  && cp -r $$tmp/package/es5/input/tex/extensions $(MATHJAX_DIR)/input/tex/ \
	  && cp -r $$tmp/package/es5/a11y $$tmp/package/es5/ui $$tmp/package/es5/adaptors $(MATHJAX_DIR)/ \
	  && rm -rf $$tmp
	@echo "MathJax $(MATHJAX_VERSION) vendored into $(MATHJAX_DIR)"

# The venv's ipykernel registered as "python3" with the venv's interpreter (absolute path), so
# jupyter-book, Papermill and a system-wide Jupyter all run notebooks with the project's Python.
$(KERNEL_JSON): $(VENV)/.book-installed
	$(PY) -m ipykernel install --sys-prefix --name python3 --display-name "Python 3 (cbp .venv)" >/dev/null
	@touch $@

notebooks/%.ipynb: notebooks/%.py $(KERNEL_JSON)
	$(VENV)/bin/jupytext --quiet --to ipynb --set-kernel python3 --output $@ $<

notebooks: $(KERNEL_JSON) $(NOTEBOOK_IPYNB)
	@echo "Paired $(words $(NOTEBOOK_IPYNB)) notebooks: e.g. $(VENV)/bin/papermill notebooks/05_train_ade.ipynb out.ipynb -p backbone swin_b"

# 1. ci/execute_notebooks.py executes the stale notebooks one by one (no fixed cell timeout) into
#    the jupyter-cache; a failing notebook is stored with its error and a box saying so.
# 2. jupyter-book builds every page from the cache (it executes nothing itself).
# 3. One summary line; the exit status is non-zero when a notebook or the Sphinx build failed
#    (CI fails on it), but every page that could be built is in book/_build/html.
book: $(VENV)/.book-installed $(KERNEL_JSON) $(MATHJAX_DIR)/tex-chtml.js
	@start=$$(date +%s); mkdir -p $(BOOK_DIR)/_build; \
	export PATH="$(CURDIR)/$(VENV)/bin:$$PATH" PYDEVD_DISABLE_FILE_VALIDATION=1; \
	$(PY) ci/execute_notebooks.py --book $(BOOK_DIR); nb=$$?; \
	if [ $$nb -eq 130 ]; then echo "make book: interrupted (Ctrl-C); the notebooks finished before it stay cached"; exit 130; fi; \
	$(VENV)/bin/jupyter-book build $(BOOK_DIR) $(JB_FLAGS); jb=$$?; \
	$(PY) ci/execute_notebooks.py --book $(BOOK_DIR) --summary --executor-rc $$nb --sphinx-rc $$jb \
	  --seconds $$(( $$(date +%s) - start ))

# Offline check of the HTML and of every page's build footer (ci/build_info.py), then every page
# in headless Chromium at 1280 and 390 px (raw TeX, missing images, pages wider than the screen;
# screenshots in $(SCREENSHOT_DIR)). Without
# chromium the browser part is skipped with a message, unless REQUIRE_BROWSER=1 (CI).
book-check: $(VENV)/.book-installed
	@test -f $(BOOK_HTML)/index.html || { echo "no built book: run 'make book' first"; exit 1; }
	$(PY) ci/check_offline.py $(BOOK_HTML)
	$(PY) ci/build_info.py --check $(BOOK_HTML)
	@if command -v chromium >/dev/null || command -v chromium-browser >/dev/null; then \
	  bash ci/screenshot.sh $(SCREENSHOT_DIR) $(BOOK_HTML); \
	elif [ "$(REQUIRE_BROWSER)" = 1 ]; then echo "chromium not installed (REQUIRE_BROWSER=1)"; exit 1; \
	else echo "chromium not installed: browser check and screenshots skipped (apt-get install -y chromium)"; fi

# One archive to hand out, from the built book: the offline site, the executed notebooks and a
# PDF (when chromium and pdfunite/qpdf exist), plus its sha256 (ci/make_dist.py).
dist: $(VENV)/.book-installed
	@test -f $(BOOK_HTML)/index.html || { echo "no built book: run 'make book' first"; exit 1; }
	$(PY) ci/make_dist.py --book $(BOOK_DIR) --out $(DIST_DIR)

# The built book over HTTP (ci/serve.py, Python's http.server; Ctrl-C stops it). It builds the book
# only when there is none: a book that exists is served as it is (run `make book` to refresh it).
# HOST=0.0.0.0 listens on every interface, so other devices on the same network can open it.
PORT ?= 8000
HOST ?= 127.0.0.1
serve: $(BOOK_HTML)/index.html
	@$(PYTHON) ci/serve.py --host $(HOST) --port $(PORT) $(BOOK_HTML)

$(BOOK_HTML)/index.html:
	$(MAKE) --no-print-directory book

book-clean:
	rm -rf $(BOOK_DIR)/_build $(NOTEBOOK_IPYNB)
