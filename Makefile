# provbatch: `make demo` runs a real batch on the bundled examples; `make test` runs the test suite.
# Both set up .venv when missing; `make test` also installs the Debian packages its real components need.

PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.provbatch-installed
TEST_STAMP := $(VENV)/.provbatch-test-installed
DEMO_OUT := demo-output

.PHONY: demo test lint setup test-setup system-deps bench clean

$(BIN)/python:
	@$(PYTHON) -m venv $(VENV)
	@$(BIN)/pip install -q --upgrade pip

# Reinstall only when the package metadata changes. The demo needs the package alone; the tests its extras.
$(STAMP): pyproject.toml | $(BIN)/python
	@$(BIN)/pip install -q -e . >$(VENV)/install.log 2>&1 || { cat $(VENV)/install.log; exit 1; }
	@touch $(STAMP)

$(TEST_STAMP): pyproject.toml | $(BIN)/python
	$(BIN)/pip install -q -e '.[test]'
	touch $(STAMP) $(TEST_STAMP)

# Debian packages the real components of the test suite need: nim (Nim plugins), PostgreSQL and
# MariaDB servers (the results store), a one-node Slurm cluster with munge, chromium (the HTML
# report in a real browser), GNU parallel (the Bash benchmark's peer), libmariadb-dev and pkg-config
# (mysqlclient, for prenacs side by side). Installed only when missing; as root, or with sudo.
SYSTEM_PACKAGES := nim postgresql mariadb-server slurmctld slurmd slurm-client munge chromium parallel libmariadb-dev pkg-config

system-deps:
	@missing=$$(for p in $(SYSTEM_PACKAGES); do dpkg-query -W -f='$${Status}' $$p 2>/dev/null | grep -q 'install ok installed' || echo $$p; done); \
	if [ -n "$$missing" ]; then \
	  echo "installing Debian packages:" $$missing; \
	  SUDO=$$( [ "$$(id -u)" = 0 ] || echo sudo ); \
	  $$SUDO apt-get update -qq && DEBIAN_FRONTEND=noninteractive $$SUDO apt-get install -y -qq --no-install-recommends $$missing >/dev/null; \
	fi

setup: $(STAMP)

test-setup: system-deps $(TEST_STAMP)

demo: setup
	@rm -rf $(DEMO_OUT) && mkdir -p $(DEMO_OUT)
	@echo "GC content of the genomes listed in examples/genomes.txt (plugins/gc_content.py):"
	@$(BIN)/batch-compute plugins/gc_content.py examples/genomes.txt --header --no-progress \
	  --out $(DEMO_OUT)/gc_content.tsv --log $(DEMO_OUT)/gc_content.log.tsv \
	  --report $(DEMO_OUT)/gc_content.report.yaml --run-dir $(DEMO_OUT)/run --reason new_entities \
	  --store $(DEMO_OUT)/provbatch.sqlite
	@$(BIN)/python -c 'import sys; rows = [l.rstrip("\n").split("\t") for l in open(sys.argv[1])]; \
	  w = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]; \
	  print("\n".join("  " + "  ".join(c.ljust(n) for c, n in zip(r, w)).rstrip() for r in rows))' $(DEMO_OUT)/gc_content.tsv
	@$(BIN)/provbatch report $(DEMO_OUT)/run --html $(DEMO_OUT)/report.html >/dev/null
	@echo
	@echo "results:     $(DEMO_OUT)/gc_content.tsv (first line: the column names, from --header)"
	@echo "logs:        $(DEMO_OUT)/gc_content.log.tsv"
	@echo "report:      $(DEMO_OUT)/gc_content.report.yaml; as a page to open in a browser: $(DEMO_OUT)/report.html"
	@echo "run record:  $(DEMO_OUT)/run (manifest.json, events.jsonl, run_config.json)"
	@echo "provenance:  $(BIN)/provbatch show $(DEMO_OUT)/run; redo it: $(BIN)/provbatch rerun $(DEMO_OUT)/run"
	@echo "store:       $(DEMO_OUT)/provbatch.sqlite (every value with its computation); where one value came from:"
	@echo "\$$ provbatch why examples/genomes/tiny.fna gc_content --store $(DEMO_OUT)/provbatch.sqlite"
	@$(BIN)/provbatch why examples/genomes/tiny.fna gc_content --store $(DEMO_OUT)/provbatch.sqlite

# ruff and mypy on the package (configured in pyproject.toml); a few seconds, so `make test` runs it first
lint: test-setup
	$(BIN)/ruff check provbatch benchmarks
	$(BIN)/mypy

# The suite on TEST_WORKERS pytest-xdist workers, one module on one worker (tests/conftest.py says why);
# TEST_WORKERS=0 runs it in one process.
TEST_WORKERS ?= 3

# compileall first: the suite starts hundreds of batch-compute/provbatch processes (and pool
# workers), and where PYTHONDONTWRITEBYTECODE is set (as on this CI) each compiled the package
# anew: a 3-id batch-compute took 0.61-0.74 s without the bytecode, 0.45-0.51 s with it
test: lint
	$(BIN)/python -m compileall -q provbatch
	$(BIN)/python -m pytest -q -n $(TEST_WORKERS) --dist loadfile

# make bench: every performance target (docs/performance.md); make bench BENCH_ARGS=--quick for a smoke run
bench: test-setup
	$(BIN)/python benchmarks/run_all.py $(BENCH_ARGS)

clean:
	rm -rf $(DEMO_OUT) .pytest_cache .mypy_cache .ruff_cache
