"""Example stacks with the GitLab integration switched on, for the GitLab tests."""

from __future__ import annotations

from typing import Any

from conftest import (
    DNS_API_TOKEN,
    PRODUCTION_SECRETS,
    PRODUCTION_STACK,
    StackRun,
    production_config,
    production_outputs,
    run_stack,
    staging_config,
)

API_TOKEN = "glpat-MOCKtoken-0123456789"
SECRETS = PRODUCTION_SECRETS


def production_base(**overrides: Any) -> dict[str, Any]:
    """The production example (token not set yet)."""
    return production_config(**overrides)


#: The integration switched on: the token set, and gitlabIntegration saying it is configured.
ENABLED = {"gitlabToken": API_TOKEN, "gitlabIntegration": "enabled"}


def run_production(secrets: tuple[str, ...] = SECRETS, **overrides: Any) -> StackRun:
    """The production example with the GitLab integration enabled (API token set)."""
    return run_stack(production_base(**{**ENABLED, **overrides}), secrets=secrets)


def run_staging(outputs: dict[str, Any] | None = None, stack_name: str = PRODUCTION_STACK, **overrides: Any) -> StackRun:
    """The staging example (token set only when given, then with the integration enabled)
    reading `outputs` from `stack_name`."""
    if overrides.get("gitlabToken") is not None:
        overrides.setdefault("gitlabIntegration", "enabled")
    return run_stack(
        staging_config(productionStack=stack_name, **overrides),
        secrets=SECRETS,
        stack="staging",
        stack_outputs={stack_name: production_outputs() if outputs is None else outputs},
    )
