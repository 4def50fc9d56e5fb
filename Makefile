# The README's two commands: `make demo` (main job) and `make test` (the tests).
# Both install what is missing: a Python 3.11 virtualenv with the project, the Kafka
# broker jars (Maven Central, cached under .cache/), and Debian tools the tests use.
PY ?= python3.11
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
# @asyncapi/cli (checks topics/asyncapi.yaml in make test), project-local, pinned; 4.1.1 is the
# newest release whose engines accept the machine's Node.js 20
ASYNCAPI_CLI := 4.1.1
ASYNCAPI_STAMP := .cache/npm/.asyncapi-cli-$(ASYNCAPI_CLI)

.PHONY: install sysdeps tools demo report test lint typecheck unit integration bench bench-latency bench-replay bench-scaleout bench-million chaos chaos-quick kafka clean

$(STAMP): pyproject.toml
	$(PY) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q -e '.[test]'
	touch $(STAMP)

install: $(STAMP)

sysdeps:
	@bash deploy/install-system-deps.sh

$(ASYNCAPI_STAMP):
	npm install --prefix .cache/npm --no-audit --no-fund --omit=optional --loglevel=error \
		@asyncapi/cli@$(ASYNCAPI_CLI)
	touch $@

# every external checker the deploy tests run (tests/support/tools.py)
tools: sysdeps $(ASYNCAPI_STAMP)

demo: install
	$(BIN)/nurture demo

# A full pipeline report from simulated traffic: 2,000 leads and 70 customer accounts over 90 days,
# replayed through the lead and account cores.
report: install
	$(BIN)/nurture simulate --leads 2000 --days 90 --seed 1 --customers 70 --out out/sim-events.jsonl
	$(BIN)/nurture replay out/sim-events.jsonl --out out/replay
	@echo "open out/replay/report.html in a browser"

lint: install
	$(BIN)/ruff check stream topics tests deploy
	$(BIN)/ruff format --check stream topics tests deploy

typecheck: install
	$(BIN)/mypy

unit: install
	$(BIN)/pytest tests/unit -q

integration: install sysdeps
	$(BIN)/pytest tests/integration tests/reliability -q

# NURTURE_REQUIRE_TOOLS=1: a missing checker (asyncapi, kubectl, docker-compose) fails, never skips
test: install tools lint typecheck
	NURTURE_REQUIRE_TOOLS=1 $(BIN)/pytest -q

bench: install
	$(BIN)/pip install -q -e '.[test,bench]'
	$(BIN)/pytest tests/bench -q -s -m bench -p no:cacheprovider --ignore=tests/bench/test_bench_million.py

# Latency against input rate (on demand, ~1 minute a rate): the paced half of the worker bench
# after a small backlog, at each rate of NURTURE_BENCH_LATENCY_RATES on one broker (each on fresh
# topics), then one table; a first, unreported run at 1,000/s warms the broker's JIT up. Settings
# come from the environment, e.g. NURTURE_FETCH_MIN_BYTES=1; NURTURE_KAFKA_DATA_ROOT=/dev/shm puts the
# broker's log on tmpfs (on a shared VM disk its produce requests stall for up to ~1 s)
NURTURE_BENCH_LATENCY_RATES ?= 5,300,1000,2458,4300
bench-latency: install
	$(BIN)/pip install -q -e '.[test,bench]'
	NURTURE_BENCH_LATENCY_RATES=$(NURTURE_BENCH_LATENCY_RATES) \
	NURTURE_BENCH_LATENCY_WARMUP_RATE=$${NURTURE_BENCH_LATENCY_WARMUP_RATE:-1000} $(BIN)/pytest \
		tests/bench/test_bench_worker.py -k test_bench_worker_latency -q -s -m bench -p no:cacheprovider

# The replay benchmark alone: events per CPU-second and --jobs 2 speed-up on 100k leads, then
# peak RSS of a 1M-lead / ~7M-event replay (the file is generated, ~1.6 GB in the temp dir)
bench-replay: install
	$(BIN)/pip install -q -e '.[test,bench]'
	$(BIN)/pytest tests/bench/test_bench_replay.py -q -s -m bench -p no:cacheprovider

# Two workers against one (part of make bench): ~109k simulated events, 12 partitions, one
# group of 1 then 2 worker processes on fresh topics; prints events/s of each and the ratio
bench-scaleout: install
	$(BIN)/pip install -q -e '.[test,bench]'
	$(BIN)/pytest tests/bench/test_bench_scaleout.py -q -s -m bench -p no:cacheprovider

# One worker at 1M leads (long: the ingest alone is ~11 worker CPU-minutes): its RSS, the recovery of a fresh worker from the changelog
# (and a standby takeover if that exceeds 60 s), timer lag with 1M pending timers under load.
# Smaller: NURTURE_BENCH_MILLION_LEADS=20000 make bench-million
bench-million: install
	$(BIN)/pytest tests/bench/test_bench_million.py -q -s -m bench -p no:cacheprovider

# On demand, not in make test: ~200k events through worker + sender under 20 SIGKILLs, the kill
# of one of two workers and a broker restart; mail received must equal the oracle's sends.
# Smaller: NURTURE_CHAOS_LEADS=3000 NURTURE_CHAOS_KILLS=5 make chaos
chaos: install
	$(BIN)/pytest tests/chaos -q -s -m chaos -p no:cacheprovider --timeout 7200

# the same run at 3,000 leads (~20k events) and 4 kills (a few minutes)
chaos-quick: install
	NURTURE_CHAOS_LEADS=3000 NURTURE_CHAOS_KILLS=4 $(BIN)/pytest tests/chaos -q -s -m chaos \
		-p no:cacheprovider --timeout 3600

kafka: install
	$(BIN)/nurture kafka

clean:
	rm -rf $(VENV) .cache .pytest_cache .mypy_cache .ruff_cache .hypothesis
