# cacpipe — the two README commands are `make demo` and `make test`.
PY      ?= python3
VENV    := .venv
BIN     := $(VENV)/bin
STAMP   := $(VENV)/.installed
# Every extra: the wings (phantom, evaluation, train) and the test tools.
EXTRAS  := phantom,evaluation,train,test
PIP     := $(BIN)/python -m pip
OUT     ?= demo_out
CHROMIUM ?= /usr/bin/chromium

.PHONY: install demo test test-quick lint wheel-check bench train demo-model accuracy clean chromium dcm2niix viewer dicom3tools

$(STAMP): pyproject.toml constraints.txt
	test -x $(BIN)/python || $(PY) -m venv $(VENV)
	$(PIP) install -q --upgrade pip
	# torch first, pinned: the local CPU wheel. Everything after keeps the pin as a constraint.
	$(PIP) install -q torch==2.13.0
	$(PIP) install -q -c constraints.txt -e '.[$(EXTRAS)]'
	touch $(STAMP)

install: $(STAMP) viewer

demo: $(STAMP)
	$(BIN)/cacpipe demo $(OUT)

# Headless Chromium for the review-page tests (Debian package; tests skip without it).
# Debian tools some targets need (installed once, as root or via sudo): $(call apt_ensure,BINARY,PACKAGE,WHY)
define apt_ensure
	@test -x $(1) || { \
	  echo "installing $(2) for $(3)"; \
	  SUDO=$$( [ "$$(id -u)" = 0 ] || echo sudo ); \
	  $$SUDO env DEBIAN_FRONTEND=noninteractive apt-get update -q && \
	  $$SUDO env DEBIAN_FRONTEND=noninteractive apt-get install -y -q $(2) || \
	  echo "warning: could not install $(2); $(3) will be skipped"; }
endef

chromium:
	$(call apt_ensure,$(CHROMIUM),chromium,the review-page browser tests)

dicom3tools:
	$(call apt_ensure,/usr/bin/dciodvfy,dicom3tools,the DICOM SEG/SR validator tests)

dcm2niix:
	$(call apt_ensure,/usr/bin/dcm2niix,dcm2niix,the ingestion comparison in make bench)

# The NiiVue viewer bundled into review pages (pinned in devtools/viewer/package-lock.json; nothing
# is fetched when a page opens). Without npm the pages use their basic canvas viewer.
VIEWER_JS := cacpipe/review/static/vendor/niivue.umd.js
viewer: $(VIEWER_JS)

$(VIEWER_JS): devtools/viewer/package.json devtools/viewer/package-lock.json devtools/viewer/install.py
	@if command -v npm >/dev/null 2>&1; then \
	  mkdir -p build/viewer && cp devtools/viewer/package.json devtools/viewer/package-lock.json build/viewer/ && \
	  (cd build/viewer && npm ci --no-audit --no-fund --ignore-scripts --loglevel=error) && \
	  $(PY) devtools/viewer/install.py build/viewer/node_modules cacpipe/review/static/vendor; \
	else echo "warning: npm not found: review pages will use the basic viewer (install Node.js and npm, then make viewer)"; fi

# The whole suite: the lint (ruff, import contracts) first, then every test. Two workers, each
# test module on one of them (loadscope): a module's fixtures (a trained tiny model, the scanned
# demo export) are built once, not once per worker as when its tests are spread over both.
test: lint chromium viewer dicom3tools
	$(BIN)/python -m pytest -n 2 --dist loadscope --durations=12

# The quick tier: no whole-scan end-to-end runs, no browser, no training (markers in pyproject.toml).
test-quick: $(STAMP)
	$(BIN)/python -m pytest -n 2 --dist loadscope -m "not slow and not browser and not train"

# Style (ruff) and the import contracts of pyproject.toml [tool.importlinter] (docs/ARCHITECTURE.md).
lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/lint-imports --no-cache

bench: $(STAMP) dcm2niix
	$(BIN)/python -m devtools.bench $(BENCH_ARGS)

# The wheel in a clean venv (no Makefile, no checkout): core-only install loads no wing and demo names
# its extra; with cacpipe[phantom,evaluation] `cacpipe demo` runs end to end (devtools/wheel_check.sh).
wheel-check:
	devtools/wheel_check.sh $(PY) build/wheel-check

clean:
	rm -rf $(VENV) demo_out build *.egg-info cacpipe/review/static/vendor

# Stage-2 retraining (nnunet_plans/README.md, README "For real use"):
#   make train DATA=ANNOTATIONS [DATA="ANNOTATIONS corrected_cases/"] [DRY_RUN=1] [SKIP_FAILED=1] [INIT=MODEL.zip]
#              [PLAN=paper] [FOLDS="0 1 2 3 4"] [SPLITS=5] [GPUS="0 1 2 3 4"] [EPOCHS=N] [MAPPING=mapping.json]
#              [SLICE_ORDER=forward|reversed] [SETTINGS=settings.json] [WORK=nnunet_work] [MODEL=cacpipe_model.zip]
#              [TRAIN_ARGS="--dataset-id 502 --name mysite"]
DATA    ?=
FOLDS   ?=
SPLITS  ?=
GPUS    ?=
PLAN    ?= paper
WORK    ?= nnunet_work
MODEL   ?= cacpipe_model.zip
INIT    ?=
EPOCHS  ?=
MAPPING ?=
SLICE_ORDER ?= forward
SETTINGS ?=
DRY_RUN ?=
SKIP_FAILED ?=
TRAIN_ARGS ?=
train: $(STAMP)
	@test -n "$(DATA)" || { echo "usage: make train DATA=ANNOTATIONS [DRY_RUN=1] [SKIP_FAILED=1] [INIT=MODEL.zip] [GPUS='0 1'] (see README, For real use)"; exit 2; }
	$(BIN)/python -m nnunet_plans.train --data $(DATA) --plan $(PLAN) --work $(WORK) --out $(MODEL) \
		--slice-order $(SLICE_ORDER) $(if $(FOLDS),--folds $(FOLDS),) $(if $(SPLITS),--n-splits $(SPLITS),) \
		$(if $(GPUS),--gpus $(GPUS),) $(if $(INIT),--init $(INIT),) $(if $(EPOCHS),--epochs $(EPOCHS),) \
		$(if $(MAPPING),--mapping $(MAPPING),) $(if $(SETTINGS),--settings $(SETTINGS),) \
		$(if $(DRY_RUN),--dry-run,) $(if $(SKIP_FAILED),--skip-failed,) $(TRAIN_ARGS)

# The phantom-trained demo model shipped in cacpipe/data (NOT FOR CLINICAL USE; see cacpipe/data/DEMO_MODEL.md).
# Lateral-safe trainer, stage-1 crops of 24 v1 + 24 v2 training phantoms, the plan's 2 folds x 4000 steps
# (34 min on 2 cores: --gpus 0 1 runs the two folds in parallel, one core each on a CPU machine). DEMO_INIT: a model zip whose weights start each fold (fine-tuning, DEMO_MODEL.md).
DEMO_INIT ?=
demo-model: $(STAMP)
	rm -rf build/demo_model_work
	OMP_NUM_THREADS=1 nnUNet_n_proc_DA=0 nnUNet_def_n_proc=1 $(BIN)/python -m nnunet_plans.train --phantoms 24 \
		--phantoms-v2 24 --plan demo --gpus 0 1 --no-crossval $(if $(DEMO_INIT),--init $(DEMO_INIT),) \
		--work build/demo_model_work --dataset-id 990 --name cacpipe_phantom_demo --num-processes 1 \
		--out cacpipe/data/demo_model.zip

# Accuracy benchmark (nnunet_plans/accuracy.py): held-out phantom patients through `cacpipe scan`,
# per-artery detection, Agatston error, risk category and attribution against the truth.
ACCURACY_ARGS ?=
accuracy: $(STAMP)
	$(BIN)/python -m nnunet_plans.accuracy $(ACCURACY_ARGS)
