# Two commands do all set-up on a fresh machine:
#   make demo   # venv, installs, a synthetic submission, the demo collection's DAG through Airflow, a summary
#   make test   # venv, installs, system packages, lint, type checks, the whole test suite
SHELL := /bin/bash
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
APT_PACKAGES := dicom3tools dcmtk openssh-server tesseract-ocr libopenslide0 fonts-dejavu-core \
                chromium chromium-driver docker-compose unzip
PYTEST_ARGS ?=
# The browser tests drive Debian's chromium (APT_PACKAGES); playwright never downloads a browser.
export PLAYWRIGHT_SKIP_BROWSER_DOWNLOAD := 1

.PHONY: demo test venv system-deps lint typecheck unit e2e bench-pipeline serve bench-api bench-catalog bench-pixels bench-load bench-load-stages bench-deid clean airflow-ui docs-screenshots compose-config

venv: $(STAMP)

$(STAMP): requirements.txt constraints.txt pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --disable-pip-version-check --upgrade pip
	$(PY) -m pip install -q --disable-pip-version-check -r requirements.txt -c constraints.txt
	$(PY) -m pip install -q --disable-pip-version-check --no-deps -e .
	touch $@

# Debian packages the tests use (dciodvfy, sshd, tesseract, openslide, chromium, docker-compose).
system-deps:
	@missing=""; for p in $(APT_PACKAGES); do dpkg -s $$p >/dev/null 2>&1 || missing="$$missing $$p"; done; \
	if [ -n "$$missing" ]; then \
	  echo "installing:$$missing"; \
	  SUDO=$$( [ "$$(id -u)" = 0 ] || echo sudo ); \
	  $$SUDO apt-get update -qq && DEBIAN_FRONTEND=noninteractive $$SUDO apt-get install -y -qq $$missing >/dev/null; \
	fi

demo: venv
	$(PY) scripts/demo.py

lint: venv
	$(VENV)/bin/ruff check .

typecheck: venv
	$(VENV)/bin/mypy

test: venv system-deps lint typecheck
	$(PY) -m pytest $(PYTEST_ARGS)

unit: venv
	$(PY) -m pytest -m "not e2e and not postgres and not sftp and not faults and not ocr and not browser and not celery and not api" $(PYTEST_ARGS)

e2e: venv
	$(PY) -m pytest -m e2e $(PYTEST_ARGS)

bench-pipeline: venv
	$(PY) bench/pipeline/run.py

# The NBIA-compatible API over the demo archive, in the foreground (ingests the demo data first if needed).
API_HOST ?= 127.0.0.1
API_PORT ?= 8088
serve: venv
	$(PY) scripts/serve_demo.py --host $(API_HOST) --port $(API_PORT)

bench-api: venv
	$(PY) bench/api/run.py

# Catalog queries at archive scale on PostgreSQL (sizes: BENCH_COLLECTIONS, BENCH_PATIENTS, BENCH_INSTANCES).
bench-catalog: venv
	$(PY) bench/catalog/run.py

# Screening throughput (with and without OCR) and 1 GB slide de-identification time and peak RSS.
bench-pixels: venv system-deps
	$(PY) bench/pixels/run.py

# 20,000 generated files through the DAG (LOAD_FILES, LOAD_SIZES, LOAD_ROWS to change): bench/results/load.json
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

# Refresh the screenshots in docs/img/ from the browser test (the same run as in `make test`).
docs-screenshots: venv system-deps
	UPDATE_DOC_SCREENSHOTS=1 $(PY) -m pytest tests/ops/test_ui.py -m browser $(PYTEST_ARGS)

# Validate the production stack's compose file with the example environment.
compose-config: system-deps
	docker-compose --env-file .env.example -f docker-compose.yaml config -q
