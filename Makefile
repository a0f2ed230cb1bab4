# The two commands of the README: `make demo` (the failover demo) and `make test`.
.PHONY: demo test lint typecheck docs pytest pytest-pure bench nox test-forky

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
	test_threads_stress.py)

# The whole suite, then those tests again on the Python twins (ERRPOLICY_PURE_PYTHON=1)
# as a pytest run of their own, so that each test keeps its own timeout.
pytest:
	@bash .ci/bootstrap
	$(VENV)/python -m pytest -q
	ERRPOLICY_PURE_PYTHON=1 $(VENV)/python -m pytest -q -p no:cacheprovider $(PURE_PYTHON_TESTS)

pytest-pure:
	@bash .ci/bootstrap
	ERRPOLICY_PURE_PYTHON=1 $(VENV)/python -m pytest -q -p no:cacheprovider $(PURE_PYTHON_TESTS)

bench:
	@bash .ci/bootstrap
	$(VENV)/python -m bench

nox:
	@bash .ci/bootstrap
	$(VENV)/nox

# The whole suite on CPython 3.14 and 3.15 in a Debian testing chroot (root only; see
# .ci/forky for its settings): `make test-forky ARGS="tests/core -x"` narrows it.
test-forky:
	bash .ci/forky $(ARGS)
