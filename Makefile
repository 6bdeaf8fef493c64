# make run: a local newsletter on SQLite with mail going to instance/outbox.
# make test: the whole suite (PostgreSQL, Redis and Chromium are used when reachable).
# make wheel-check: build the wheel, install it into a fresh venv and use it from outside the tree.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: run test wheel-check lint bench clean

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e ".[dev]"
	touch $(STAMP)

run: $(STAMP)
	FLASK_DEBUG=1 $(BIN)/newsletter db upgrade
	FLASK_DEBUG=1 $(BIN)/newsletter articles fetch --feed samples/feed.xml
	@echo "Signup page: http://127.0.0.1:5000/subscribe   Mail: instance/outbox/*.eml"
	FLASK_DEBUG=1 $(BIN)/newsletter run --host 127.0.0.1 --port 5000

test: $(STAMP)
	$(BIN)/pytest $(PYTEST_ARGS)

wheel-check:
	PYTHON=$(PYTHON) .ci/wheel-check

lint: $(STAMP)
	$(BIN)/ruff check newsletter tests bench worker.py
	$(BIN)/ruff format --check newsletter tests bench worker.py
	$(BIN)/mypy newsletter

bench: $(STAMP)
	$(BIN)/python bench/digest.py

clean:
	rm -rf $(VENV) instance test-artifacts
