# Benchmarks: pgqueue side by side with Celery, PgQueuer and a raw SKIP LOCKED loop (issue #7).
BENCH_OUT ?= docs/benchmarks
BENCH_ARGS ?=

.PHONY: bench
bench: venv ## Full benchmarks (tens of minutes); results, tables and plots into docs/benchmarks/
	$(PYTHON) -m bench --preset full --out $(BENCH_OUT) $(BENCH_ARGS)

.PHONY: bench-smoke
bench-smoke: venv ## Every benchmark scenario at a tiny size into /tmp (what CI runs, via pytest)
	$(PYTHON) -m bench --preset smoke --out $${TMPDIR:-/tmp}/pgqueue-bench-smoke $(BENCH_ARGS)
