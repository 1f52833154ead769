# Two commands on a fresh Debian machine (Python, pip and apt only):
#   make test                      install everything, run every test tier
#   make preview STACK=production  the main job (installs the pinned Pulumi CLI in .tools/
#                                  when pulumi is not on PATH; see README)
SHELL := /bin/bash
PYTHON ?= python3
VENV ?= .venv
STACK ?= production
PY := $(VENV)/bin/python
PYTEST := $(VENV)/bin/pytest
APT_PACKAGES := shellcheck systemd docker.io containerd runc iptables iproute2 debootstrap debian-archive-keyring ca-certificates busybox nftables fail2ban logrotate util-linux pebble bind9
export PULUMI_BACKEND_URL ?= file://$(CURDIR)/.pulumi-state

.PHONY: deps system-deps venv test test-unit test-e2e measure preview up pulumi-cli adopt-check

deps: system-deps venv

system-deps:
	@missing=(); for p in $(APT_PACKAGES); do dpkg-query -W -f='$${Status}' "$$p" 2>/dev/null | grep -q "ok installed" || missing+=("$$p"); done; \
	if [ $${#missing[@]} -gt 0 ]; then \
	  echo "installing: $${missing[*]}"; \
	  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "$${missing[@]}" >/dev/null; \
	fi

venv: $(VENV)/.installed

$(VENV)/.installed: requirements.txt constraints.txt
	$(PYTHON) -m venv $(VENV)
	$(VENV)/bin/pip install -q -r requirements.txt -c constraints.txt
	touch $@

# Every tier: unit (mocks, schemas), real tools, and the disposable-host end to end.
test: deps
	DELIVERY_REQUIRE_TOOLS=1 DELIVERY_E2E=1 $(PYTEST) tests

# Fast tier: no disposable host (a few seconds).
test-unit: venv
	$(PYTEST) -m "not e2e" tests

test-e2e: deps
	DELIVERY_REQUIRE_TOOLS=1 DELIVERY_E2E=1 $(PYTEST) -m e2e tests

# Read-only adoption preview of a host set up by hand (docs/adopt.md): what is there, what the
# first `up` will do. HOST is the host's name in delivery:hosts; SSH with your own key.
adopt-check: venv
	@test -n "$(HOST)" || { echo "usage: make adopt-check HOST=<name in delivery:hosts> [STACK=production]" >&2; exit 2; }
	$(PY) scripts/adopt_check.py --host "$(HOST)" --stack "$(STACK)"

measure: venv
	$(PY) scripts/measure_eval.py

# The pulumi on PATH, else the CLI version the pinned SDK has (constraints.txt), installed once
# in .tools/pulumi-<version>/ after its SHA-256 is checked (scripts/install-pulumi-cli.py).
# PULUMI_DOWNLOAD_BASE_URL overrides where it is downloaded from.
PULUMI_CLI = $(PYTHON) scripts/install-pulumi-cli.py

pulumi-cli:
	@$(PULUMI_CLI) >/dev/null

preview: venv
	@mkdir -p .pulumi-state
	@cli=$$($(PULUMI_CLI)) && PATH="$$cli:$$PATH" pulumi preview --diff --stack $(STACK)

up: venv
	@mkdir -p .pulumi-state
	@cli=$$($(PULUMI_CLI)) && PATH="$$cli:$$PATH" pulumi up --stack $(STACK)
