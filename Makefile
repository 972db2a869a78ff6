# The two commands a new user needs: `make run` and `make test`. Both create .venv themselves.
PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin

.PHONY: run test lint typecheck pytest mutations clean bench bench-quick bench-deps soak

# Runtime install (uvloop, h11, certifi) for `make run`; the dev extras for `make test`.
$(BIN)/.runtime: pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q -e .
	touch $@

$(BIN)/.dev: pyproject.toml $(BIN)/.runtime
	$(BIN)/python -m pip install -q -e '.[dev]'
	touch $@

run: $(BIN)/.runtime
	$(BIN)/relay serve $(ARGS)

# The whole suite: lint, types, the tests under branch coverage (gate: 95% of relay/, relay
# processes started by tests included), then the mutation check (tests/mutations.py).
test: lint typecheck pytest mutations

lint: $(BIN)/.dev
	$(BIN)/ruff check relay tests bench docs

typecheck: $(BIN)/.dev
	$(BIN)/mypy --strict relay

pytest: $(BIN)/.dev
	$(BIN)/coverage erase
	$(BIN)/coverage run -m pytest $(PYTEST_ARGS)
	$(BIN)/coverage combine -q
	$(BIN)/coverage report

mutations: $(BIN)/.dev
	$(BIN)/python -m tests.mutations

# Benchmarks (bench/README.md): peers are installed by bench-deps (pip extras + apt nginx, wrk).
$(BIN)/.bench: pyproject.toml $(BIN)/.dev
	$(BIN)/python -m pip install -q -e '.[bench]'
	touch $@

# LiteLLM (a peer in bench/relays.py) gets a venv of its own: its pins must not move the
# versions the relay's tests run with.
.venv-litellm/bin/litellm:
	$(PYTHON) -m venv .venv-litellm
	.venv-litellm/bin/python -m pip install -q 'litellm[proxy]'

bench-deps: $(BIN)/.bench .venv-litellm/bin/litellm
	command -v nginx >/dev/null && command -v wrk >/dev/null && command -v valgrind >/dev/null \
	  && command -v redis-server >/dev/null && test -e /usr/lib/nginx/modules/ngx_nchan_module.so \
	  || { apt-get update -qq && apt-get install -y -qq nginx wrk valgrind redis-server \
	       libnginx-mod-nchan; }

bench: bench-deps
	$(BIN)/python -m bench $(ARGS)

bench-quick: bench-deps
	$(BIN)/python -m bench --quick $(ARGS)

soak: $(BIN)/.dev
	$(BIN)/python -m bench.soak --json bench/results/soak-latest.json $(ARGS)

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache *.egg-info .coverage .coverage.*
