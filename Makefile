# provbatch: `make demo` runs a real batch on the bundled examples; `make test` runs the test suite.
# Both set up .venv (and Nim, from Debian, for Nim plugins) when missing.

PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.provbatch-installed
DEMO_OUT := demo-output

.PHONY: demo test setup system-deps bench clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip

# Reinstall only when the package metadata changes.
$(STAMP): pyproject.toml | $(BIN)/python
	$(BIN)/pip install -q -e '.[test]'
	touch $(STAMP)

system-deps:
	@command -v nim >/dev/null 2>&1 || { \
	  echo "installing nim (Debian package) for Nim plugins"; \
	  SUDO=$$( [ "$$(id -u)" = 0 ] || echo sudo ); \
	  $$SUDO apt-get update -qq && $$SUDO apt-get install -y -qq nim >/dev/null; }

setup: system-deps $(STAMP)

demo: setup
	@rm -rf $(DEMO_OUT) && mkdir -p $(DEMO_OUT)
	$(BIN)/batch-compute plugins/gc_content.py examples/genomes.txt \
	  --out $(DEMO_OUT)/gc_content.tsv --log $(DEMO_OUT)/gc_content.log.tsv \
	  --report $(DEMO_OUT)/gc_content.report.yaml --run-dir $(DEMO_OUT)/run --reason new_entities
	@echo
	@echo "results: $(DEMO_OUT)/gc_content.tsv"; cat $(DEMO_OUT)/gc_content.tsv
	@echo "logs:    $(DEMO_OUT)/gc_content.log.tsv"
	@echo "report:  $(DEMO_OUT)/gc_content.report.yaml"
	@echo "run record (manifest.json, events.jsonl, run_config.json): $(DEMO_OUT)/run"
	@echo "its provenance: $(BIN)/provbatch show $(DEMO_OUT)/run; redo it: $(BIN)/provbatch rerun $(DEMO_OUT)/run"

test: setup
	$(BIN)/python -m pytest -q

# make bench: every performance target (docs/performance.md); make bench BENCH_ARGS=--quick for a smoke run
bench: setup
	$(BIN)/python benchmarks/run_all.py $(BENCH_ARGS)

clean:
	rm -rf $(DEMO_OUT) .pytest_cache
