# Two commands do all set-up on a fresh machine:
#   make demo   # venv, installs, a synthetic submission, the demo collection's DAG through Airflow, a summary
#   make test   # venv, installs, system packages, lint, type checks, the whole test suite
SHELL := /bin/bash
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
APT_PACKAGES := dicom3tools dcmtk openssh-server tesseract-ocr libopenslide0 fonts-dejavu-core \
                chromium chromium-driver docker-compose
PYTEST_ARGS ?=
# The browser tests drive Debian's chromium (APT_PACKAGES); playwright never downloads a browser.
export PLAYWRIGHT_SKIP_BROWSER_DOWNLOAD := 1

.PHONY: demo test venv system-deps lint typecheck unit e2e bench-pipeline clean docs-screenshots compose-config

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

clean:
	rm -rf .demo .imaging-ingest .pytest_cache .mypy_cache .ruff_cache

# Refresh the screenshots in docs/img/ from the browser test (the same run as in `make test`).
docs-screenshots: venv system-deps
	UPDATE_DOC_SCREENSHOTS=1 $(PY) -m pytest tests/ops/test_ui.py -m browser $(PYTEST_ARGS)

# Validate the production stack's compose file with the example environment.
compose-config: system-deps
	docker-compose --env-file .env.example -f docker-compose.yaml config -q
