# The README's two commands: `make demo` (main job, embedded default data) and `make test`.
PY ?= python3

.PHONY: install demo test test-sanitize bench
install:
	bash scripts/setup_env.sh

demo: install
	$(PY) -m group3ad.cli demo

test: install
	$(PY) -m pytest -q tests

# ASan + UBSan build of the CPU code in build-san/ and the op tests against it (tests/README.md)
test-sanitize: install
	bash scripts/run_sanitized_tests.sh

bench: install
	$(PY) -m benchmarks.run_all
