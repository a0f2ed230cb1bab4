# The two commands of the README: `make demo` (the failover demo) and `make test`.
.PHONY: demo test lint typecheck docs pytest bench nox soak

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

pytest:
	@bash .ci/bootstrap
	$(VENV)/python -m pytest -q

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
