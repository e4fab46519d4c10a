# BeamClaw's tasks; `make` alone lists them. Every task first creates .venv and installs
# requirements/dev.txt into it, again only when a requirements file has changed.

PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
# Touched after a successful install: requirements newer than it mean "install again".
STAMP := $(VENV)/.requirements-installed

.DEFAULT_GOAL := help
.PHONY: help venv run test lint format worker bench clean

help: ## list the tasks
	@echo "BeamClaw tasks (the first one creates .venv and installs requirements/dev.txt):"
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  make %-7s %s\n", $$1, $$2}'

$(STAMP): requirements/base.txt requirements/dev.txt
	@if [ ! -x $(PY) ]; then \
		$(PYTHON) -c 'import sys; sys.exit(sys.version_info < (3, 11))' 2>/dev/null || { \
			echo "BeamClaw needs Python 3.11 or newer; '$(PYTHON)' is not. Try: make PYTHON=python3.12 ..." >&2; \
			exit 1; }; \
		echo "==> Creating $(VENV) with $$($(PYTHON) --version)"; \
		$(PYTHON) -m venv $(VENV) || { rm -rf $(VENV); \
			echo "Could not create $(VENV). On Debian or Ubuntu: apt-get install python3-venv" >&2; \
			exit 1; }; \
	fi
	@echo "==> Installing requirements/dev.txt into $(VENV) (the first time takes a minute or two)"
	@$(PY) -m pip install --disable-pip-version-check --quiet -r requirements/dev.txt
	@touch $@

venv: $(STAMP) ## create .venv and install the requirements (every task does this first)

run: $(STAMP) ## start Redis if needed, migrate, create demo data, run web + worker + beat + flower
	@$(PY) scripts/dev.py run

test: $(STAMP) ## run the test suite (Redis database 15, flushed); extra pytest args: ARGS="-k foo"
	@$(PY) scripts/dev.py test $(ARGS)

lint: $(STAMP) ## ruff check and ruff format --check
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .

format: $(STAMP) ## ruff format and ruff check --fix
	$(VENV)/bin/ruff format .
	$(VENV)/bin/ruff check --fix .

worker: $(STAMP) ## one more Celery worker (on REDIS_URL or the running `make run`'s Redis)
	@$(PY) scripts/dev.py worker $(ARGS)

bench: $(STAMP) ## every benchmark at full size (~30 min); ARGS="--quick" for a run of a few minutes
	DEBUG=1 $(PY) manage.py bench all $(ARGS)

clean: ## delete this install's keys in a shared Redis, then var/ (SQLite, private Redis, demo secrets); keeps .venv
	@if [ -x $(PY) ]; then $(PY) scripts/dev.py clean; else rm -rf var/; fi
