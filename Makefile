# The two commands of the README: `make demo` (the failover demo) and `make test`.
.PHONY: demo test lint typecheck docs pytest pytest-main pytest-pure bench nox soak fidelity test-forky test-floors

VENV := .venv/bin

demo:
	@bash .ci/bootstrap
	$(VENV)/python -m examples.failover_demo $(ARGS)

test: lint typecheck docs pytest

lint:
	@bash .ci/bootstrap
	$(VENV)/ruff check .
	$(VENV)/ruff format --check .

typecheck:
	@bash .ci/bootstrap
	$(VENV)/mypy

docs:
	@bash .ci/bootstrap
	$(VENV)/mkdocs build --strict --quiet --site-dir site

# The tests that exercise the Python twins of the C speedups: tests/core, and the
# store's tests that rank, fan out, read and fail over.
PURE_PYTHON_TESTS := tests/core $(addprefix tests/memcache/,test_placement.py \
	test_transport.py test_reads.py test_failover.py test_store.py test_speedups.py \
	test_threads_stress.py test_hostile.py test_reply_grammar.py test_consistency.py \
	test_notice_path.py test_seal_save.py test_wide_read.py)

# The whole suite, then those tests again on the Python twins (ERRPOLICY_PURE_PYTHON=1)
# as a pytest run of their own, so that each test keeps its own timeout.
pytest: pytest-main pytest-pure

# PYTEST_ARGS adds options to both (.ci/run asks for the slowest tests' durations).
pytest-main:
	@bash .ci/bootstrap
	$(VENV)/python -m pytest -q $(PYTEST_ARGS)

pytest-pure:
	@bash .ci/bootstrap
	ERRPOLICY_PURE_PYTHON=1 $(VENV)/python -m pytest -q -p no:cacheprovider $(PYTEST_ARGS) $(PURE_PYTHON_TESTS)

# tests/sinks on the lowest opentelemetry and sentry-sdk the extras allow, in a throwaway
# venv (.ci/floors; needs PyPI).
test-floors:
	@bash .ci/bootstrap
	bash .ci/floors $(PYTEST_ARGS)

bench:
	@bash .ci/bootstrap
	$(VENV)/python -m bench

nox:
	@bash .ci/bootstrap
	$(VENV)/nox

# The fault-injection soak against real memcached (docs/memcache/soak.md), minutes long:
# make soak ARGS="--scenario B --seconds 180"
soak:
	@bash .ci/bootstrap
	$(VENV)/python -m tests.memcache.soak $(ARGS)

# Peer suites without and with errpolicy, compared test by test (docs/fidelity.md):
# 3.11 to 3.13 here, then 3.14 and 3.15 in the forky chroot when it is ready, by
# default and with context-aware warnings (the default of free-threaded builds).
FIDELITY_PYTHONS ?= $(VENV)/python $(wildcard $(HOME)/.pyenv/versions/3.12.*/bin/python $(HOME)/.pyenv/versions/3.13.*/bin/python)
FORKY ?= /srv/forky
fidelity:
	@bash .ci/bootstrap
	@status=0; \
	$(VENV)/python -m tests.fidelity $(foreach p,$(FIDELITY_PYTHONS),--python $(p)) $(ARGS) || status=1; \
	if [ -e $(FORKY)/.ready ]; then \
	  $(VENV)/python -m tests.fidelity --chroot $(FORKY) --python python3.14 --python python3.15 $(ARGS) || status=1; \
	  $(VENV)/python -m tests.fidelity --chroot $(FORKY) --python python3.14 --python python3.15 \
	    --env PYTHON_CONTEXT_AWARE_WARNINGS=1 --env PYTHON_THREAD_INHERIT_CONTEXT=1 $(ARGS) || status=1; \
	else echo "fidelity: $(FORKY) is not ready (bash .ci/forky builds it): 3.14 and 3.15 not run"; status=1; fi; \
	exit $$status

# The whole suite on CPython 3.14 and 3.15 in a Debian testing chroot (root only; see
# .ci/forky for its settings): `make test-forky ARGS="tests/core -x"` narrows it.
test-forky:
	bash .ci/forky $(ARGS)
