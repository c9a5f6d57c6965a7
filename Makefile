# Two commands for a newcomer: `make run` and `make test`. Everything else is set up on demand.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
IDP_STAMP := tests/idp/node_modules/.installed
E2E_STAMP := tests/e2e/node_modules/.installed
TOOLS_STAMP := tests/tools/node_modules/.installed
PORT ?= 8000

.PHONY: run test lint package clean deps browser bench

$(STAMP): requirements.txt requirements-dev.txt
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade "pip<26.3"
	$(PY) -m pip install --quiet -r requirements-dev.txt
	touch $(STAMP)

$(IDP_STAMP): tests/idp/package.json tests/idp/package-lock.json
	cd tests/idp && npm ci --no-audit --no-fund --loglevel=error
	touch $(IDP_STAMP)

$(E2E_STAMP): tests/e2e/package.json tests/e2e/package-lock.json
	cd tests/e2e && npm ci --no-audit --no-fund --loglevel=error
	touch $(E2E_STAMP)

# Auth0's Node tools (node-auth0, the Deploy CLI) that tests/integration drives against the broker
$(TOOLS_STAMP): tests/tools/package.json tests/tools/package-lock.json
	cd tests/tools && npm ci --no-audit --no-fund --loglevel=error
	touch $(TOOLS_STAMP)

deps: $(STAMP) $(IDP_STAMP) $(E2E_STAMP) $(TOOLS_STAMP)

## make browser: headless Chromium for tests/e2e (Debian's chromium package; needs root the first time)
browser:
	bash scripts/install_browser.sh

## make run: the broker on http://127.0.0.1:$(PORT)/ with an embedded AWS endpoint (moto)
## make run HTTPS=1 [BROKER_HOSTNAME=broker.test]: https://127.0.0.1:$(PORT)/ with a local CA (.local/tls/)
run: $(STAMP)
	PORT=$(PORT) $(if $(HTTPS),BROKER_HTTPS=$(HTTPS)) $(PY) scripts/run_local.py

## make test: install what the tests need, lint, run every test
test: deps browser
	$(VENV)/bin/ruff check .
	$(VENV)/bin/mypy chalicelib
	$(VENV)/bin/lint-imports --no-cache
	$(PY) -m pytest -q

## make bench: the benchmark suite; prints figures and writes bench/RESULTS.md
bench: deps
	$(PY) bench/run_all.py

lint: $(STAMP)
	$(VENV)/bin/ruff check .
	$(VENV)/bin/mypy chalicelib
	$(VENV)/bin/lint-imports --no-cache

## make package [STAGE=dev]: $(OUT)/sam.yaml + $(OUT)/deployment.zip for CloudFormation, cfn-lint clean
## (docs/DEPLOY.md). Chalice takes the Lambda runtime from the Python it runs under, and Lambda no
## longer creates or updates python3.11 functions: so it runs here in its own venv on Python
## $(LAMBDA_PYTHON) (found on PATH, under pyenv, or given as PACKAGE_PYTHON=/path/to/python).
package: STAGE ?= dev
package: OUT ?= out
package: LAMBDA_PYTHON ?= 3.13
package: $(STAMP)
	@set -e; pkg=$(VENV)/lambda-python$(LAMBDA_PYTHON); \
	if [ ! -x $$pkg/bin/chalice ] || [ requirements.txt -nt $$pkg/.installed ] \
	    || [ requirements-dev.txt -nt $$pkg/.installed ]; then \
	  py=; pyenv_root=$$(pyenv root 2>/dev/null || echo "$$HOME/.pyenv"); \
	  for c in $(PACKAGE_PYTHON) python$(LAMBDA_PYTHON) $$pyenv_root/versions/$(LAMBDA_PYTHON)*/bin/python$(LAMBDA_PYTHON); do \
	    if "$$c" -c 'import sys; sys.exit(sys.argv[1] != "%d.%d" % sys.version_info[:2])' \
	        $(LAMBDA_PYTHON) >/dev/null 2>&1; then py=$$c; break; fi; \
	  done; \
	  if [ -z "$$py" ]; then \
	    echo "make package: no Python $(LAMBDA_PYTHON) found (the Lambda runtime); set PACKAGE_PYTHON" >&2; \
	    exit 3; \
	  fi; \
	  rm -rf $$pkg && "$$py" -m venv $$pkg; \
	  $$pkg/bin/python -m pip install --quiet --quiet --disable-pip-version-check -r requirements.txt \
	    "$$(grep -E '^chalice==' requirements-dev.txt)"; \
	  touch $$pkg/.installed; \
	fi; \
	rm -rf $(OUT); \
	AWS_DEFAULT_REGION=$${AWS_DEFAULT_REGION:-us-east-1} BROKER_LOGOUT_QUEUE_NAME=broker-$(STAGE)-logout \
	  $$pkg/bin/chalice package --stage $(STAGE) --merge-template infra/resources.yaml $(OUT); \
	$(PY) scripts/fix_package.py $(OUT)/sam.yaml; \
	$(VENV)/bin/cfn-lint $(OUT)/sam.yaml; \
	echo "make package: $(OUT)/sam.yaml and $(OUT)/deployment.zip for stage $(STAGE), cfn-lint clean"

clean:
	rm -rf $(VENV) tests/idp/node_modules out .pytest_cache
