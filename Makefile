# The broker's entry points. `make setup` then `make test` takes a fresh machine to green.
PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
NIGHT  ?=
SOURCE ?=
OUT    ?= ./data
SURVEY ?=
ARGS   ?=

.PHONY: setup browser test test-unit test-integration lint bench bench-stream run-night serve lake-publish lake-compact clean lock models

setup: $(BIN)/broker browser

$(BIN)/broker: pyproject.toml constraints.txt
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -c constraints.txt -e '.[test]'
	$(BIN)/broker warm  # compile the numba kernels into their cache once: workers then start in seconds
	@touch $(BIN)/broker

# The explorer's browser tests drive Debian's chromium with Playwright (Playwright's own browser download is not
# used). Installed with apt-get when missing and possible; otherwise the tests skip, saying so.
browser:
	@if command -v chromium >/dev/null 2>&1 || command -v chromium-browser >/dev/null 2>&1 || [ -n "$$BROKER_CHROMIUM" ]; then :; \
	elif [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then \
		echo "installing Debian's chromium for the explorer's browser tests (apt-get)"; \
		(apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null) \
		|| echo "could not install chromium: the browser tests will skip (apt-get install chromium)"; \
	else \
		echo "no chromium found: the explorer's browser tests will skip. Install it (Debian/Ubuntu:" \
		     "sudo apt-get install chromium) or point BROKER_CHROMIUM at a Chromium/Chrome binary."; \
	fi

# Two test processes (pytest-xdist), each taking whole files: most end-to-end tests wait on services, Dask start-up
# and Kafka's idle stop, so two share two cores well (11 min instead of 18 on the development machine).
TEST_WORKERS ?= 2

test: setup
	$(BIN)/python -m pytest -q -n $(TEST_WORKERS) --dist loadfile tests

test-unit: setup
	$(BIN)/python -m pytest -q tests/unit

test-integration: setup
	$(BIN)/python -m pytest -q tests/integration tests/e2e

lint: setup
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/python -m tests.architecture

bench: setup
	$(BIN)/python -m bench.run_bench $(ARGS)
	$(BIN)/python -m bench.bench_magstats
	$(BIN)/python -m bench.bench_features
	$(BIN)/python -m bench.bench_classify
	$(BIN)/python -m bench.bench_reclassify
	$(BIN)/python -m bench.bench_lsst
	$(BIN)/python -m bench.bench_stamp_lsst
	$(BIN)/python -m bench.bench_api
	$(BIN)/python -m bench.bench_output
	$(BIN)/python -m bench.bench_lake_compaction

# stamp_classifier 1.4.0's business rules (classifiers/stamp/rules.py): ALeRCE's with the asteroids' sky prior.
STAMP_SKY_PRIOR_RULES = negative_difference_is_not_sn,star_counterpart_is_not_sn,asteroids_keep_near_the_ecliptic,known_solar_system_object

# Re-train the shipped models from their seeds (deterministic: the same files with the pinned libraries).
models: setup
	$(BIN)/broker train lc --seed 1 --out models --overwrite --n-jobs 2 --eval-objects 20000 --version 1.1.0 \
		--feature-version lc-features-1.0.0 --history-window 0
	$(if $(wildcard ../shared/data),$(BIN)/broker train lc --seed 1 --out models --overwrite --n-jobs 2 \
		--eval-objects 20000 --version 1.6.0 --real-data ../shared/data --sky-prior galactic-latitude-1 \
		--one-alert-cuts)
	$(BIN)/broker train lc --survey lsst --objects 60000 --seed 1 --out models --overwrite --n-jobs 2 \
		--eval-objects 20000 --version 1.0.0
	$(if $(wildcard ../shared/data),$(BIN)/broker train lc --survey lsst --objects 60000 --seed 1 --out models \
		--overwrite --n-jobs 2 --eval-objects 20000 --version 1.1.0 --real-data ../shared/data)
	$(BIN)/broker train stamp --seed 1 --models models --overwrite --n-per-class 3000 --epochs 12 \
		--eval-per-class 600 --version 1.1.0 $(if $(wildcard ../shared/data),--real-data ../shared/data)
	$(BIN)/broker train stamp --survey lsst --seed 1 --models models --overwrite --n-per-class 3000 --epochs 12 \
		--eval-per-class 600 --version 1.0.0
	$(if $(wildcard ../shared/data),$(BIN)/broker train stamp --second-stage-on 1.1.0 --version 1.2.0 --seed 1 \
		--models models --overwrite --stack-per-class 800 --cv-folds 5 --eval-per-class 600 \
		--real-data ../shared/data)
	$(if $(wildcard ../shared/data),$(BIN)/broker train stamp --second-stage-on 1.1.0 --version 1.4.0 --seed 1 \
		--models models --overwrite --stack-per-class 800 --cv-folds 5 --eval-per-class 600 \
		--real-data ../shared/data --calibrate --rules $(STAMP_SKY_PRIOR_RULES))

# Latency under a bursty LSST-like stream through tansu (long: ~10 minutes per rate; ARGS="--rates 250 --minutes 3").
bench-stream: setup
	$(BIN)/python -m bench.bench_stream $(ARGS)

run-night: setup
	$(BIN)/broker run-night $(if $(NIGHT),--night $(NIGHT)) $(if $(SOURCE),--source $(SOURCE)) $(if $(SURVEY),--survey $(SURVEY)) --out $(OUT) $(ARGS)

# The query API and web explorer over OUT's database and lake (docs/api.md): http://127.0.0.1:8000/
serve: setup
	$(BIN)/broker serve --out $(OUT) $(ARGS)

# The lake's analysis-ready tables (docs/lake-tables.md)
lake-publish: setup
	$(BIN)/broker lake publish --out $(OUT) $(ARGS)

# Fold each lake folder's per-batch files into one (docs/lake-tables.md, "Compaction")
lake-compact: setup
	$(BIN)/broker lake compact --out $(OUT) $(ARGS)

# Re-resolve the pinned versions (run after changing dependencies in pyproject.toml).
lock:
	rm -rf /tmp/broker-lock-venv && $(PYTHON) -m venv /tmp/broker-lock-venv
	/tmp/broker-lock-venv/bin/pip install --quiet --upgrade pip
	/tmp/broker-lock-venv/bin/pip install --quiet -e '.[test]'
	/tmp/broker-lock-venv/bin/pip freeze --exclude-editable | grep -v '^-e' > constraints.txt

clean:
	rm -rf $(VENV) *.egg-info .pytest_cache .ruff_cache
