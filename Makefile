# The README's two commands: `make demo` (main job, embedded default data) and `make test`.
PY ?= python3

.PHONY: install demo test test-slow bench
install:
	bash scripts/setup_env.sh

demo: install
	$(PY) -m group3ad.cli demo

test: install
	$(PY) -m pytest -q tests

bench: install
	$(PY) -m benchmarks.run_all
