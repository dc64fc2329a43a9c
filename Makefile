# The two commands of the README:
#   make lab    set everything up, copy the notebooks into work/ (never overwriting), open JupyterLab there
#   make test   set everything up, then run the whole test suite (unit tests + nbval on every notebook)
# Everything lives in a virtual environment in .venv; nothing is installed system-wide.

PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
# Installed on its own, before anything else, so that pip never picks a newer torch with CUDA packages.
# Elsewhere, point this at PyTorch's CPU wheel index, or at a CUDA build for a GPU.
TORCH_INSTALL ?= torch==2.13.0
# The notebooks run under nbval once each, as the learner's copy in notebooks/ with each exercise's solution run and
# checked after its check cell, and compared with the outputs solutions/ stores: conftest.py (at the root) collects
# them that way because --nbval-lax is not given. `pytest --nbval-lax solutions` runs the complete notebooks as they
# are.
PYTEST_NOTEBOOKS := notebooks --nbval-current-env --nbval-sanitize-with tests/nbval_sanitize.cfg \
	--nbval-cell-timeout=900

.PHONY: setup lab test unit notebooks build check bench gpu-check mutants clean

setup: $(VENV)/.installed

# pip byte-compiles what it installs one file at a time, which is about half of its time here; compileall -j 0 does
# the same work on every core. Its non-zero exit only means a file it could not compile (torch ships one in Python
# 3.12's syntax), which pip skips as well.
$(VENV)/.installed: pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --no-compile $(TORCH_INSTALL)
	$(PY) -m pip install --quiet --no-compile -e ".[dev]"
	$(PY) -m compileall -qq -j 0 "$$($(PY) -c 'import sysconfig; print(sysconfig.get_path("purelib"))')" || true
	touch $@

# Jupyter refuses to run as root unless told; containers often run as root.
LAB_FLAGS := $(if $(filter 0,$(shell id -u 2>/dev/null)),--allow-root)

# Learners work in work/ (untracked): the first run copies the notebooks there, later runs never overwrite them.
lab: setup
	$(PY) -m toyenv.course workspace
	$(VENV)/bin/jupyter lab work/ $(LAB_FLAGS)

# `make test` runs TEST_WORKERS test processes at once (pytest-xdist; a notebook or a test file stays in one process, in
# the order given: the long notebooks first, the many short test files last to fill the gaps). On CI's 2 cores that
# is faster than one process: sampling, kernel start-up and Python overhead use a second thread poorly. Each process
# keeps 2 threads, the thread count the shipped studies were built with, so that on that machine type the live runs
# still reproduce them bit for bit (1 thread each was about a tenth faster, but then every bit-for-bit check becomes a
# check within tolerances: threads change the rounding). OMP_WAIT_POLICY=PASSIVE: a thread waiting for work sleeps
# instead of spinning on a core the other process needs. --durations=40 lists the 40 slowest tests and notebook
# cells: where CI's time goes.
TEST_WORKERS ?= 2
test: setup
	$(PY) -m toyenv.course check
	OMP_NUM_THREADS=2 OMP_WAIT_POLICY=PASSIVE $(PY) -m pytest -n $(TEST_WORKERS) --dist loadfile --no-loadscope-reorder \
		$(PYTEST_NOTEBOOKS) tests --durations=40

unit: setup
	$(PY) -m pytest tests

notebooks: setup
	$(PY) -m pytest $(PYTEST_NOTEBOOKS)

build: setup
	$(PY) -m toyenv.course build

check: setup
	$(PY) -m toyenv.course check

# The performance table of the README ("How fast"); transformers is only needed here (the `bench` extra).
bench: setup
	$(PY) -m pip install --quiet -e ".[dev,bench]"
	$(PY) -m benchmarks.run --notebooks

# The single-GPU path: unit tests and every notebook with the model on CUDA, with each notebook's time.
# Prints a line and exits 0 where torch sees no CUDA GPU. Install a CUDA build of torch first (TORCH_INSTALL).
gpu-check: setup
	$(PY) -m benchmarks.gpu_check

# Mutation testing (mutmut, in the dev extra): changes one thing at a time in the files of pyproject's [tool.mutmut]
# and reruns the tests that reach it. Slow (hours for all), so not part of `make test`. Results are kept in mutants/
# and, between clones, in tests/mutation_record.json: restored before the run, saved after it (after a run that was
# killed: `.venv/bin/python tests/mutation_record.py save`), so a rerun tests only what is unchecked or changed.
# MUTMUT_ARGS passes options or mutant names, e.g. MUTMUT_ARGS="--max-children 1". The score counts timeouts as
# caught; `.venv/bin/mutmut show NAME` shows a survivor. OMP_NUM_THREADS=1: mutmut runs one test process per core,
# and the tests then take one thread each (tests/conftest.py) instead of oversubscribing the cores.
mutants: setup
	$(PY) tests/mutation_record.py restore
	OMP_NUM_THREADS=1 $(VENV)/bin/mutmut run $(MUTMUT_ARGS); status=$$?; \
	$(PY) tests/mutation_record.py save; \
	$(VENV)/bin/mutmut results | grep -v ": not checked$$"; \
	$(PY) tests/mutation_record.py score; exit $$status

clean:
	rm -rf $(VENV) .pytest_cache .hypothesis mutants
