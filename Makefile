# Two commands do all the set-up: `make run` serves the app, `make test` runs the suite.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin

.PHONY: run test bench venv

venv: $(VENV)/.installed

$(VENV)/.installed: requirements.txt
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --disable-pip-version-check -r requirements.txt
	touch $@

.env: | $(VENV)/.installed
	$(BIN)/flask --app app voice init-env

# The Procfile's web and worker processes, side by side under honcho; Ctrl-C stops both.
run: venv .env
	$(BIN)/flask --app app voice init-env
	$(BIN)/flask --app app db upgrade
	PATH="$(abspath $(BIN)):$$PATH" $(BIN)/honcho start --no-colour web worker

test: venv
	$(BIN)/python -m pytest $(PYTEST_ARGS)

# The benchmark: the service and a bare Flask app under the same gunicorn settings, driven by wrk.
bench: venv
	@command -v wrk >/dev/null || { [ "$$(id -u)" = 0 ] && apt-get update -qq && apt-get install -y -qq wrk >/dev/null; } \
		|| { echo "make bench needs wrk (Debian: apt-get install wrk)"; exit 1; }
	$(BIN)/python bench/run.py $(BENCH_ARGS)
