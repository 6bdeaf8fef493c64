# make run: a local newsletter on SQLite with mail going to instance/outbox.
# make test: the whole suite (PostgreSQL, Redis and Chromium are used when reachable); as root
#   on Debian it first installs the system packages the tests run (.ci/system-packages).
# make lock: regenerates requirements.lock, the pins every install goes through.
# make audit: checks requirements.lock for known vulnerabilities.
# make wheel-check: build the wheel, install it into a fresh venv and use it from outside the tree.
# make translations: the catalog template from the sources, and every language's catalog updated.
# make compile-translations: the .mo files the app reads (committed, and shipped in the wheel).
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

LOCK := requirements.lock
# The console's first owner, created by `make run` when no owner exists yet.
OWNER_EMAIL ?= owner@example.com

.PHONY: run test wheel-check lint bench lock audit clean translations compile-translations

$(STAMP): pyproject.toml $(LOCK)
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -c $(LOCK) -e ".[dev]"
	touch $(STAMP)

run: $(STAMP)
	FLASK_DEBUG=1 $(BIN)/newsletter db upgrade
# The sample feed is loaded with its dates moved so that its newest article is three hours
# old (samples/dated_feed.py): a digest takes only the last day's or week's articles.
	$(BIN)/python samples/dated_feed.py instance/sample-feed.xml
	FLASK_DEBUG=1 $(BIN)/newsletter articles fetch --feed instance/sample-feed.xml
# The first run creates an owner for the console and prints its password once.
	FLASK_DEBUG=1 $(BIN)/newsletter operators first-owner $(OWNER_EMAIL)
	@echo "Signup page: http://127.0.0.1:5000/subscribe   Console: http://127.0.0.1:5000/admin   Mail: instance/outbox/*.eml"
	FLASK_DEBUG=1 $(BIN)/newsletter run --host 127.0.0.1 --port 5000

# Without the packages the tests that need them are skipped, each saying what to install.
test: $(STAMP)
	.ci/system-packages || echo "make test: going on; the tests that need them will be skipped"
	$(BIN)/pytest $(PYTEST_ARGS)

wheel-check:
	PYTHON=$(PYTHON) .ci/wheel-check

lint: $(STAMP)
	$(BIN)/ruff check newsletter tests bench samples worker.py
	$(BIN)/ruff format --check newsletter tests bench samples worker.py
	$(BIN)/mypy newsletter

# Reader-facing strings only (babel.cfg); new ones reach each catalog untranslated, for a
# translator to fill in (tests/core/test_translations.py fails until they are).
CATALOGS := newsletter/translations
EXTRACT_ARGS := -F babel.cfg -k _l -k lazy_gettext -c TRANSLATORS: --add-location=file -w 100 \
	--project=newsletter --copyright-holder="The newsletter authors"

translations: $(STAMP)
	$(BIN)/pybabel extract $(EXTRACT_ARGS) -o $(CATALOGS)/messages.pot .
	$(BIN)/pybabel update -i $(CATALOGS)/messages.pot -d $(CATALOGS) -w 100 \
		--no-fuzzy-matching --ignore-obsolete

compile-translations: $(STAMP)
	$(BIN)/pybabel compile -d $(CATALOGS) --statistics

# bench/digest.py installs smtp-sink itself where it is missing (.ci/system-packages postfix
# as root on Debian; otherwise it prints the one command to run).
bench: $(STAMP)
	$(BIN)/python bench/digest.py $(BENCH_ARGS)

# Every direct and transitive dependency of the package with its dev extra (test included),
# pinned for Python 3.11 on Linux x86_64 by uv. Pins already in the file are kept where the
# ranges in pyproject.toml still allow them; `make lock LOCK_ARGS=--upgrade` moves them all
# to the newest releases, `LOCK_ARGS="--upgrade-package NAME"` one of them.
lock:
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	test -x $(BIN)/uv || $(BIN)/pip install --quiet uv
	UV_CUSTOM_COMPILE_COMMAND="make lock" $(BIN)/uv pip compile --quiet pyproject.toml \
		--extra dev --python-version 3.11 --python-platform x86_64-unknown-linux-gnu \
		--no-emit-package newsletter $(LOCK_ARGS) --output-file $(LOCK)

# Needs a machine that can reach a vulnerability database (PyPI's advisories, by default);
# --strict makes it fail, rather than report nothing found, where it cannot.
audit: $(STAMP)
	test -x $(BIN)/pip-audit || $(BIN)/pip install --quiet -c $(LOCK) pip-audit
	$(BIN)/pip-audit --strict -r $(LOCK)

clean:
	rm -rf $(VENV) instance test-artifacts
