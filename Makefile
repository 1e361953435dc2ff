# Two entry points on a fresh machine: `make demo` and `make test`.
# Both create (or reuse) .venv and install detforge with the pinned torch build. The demo gets the
# runtime dependencies only; the tests add the dev tools and the reference implementations
# (Ultralytics, AGPL; the official YOLOv7 code, GPL), which src/ never imports.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
RUNTIME := $(VENV)/.installed-runtime
DEV := $(VENV)/.installed-dev
TORCH := torch==2.14.1 torchvision==0.29.1

.PHONY: demo test lint fuzz bench bench-accuracy install clean

$(RUNTIME): pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q $(TORCH) -e .
	touch $(RUNTIME)

# yolov7detect pins old protobuf/tensorboard versions it does not need to build models: --no-deps,
# with what its model code imports listed in the dev extra.
$(DEV): $(RUNTIME)
	$(PY) -m pip install -q $(TORCH) -e '.[dev,export]'
	$(PY) -m pip install -q --no-deps yolov7detect==1.0.1
	touch $(DEV)

install: $(DEV)

demo: $(RUNTIME)
	$(VENV)/bin/detforge demo

test: $(DEV)
	$(PY) -m pytest -n 2 --durations=15

# Every side-by-side benchmark, then docs/benchmarks.md regenerated from their figures (~45 min on 2 cores;
# run it on a quiet machine: figures taken under load are flagged on the page). The page is written from
# every figure file present, so the accuracy race's table stays on it.
BENCH_OUT := .bench
BENCH_FIGURES := $(addprefix $(BENCH_OUT)/,loader.json mosaic.json train.json train_profile.json predict.json \
	converted.json deploy.json accuracy.json)
bench: $(DEV)
	mkdir -p $(BENCH_OUT)
	$(PY) bench/data_throughput.py --json $(BENCH_OUT)/loader.json
	$(PY) bench/train_throughput.py --threads 2 0 --json $(BENCH_OUT)/train.json
	$(PY) bench/train_profile.py --json $(BENCH_OUT)/train_profile.json
	$(PY) bench/mosaic_diversity.py --json $(BENCH_OUT)/mosaic.json
	$(PY) bench/predict_throughput.py --threads 1 2 --json $(BENCH_OUT)/predict.json
	$(PY) bench/converted_agreement.py --json $(BENCH_OUT)/converted.json
	$(PY) bench/deploy_latency.py --threads 2 --json $(BENCH_OUT)/deploy.json
	$(PY) bench/report.py $(BENCH_FIGURES)

# The accuracy race: yolov8n from scratch, both frameworks in float32 plus detforge's CPU default (bf16
# autocast, where the CPU has it), 3 seeds, BCCD and a generated shapes set (~2.5 h on 2 cores);
# each finished run is kept in .bench/accuracy-runs, so an interrupted race resumes where it stopped;
# QUICK=1 for a 3-epoch, one-seed smoke run. Its table joins docs/benchmarks.md.
bench-accuracy: $(DEV)
	mkdir -p $(BENCH_OUT)
	$(PY) bench/accuracy_race.py --bf16 $(if $(QUICK),--quick,--runs $(BENCH_OUT)/accuracy-runs) --json $(BENCH_OUT)/accuracy.json
	$(PY) bench/report.py $(BENCH_FIGURES)

# The security fuzzers (tests/security) with a long budget shared out among them; `make test` runs them briefly.
FUZZ_SECONDS ?= 600
fuzz: $(DEV)
	DETFORGE_FUZZ_SECONDS=$(FUZZ_SECONDS) $(PY) -m pytest tests/security -p no:cacheprovider -q --durations=10

lint: $(DEV)
	$(VENV)/bin/ruff check src tests bench

clean:
	rm -rf $(VENV) .pytest_cache runs .demo
