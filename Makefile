# The two commands: `make run` (everything, on the embedded tiny model) and `make test`.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
# CPU build by default (what CI and laptops use); a GPU machine sets e.g. TORCH_SPEC="torch==2.13.0".
TORCH_SPEC ?= torch==2.13.0
PROTO := protos/imagegen/v1/imagegen.proto
GENERATED := imagegen/v1/imagegen_pb2.py imagegen/v1/imagegen_pb2_grpc.py imagegen/v1/imagegen_pb2.pyi

.PHONY: setup run services test bench proto tiny chromium kubectl docker-tools image stack stack-down clean

setup: $(VENV)/.installed $(GENERATED) tiny

$(VENV)/.installed: requirements.txt requirements-dev.txt requirements-nodeps.txt
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet "$(TORCH_SPEC)"
	$(PY) -m pip install --quiet -r requirements-dev.txt
	$(PY) -m pip install --quiet --no-deps -r requirements-nodeps.txt
	touch $@

# Generated code is committed and never edited: this regenerates it, and a test fails when stale.
$(GENERATED) &: $(PROTO) $(VENV)/.installed
	$(PY) -m grpc_tools.protoc -Iprotos --python_out=. --pyi_out=. --grpc_python_out=. $(PROTO)
	touch $(GENERATED)

proto: $(VENV)/.installed
	$(PY) -m grpc_tools.protoc -Iprotos --python_out=. --pyi_out=. --grpc_python_out=. $(PROTO)

# Build the embedded tiny model into the cache once (the services would build it on first start).
tiny: $(VENV)/.installed
	$(PY) -m services.core.models.presets

# The three services and the gateway on the embedded tiny model; prints the URL. Ctrl-C stops all four.
run: setup
	$(PY) -m services.launch

# The three services only.
services: setup
	$(PY) -m services.launch --no-gateway

# Browser tests drive Debian's Chromium (never a downloaded browser).
chromium:
	@command -v chromium >/dev/null || { \
	  if [ "$$(id -u)" = 0 ]; then apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null; \
	  else echo "Browser tests need Chromium: sudo apt-get install chromium" >&2; exit 1; fi; }

# Kubernetes manifests are rendered offline by kubectl's built-in kustomize.
kubectl:
	@command -v kubectl >/dev/null || { \
	  if [ "$$(id -u)" = 0 ]; then apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq kubernetes-client >/dev/null; \
	  else echo "Deployment tests need kubectl: sudo apt-get install kubernetes-client" >&2; exit 1; fi; }

# The container tests build the image and run the compose stack: a Docker engine (the running one,
# or as root a private dockerd started for the run), compose (v2 or 1.29) and mmdebstrap for the base.
docker-tools:
	@$(PYTHON) -m deploy.stack tools

# The CPU image (imagegen:cpu) from a local Debian base and the host's torch wheel; cached layers.
image: docker-tools
	$(PYTHON) -m deploy.stack image

# The three services (tiny model) and the gateway as containers, in the background: gateway on
# http://127.0.0.1:7860, gRPC on 127.0.0.1:50051-50053. `make stack-down` removes everything.
stack: docker-tools
	$(PYTHON) -m deploy.stack up

stack-down:
	$(PYTHON) -m deploy.stack down

test: setup chromium kubectl docker-tools
	$(PY) -m pytest

# Prints a table of ratios measured in one run and writes it to bench/results/ (a few minutes).
bench: setup
	$(PY) -m bench.run

clean:
	rm -rf $(VENV) .pytest_cache test-artifacts deploy/local/wheels deploy/local/ca
	find . -name __pycache__ -prune -exec rm -rf {} +
