# Two commands do all set-up on a fresh machine:
#   make demo   # venv, installs, a synthetic submission, the demo collection's DAG through Airflow, a summary
#   make test   # venv, installs, system packages, lint, type checks, the whole test suite (with a
#               # PostgreSQL and a Redis: scripts/test_services.py starts throwaway ones if none answers)
SHELL := /bin/bash
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
# Debian packages the demo's stages use: Tesseract (OCR screening of burned-in text), OpenSlide
# (slide verification), DejaVu Sans (the synthetic scanned document's text).
DEMO_APT_PACKAGES := tesseract-ocr libopenslide0 fonts-dejavu-core
# ...and those only the tests use (dciodvfy, sshd, the browser, compose validation, Prometheus and
# promtool). PostgreSQL and Redis are installed by scripts/test_services.py when it has to start them.
TEST_APT_PACKAGES := dicom3tools dcmtk openssh-server chromium chromium-driver docker-compose unzip prometheus \
                     orthanc orthanc-dicomweb
APT_PACKAGES := $(DEMO_APT_PACKAGES) $(TEST_APT_PACKAGES)
# Markers make unit leaves out: runs through Airflow, fault injection, the API server, and every test
# that needs a tool or service outside Python (tests/conftest.py marks those `system`).
UNIT_DESELECT := not e2e and not faults and not api and not system
PYTEST_ARGS ?=
# The browser tests drive Debian's chromium (APT_PACKAGES); playwright never downloads a browser.
export PLAYWRIGHT_SKIP_BROWSER_DOWNLOAD := 1

.PHONY: demo test venv system-deps system-deps-demo lint typecheck unit e2e bench-pipeline serve viewer bench-api bench-dicomweb bench-catalog bench-pixels bench-load bench-load-stages bench-deid bench-mirror bench-freetext bench-docs clean airflow-ui docs-screenshots compose-config

venv: $(STAMP)

$(STAMP): requirements.txt constraints.txt pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --disable-pip-version-check --upgrade pip
	$(PY) -m pip install -q --disable-pip-version-check -r requirements.txt -c constraints.txt
	$(PY) -m pip install -q --disable-pip-version-check --no-deps -e .
	touch $@

# Install the Debian packages of $(1) that are missing; apt's chatter goes to a log shown only on failure.
define apt_install
	@missing=""; for p in $(1); do dpkg -s $$p >/dev/null 2>&1 || missing="$$missing $$p"; done; \
	if [ -n "$$missing" ]; then \
	  echo "installing Debian packages:$$missing"; \
	  SUDO=$$( [ "$$(id -u)" = 0 ] || echo sudo ); log=$$(mktemp); \
	  { $$SUDO apt-get update -qq && DEBIAN_FRONTEND=noninteractive $$SUDO apt-get install -y -qq $$missing; } \
	    >"$$log" 2>&1 || { cat "$$log"; rm -f "$$log"; exit 1; }; rm -f "$$log"; \
	fi
endef

system-deps:
	$(call apt_install,$(APT_PACKAGES))

system-deps-demo:
	$(call apt_install,$(DEMO_APT_PACKAGES))

demo: venv system-deps-demo
	$(PY) scripts/demo.py

lint: venv
	$(VENV)/bin/ruff check .

typecheck: venv
	$(VENV)/bin/mypy

test: venv system-deps viewer lint typecheck
	$(PY) scripts/test_services.py -- $(PY) -m pytest $(PYTEST_ARGS)

unit: venv
	$(PY) -m pytest -m "$(UNIT_DESELECT)" $(PYTEST_ARGS)

e2e: venv
	$(PY) -m pytest -m e2e $(PYTEST_ARGS)

bench-pipeline: venv
	$(PY) bench/pipeline/run.py

# The NBIA-compatible API over the demo archive, in the foreground (ingests the demo data first if needed).
API_HOST ?= 127.0.0.1
API_PORT ?= 8088
VIEWER_PORT ?= 8089
serve: venv viewer
	$(PY) scripts/serve_demo.py --host $(API_HOST) --port $(API_PORT) --viewer-port $(VIEWER_PORT)

# The OHIF viewer v3: the npm package @ohif/app ships a ready build in dist/. npm pack fetches just that
# package (checked against the registry's integrity hash); npm install would also pull its 39 build-time
# dependencies, which the ready build does not need. Unpacked to .viewer/ohif (ignored by git).
OHIF_VERSION := 3.13.2
VIEWER_DIR := .viewer
viewer: $(VIEWER_DIR)/ohif/index.html
$(VIEWER_DIR)/ohif/index.html:
	mkdir -p $(VIEWER_DIR)/unpack
	cd $(VIEWER_DIR) && npm pack --silent @ohif/app@$(OHIF_VERSION)
	tar -xzf $(VIEWER_DIR)/ohif-app-$(OHIF_VERSION).tgz -C $(VIEWER_DIR)/unpack package/dist
	rm -rf $(VIEWER_DIR)/ohif && mv $(VIEWER_DIR)/unpack/package/dist $(VIEWER_DIR)/ohif
	rm -rf $(VIEWER_DIR)/unpack $(VIEWER_DIR)/ohif-app-$(OHIF_VERSION).tgz

bench-api: venv
	$(PY) bench/api/run.py

# Our DICOMweb against Orthanc's (Debian orthanc + orthanc-dicomweb), same 20,000 files: bench/results/api-dicomweb.json.
bench-dicomweb: venv
	$(PY) bench/api/dicomweb.py

# Catalog queries at archive scale on PostgreSQL (sizes: BENCH_COLLECTIONS, BENCH_PATIENTS, BENCH_INSTANCES).
bench-catalog: venv
	$(PY) bench/catalog/run.py

# Screening throughput (with and without OCR) and 1 GB slide de-identification time and peak RSS.
bench-pixels: venv system-deps
	$(PY) bench/pixels/run.py

# 2,000 generated files through the DAG and the CLI, 3 runs each (LOAD_SIZES, LOAD_RUNS, LOAD_ROWS): bench/results/load.json
bench-load: venv
	$(PY) bench/load/run.py

bench-load-stages: venv
	$(PY) bench/load/stages.py

clean:
	rm -rf .demo .imaging-ingest .pytest_cache .mypy_cache .ruff_cache

# The real Airflow UI on the embedded setup (foreground; Ctrl-C stops): http://127.0.0.1:8080, admin/admin.
airflow-ui: venv
	scripts/airflow_ui.sh

# De-identification benchmark (not part of make test): 2,000-file corpus, floors, engine, CLI, peers, peak RSS.
bench-deid: venv
	$(PY) bench/deid/run.py

# Mirror and download MB/s against the plain-copy floor (two moto servers): bench/results/mirror.json
bench-mirror: venv
	$(PY) bench/mirror/run.py

# Free-text PHI detector: recall per kind, clinical words kept, values/s on the labelled set: bench/results/freetext.json
bench-freetext: venv
	$(PY) bench/freetext/run.py

# The docs' benchmark tables, regenerated from bench/results/*.json (tests/test_bench_results.py checks them)
bench-docs: venv
	$(PY) bench/docs_tables.py

# Refresh the screenshots in docs/img/ from the browser test (the same run as in `make test`).
docs-screenshots: venv system-deps
	UPDATE_DOC_SCREENSHOTS=1 $(PY) -m pytest tests/ops/test_ui.py -m browser $(PYTEST_ARGS)

# Validate the production stack's compose file with the example environment.
compose-config: system-deps
	docker-compose --env-file .env.example -f docker-compose.yaml config -q
