# Every target bootstraps .venv on first use, so a fresh machine needs only
# Python 3.11+ (and redis-server for the integration tests).
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
SERVER_STAMP := $(VENV)/.installed-server
HOST ?= 127.0.0.1
PORT ?= 8080

.PHONY: run test lint typecheck bench openapi demo soak clean

# `make run` and `make demo` install only what serving needs (the `server` extra);
# every other target installs the test and dev tools on top.
$(SERVER_STAMP): pyproject.toml
	@$(PYTHON) -c 'import sys; sys.exit(sys.version_info < (3, 11))' || \
		{ echo "ticketd needs Python 3.11 or newer (PYTHON=$(PYTHON))"; exit 1; }
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[server]'
	@touch $(SERVER_STAMP)

$(STAMP): $(SERVER_STAMP)
	$(BIN)/python -m pip install --quiet -e '.[server,test,dev]'
	@touch $(STAMP)

# The Node package (node/): installed exactly from its lockfile, again when it changes.
NODE_STAMP := node/node_modules/.installed

$(NODE_STAMP): node/package.json node/package-lock.json
	@command -v node >/dev/null || { echo "the Node package needs Node.js >= 20 (apt-get install nodejs npm)"; exit 1; }
	@node -e 'process.exit(Number(process.versions.node.split(".")[0]) < 20 ? 1 : 0)' || \
		{ echo "the Node package needs Node.js >= 20, found $$(node --version)"; exit 1; }
	cd node && npm ci --no-audit --no-fund --loglevel=error
	@touch $(NODE_STAMP)

# Ctrl+C stops the server cleanly: exit status 130, which is not a failure here.
run: $(SERVER_STAMP)
	$(BIN)/ticketd serve --dev --host $(HOST) --port $(PORT) || test $$? -eq 130

# COVERAGE_FILE is absolute: subprocesses started in temporary directories write there too.
test: $(STAMP) $(NODE_STAMP)
	rm -f .coverage .coverage.*
	COVERAGE_FILE=$(CURDIR)/.coverage $(BIN)/python -m pytest --cov --cov-branch --cov-report=term $(PYTEST_ARGS)
	cd node && npm test

lint: $(STAMP) $(NODE_STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	cd node && npm run lint

typecheck: $(STAMP)
	$(BIN)/mypy

openapi: $(STAMP)
	$(BIN)/python -m ticketd.service.openapi > openapi/openapi.json

bench: $(STAMP) $(NODE_STAMP)
	$(BIN)/python -m bench

soak: $(STAMP)
	$(BIN)/python -m tests.soak $(SOAK_ARGS)

demo: $(SERVER_STAMP)
	$(BIN)/ticketd demo --dev --host $(HOST) --port $(PORT) || test $$? -eq 130

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache .coverage htmlcov node/node_modules

# Container image (deploy/Dockerfile) with docker or podman, whichever is installed
# (podman when both are: it needs no daemon). No image is published: push your own
# build (deploy/README.md). BASE_IMAGE overrides the Dockerfile's pinned Python base.
IMAGE ?= ticketd:dev
BASE_IMAGE ?=
CONTAINER_ENGINE ?= $(shell command -v podman >/dev/null 2>&1 && echo podman || echo docker)
RUNC := $(shell command -v runc 2>/dev/null)
# Debian's podman on cgroup v1 hosts: runc (crun refuses them) and cgroupfs.
PODMAN_FLAGS ?= $(if $(RUNC),--runtime $(RUNC)) --cgroup-manager=cgroupfs
# --format docker keeps HEALTHCHECK (OCI images drop it); the fixed ulimits are
# what podman can set here; the host CA bundle lets pip reach PyPI through a TLS proxy.
CA_BUNDLE ?= $(wildcard /etc/ssl/certs/ca-certificates.crt)
PODMAN_BUILD_FLAGS ?= --format docker --network host \
	--ulimit nofile=1024:1024 --ulimit nproc=1024:1024 \
	$(if $(CA_BUNDLE),-v $(CA_BUNDLE):$(CA_BUNDLE):ro)
IMAGE_BUILD_ARGS := $(if $(BASE_IMAGE),--build-arg BASE_IMAGE=$(BASE_IMAGE))

.PHONY: image
image:
ifeq ($(notdir $(CONTAINER_ENGINE)),podman)
	$(CONTAINER_ENGINE) $(PODMAN_FLAGS) build $(PODMAN_BUILD_FLAGS) $(IMAGE_BUILD_ARGS) \
		-f deploy/Dockerfile -t $(IMAGE) .
else
	$(CONTAINER_ENGINE) build $(IMAGE_BUILD_ARGS) -f deploy/Dockerfile -t $(IMAGE) .
endif
