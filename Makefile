# Two commands for a newcomer: `make run` and `make test`. Everything else is set up on demand.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
IDP_STAMP := tests/idp/node_modules/.installed
PORT ?= 8000

.PHONY: run test lint package clean deps browser

$(STAMP): requirements.txt requirements-dev.txt
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -r requirements-dev.txt
	touch $(STAMP)

$(IDP_STAMP): tests/idp/package.json tests/idp/package-lock.json
	cd tests/idp && npm ci --no-audit --no-fund --loglevel=error
	touch $(IDP_STAMP)

deps: $(STAMP) $(IDP_STAMP)

## make run: the broker on http://127.0.0.1:$(PORT)/ with an embedded AWS endpoint (moto)
run: $(STAMP)
	PORT=$(PORT) $(PY) scripts/run_local.py

## make test: install what the tests need, lint, run every test
test: deps
	$(VENV)/bin/ruff check .
	$(PY) -m pytest -q

lint: $(STAMP)
	$(VENV)/bin/ruff check .

## make package: the CloudFormation template and zip that `chalice package` builds
package: $(STAMP)
	rm -rf out && $(VENV)/bin/chalice package --stage dev --merge-template infra/resources.yaml out

clean:
	rm -rf $(VENV) tests/idp/node_modules out .pytest_cache
