# Every target sets itself up: uv is installed if missing, deps come from uv.lock.
SHELL := /bin/bash
UV := $(shell command -v uv 2>/dev/null)
ifeq ($(UV),)
UV := $(HOME)/.local/bin/uv
endif
ARGS ?=
# Install with bytecode, as pip does: a start then loads modules instead of compiling them
# (`foreman serve` reaches /readyz in about 2 s instead of 5 s where no cache is written).
export UV_COMPILE_BYTECODE := 1

.PHONY: setup browser serve test test-cluster eval eval-live lint fmt run-demo bench verify clean

# uv comes from PyPI; --break-system-packages only matters on a distro-managed Python.
$(UV):
	@python3 -m pip install --quiet --user uv 2>/dev/null || \
		python3 -m pip install --quiet --user --break-system-packages uv

setup: $(UV)
	@$(UV) sync --frozen --quiet
	@$(UV) run --frozen --no-sync python -m compileall -q -j 0 app graphs tools prompts evals

serve: setup
	@$(UV) run --frozen foreman serve $(ARGS)

# The inbox test drives Debian's Chromium through Playwright (never Playwright's own browsers).
browser:
	@if [ ! -x /usr/bin/chromium ]; then \
		SUDO=$$( [ "$$(id -u)" -eq 0 ] || echo sudo ); \
		$$SUDO apt-get update -qq && \
		DEBIAN_FRONTEND=noninteractive $$SUDO apt-get install -y -qq chromium chromium-driver; \
	fi

test: setup browser
	@$(UV) run --frozen pytest $(ARGS)

# Only the distributed-mode tests (2 API replicas, 3 workers, PostgreSQL); `make test` runs them too.
test-cluster: setup
	@$(UV) run --frozen pytest -m cluster tests/e2e/test_distributed.py $(ARGS)

# The offline eval suite under all three routing policies; fails when the baseline gate does.
eval: setup
	@$(UV) run --frozen foreman eval $(ARGS)

# The scenarios against the models foreman.yaml routes to (real keys or a local server; see
# docs/models.md). Slow with a small local model: narrow it, e.g. ARGS="--filter refund".
eval-live: setup
	@$(UV) run --frozen foreman eval --live $(ARGS)

lint: setup
	@$(UV) run --frozen ruff check app graphs tools prompts evals tests
	@$(UV) run --frozen mypy

fmt: setup
	@$(UV) run --frozen ruff format app graphs tools prompts evals tests
	@$(UV) run --frozen ruff check --fix app graphs tools prompts evals tests

run-demo: setup
	@$(UV) run --frozen foreman run --offline \
		"Customer C-1001 says order O-5002 arrived broken; refund it and let them know"

# A few minutes on 2 cores: prints the table and writes bench-results.json (docs/benchmarks.md).
# Figure 0 needs the bench group (autogen-agentchat), which cannot share an env with dev.
bench: setup
	@$(UV) run --frozen --no-default-groups --group bench python -m evals.bench $(ARGS)

# The full verification sweeps (docs/reliability.md), ~30 min on 2 cores; `make test` runs a
# slice of each. VERIFY_MERGE="other.jsonl" merges results of a part run on its own.
VERIFY_MERGE ?=
verify: setup browser
	@rm -f .verify-results.jsonl
	@FOREMAN_VERIFY_SCALE=full FOREMAN_VERIFY_RESULTS=$(CURDIR)/.verify-results.jsonl \
		$(UV) run --frozen pytest tests/verify tests/api/test_schemathesis.py -q $(ARGS); \
		rc=$$?; $(UV) run --frozen python -m tests.verify.report .verify-results.jsonl \
		$(VERIFY_MERGE) docs/reliability.md || rc=1; exit $$rc

clean:
	rm -rf .foreman .venv eval-report
