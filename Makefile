# tfship: `make export TARGET=<target|all> [MODEL=<name ...>]` and `make test` are all the set-up there is:
# the first use creates .venv and installs everything from pyproject.toml.

PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed
TARGET ?= all
MODEL  ?=
ARTIFACTS ?= artifacts
JOBS   ?= 1
FORCE  ?=
RANDOM ?=

MODEL_ARGS  := $(foreach m,$(MODEL),--model $(m))
TARGET_ARGS := $(foreach t,$(TARGET),--target $(t))

.PHONY: export validate test test-heavy test-all test-weekly clean install targets release bench bench-scale bench-noop calibrate-budgets corpus

VERSION ?=
BATCH   ?= 32
THREADS ?=
BENCH_SECONDS ?= 2

install: $(STAMP)

$(STAMP): pyproject.toml
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	# compat: the package folders go on sys.path like any checkout, so a folder named like
	# a package elsewhere on PYTHONPATH (tests/targets) cannot shadow it.
	$(BIN)/python -m pip install --quiet --disable-pip-version-check -e '.[all,test]' --config-settings editable_mode=compat
	@touch $(STAMP)

export: $(STAMP)
	$(BIN)/tfship export $(MODEL_ARGS) $(TARGET_ARGS) --artifacts $(ARTIFACTS) -j $(JOBS) $(if $(FORCE),--force)

validate: $(STAMP)
	$(BIN)/tfship validate $(MODEL_ARGS) --artifacts $(ARTIFACTS)

targets: $(STAMP)
	@$(BIN)/tfship targets

bench: $(STAMP)
	$(BIN)/tfship bench $(MODEL_ARGS) $(TARGET_ARGS) --artifacts $(ARTIFACTS) --batch $(BATCH) --max-seconds $(BENCH_SECONDS) $(if $(THREADS),--threads $(THREADS))

# How export time and memory grow with model size (5, 50, 553 MB and 2.5 GB when the
# memory is free), next to the raw converter calls; a benchmark, not a test.
SCALE_SIZES ?= 5 50 553 2500
bench-scale: $(STAMP)
	$(BIN)/python -m examples.bench_scale --sizes $(SCALE_SIZES)

# What a no-op re-run costs per kind of model source (file, SavedModel, factory, live); a benchmark.
bench-noop: $(STAMP)
	$(BIN)/python -m examples.bench_noop

release: $(STAMP)
	$(BIN)/tfship release $(MODEL_ARGS) --artifacts $(ARTIFACTS) $(if $(VERSION),--version $(VERSION))

# The fast tier: the inner loop (under 15 minutes on 2 cores).
test: $(STAMP)
	$(BIN)/python -m pytest -q -p no:cacheprovider -m "not heavy and not weekly" tests

# The heavy tier alone: fault runs, real-model budgets, corpora, the installed wheel.
test-heavy: $(STAMP)
	$(BIN)/python -m pytest -q -p no:cacheprovider -m "heavy and not weekly" tests

# Both tiers under coverage, each one's time and the coverage at the end; what CI runs (.ci/run).
# The tests marked weekly are named, not run.
test-all: $(STAMP)
	@bash .ci/test-all

# The tests too long for CI (.github/workflows/weekly.yml).
test-weekly: $(STAMP)
	$(BIN)/python -m pytest -q -p no:cacheprovider -rs -m weekly tests

# Every corpus model (configs/corpus/) trained (or loaded from examples/build/trained/ when its code and data
# did not change), exported on every target, the held-out task figure of every artifact, then docs/corpus.md;
# MODEL=... for a subset; RANDOM=1 exports the random-weight appendix (configs/corpus/random/) again.
corpus: $(STAMP)
	$(BIN)/python -m examples.corpus --artifacts $(ARTIFACTS)/corpus -j $(JOBS) $(MODEL_ARGS) $(if $(FORCE),--force) $(if $(RANDOM),--random)

# The default parity budgets measured on the calibration corpus: per precision class,
# acceptable artifacts vs seeded breakages x pass / fail (examples/calibrate_budgets.py).
# The first run trains the corpus on scikit-learn's digits and converts every artifact (the stock float32 set
# reuses the corpus applications' trained weights); later runs reuse them.
calibrate-budgets: $(STAMP)
	$(BIN)/python -m examples.calibrate_budgets $(if $(FORCE),--force)

clean:
	find $(ARTIFACTS) -mindepth 1 -maxdepth 1 ! -name .gitignore -exec rm -rf {} +
