# The two commands of README.md: `make run` and `make test`. Each sets up its
# own virtualenv (.venv) first, so both work on a fresh clone.
.PHONY: run test bootstrap generate contracts lint unit integration bench clean

PY := .venv/bin/python

bootstrap:
	@scripts/bootstrap.sh

## Runs the whole platform on the embedded default (SQLite + in-process Redis).
run: bootstrap
	.venv/bin/wework-server

## Runs every check CI runs: contracts, generated code, lint, the whole test suite.
test: bootstrap contracts lint
	.venv/bin/pytest -q

## Regenerates the Python code of the contracts into clients/.
generate: bootstrap
	scripts/generate.sh

## buf lint + format + breaking-change check, and generated code up to date.
contracts: bootstrap
	scripts/check-contracts.sh

lint: bootstrap
	.venv/bin/ruff check clients/wework/client servers persistence tests scripts $(wildcard bench)

unit: bootstrap
	.venv/bin/pytest -q tests/unit

integration: bootstrap
	.venv/bin/pytest -q tests/integration tests/e2e

## Lists the benchmarks (each one runs on its own: .venv/bin/python bench/<name>.py --help).
bench: bootstrap
	@sed -n '/^| `bench_/p' bench/README.md

clean:
	rm -rf .venv var .pytest_cache .ruff_cache
