# The web console (docs/web.md): its browser tier, its screenshots and its benchmark.

.PHONY: test-web
test-web: ## Web console tier: pgqueue web in Debian's headless Chromium (Playwright)
	$(PYTEST) tests/web

.PHONY: web-screenshots
web-screenshots: ## Re-take the console's screenshots into docs/web/ (shown in the README)
	PGQUEUE_WEB_SCREENSHOTS=1 $(PYTEST) tests/web -k every_page

.PHONY: bench-web
bench-web: ## The console's queue page over 1,000,000 waiting messages, into docs/benchmarks/web.json
	PGQUEUE_WEB_BENCH_OUT=docs/benchmarks/web.json $(PYTEST) -s tests/benchmarks/test_web_console.py

# `make bench` measures the console too (its own rule adds this prerequisite; mk/bench.mk untouched).
bench: bench-web
