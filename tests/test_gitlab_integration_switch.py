"""gitlabIntegration: once the GitLab integration is configured, losing gitlabToken is an error
that changes nothing (it used to drop the runners and CI variables out of the graph, so
`pulumi up` deleted them); the first run, before GitLab has a token, still works with a warning;
removing the integration takes gitlabIntegration: removed."""

from __future__ import annotations

import logging
from typing import Any

import pulumi
import pytest

from conftest import PRODUCTION_STACK, PlatformMocks, production_outputs, run_stack, staging_config
from gitlab_stacks import API_TOKEN, SECRETS, production_base, run_production

GITLAB_TYPES = ("gitlab:", "pulumi:providers:gitlab")


class CountingMocks(PlatformMocks):
    """PlatformMocks that count the resources the program asked for."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.created: list[str] = []

    def new_resource(self, args):
        self.created.append(f"{args.typ}::{args.name}")
        return super().new_resource(args)


def gitlab_resources(run) -> list[str]:
    return [r.urn for r in run.registrations if r.type.startswith(GITLAB_TYPES) or r.name.startswith("gitlab-runner-")]


# -- configured: a lost token is an error that changes nothing -----------------------------------
def test_a_missing_token_once_enabled_is_an_error_naming_the_token():
    with pytest.raises(pulumi.RunError) as e:
        run_stack(production_base(gitlabIntegration="enabled"), secrets=SECRETS)
    msg = str(e.value)
    assert "delivery:gitlabToken: missing, and gitlabIntegration is enabled" in msg
    assert "would delete" in msg and "gitlabIntegration to removed" in msg


def test_a_missing_token_once_enabled_creates_and_deletes_nothing():
    mocks = CountingMocks()
    with pytest.raises(pulumi.RunError):
        run_stack(production_base(gitlabIntegration="enabled"), secrets=SECRETS, mocks=mocks)
    assert mocks.created == [], "the program stopped before registering anything, so Pulumi changes nothing"


def test_a_missing_token_in_the_staging_stack_once_enabled_is_an_error():
    with pytest.raises(pulumi.RunError, match="delivery:gitlabToken: missing, and gitlabIntegration is enabled"):
        run_stack(
            staging_config(gitlabIntegration="enabled"), secrets=SECRETS, stack="staging",
            stack_outputs={PRODUCTION_STACK: production_outputs()},
        )


def test_a_token_without_the_switch_is_refused_so_the_switch_cannot_be_forgotten():
    with pytest.raises(pulumi.RunError) as e:
        run_stack(production_base(gitlabToken=API_TOKEN), secrets=SECRETS)
    assert "delivery:gitlabIntegration: is not set but gitlabToken is" in str(e.value)
    assert "pulumi config set delivery:gitlabIntegration enabled" in str(e.value)


def test_enabled_with_its_token_builds_the_integration():
    run = run_production()
    assert run.named("gitlab-api") and run.named("gitlab-runner-production-user-runner")


def test_a_rejected_token_fails_when_the_provider_is_configured():
    """early_auth_check: the provider asks GitLab who the token belongs to when it is configured,
    before any GitLab resource is read or changed, so a revoked or mistyped token stops the
    preview or update there."""
    provider = run_production().named("gitlab-api")
    assert provider.plain["earlyAuthCheck"] == "true", provider.urn


def test_the_provider_is_configured_once_gitlab_answers():
    run = run_production()
    provider = run.named("gitlab-api")
    # The readiness gate runs after GitLab's container, which runs after its host's set-up.
    assert run.named("gitlab-server-ready").urn in provider.dependencies, provider.urn


# -- the first run: no token can exist yet ---------------------------------------------------------
def test_the_first_run_leaves_the_integration_out_with_a_warning(caplog):
    caplog.set_level(logging.WARNING)
    run = run_stack(production_base(), secrets=SECRETS)
    assert gitlab_resources(run) == []
    assert "pulumi config set --secret delivery:gitlabToken" in caplog.text
    assert "pulumi config set delivery:gitlabIntegration enabled" in caplog.text


# -- removing the integration on purpose ------------------------------------------------------------
def test_removed_leaves_the_integration_out_and_says_it_deletes_it(caplog):
    caplog.set_level(logging.WARNING)
    run = run_stack(production_base(gitlabIntegration="removed"), secrets=SECRETS)
    assert gitlab_resources(run) == []
    assert "gitlabIntegration is removed" in caplog.text and "deletes" in caplog.text
    assert run.of_type("delivery:docker:DockerHost"), "the rest of the stack is still built"


def test_removed_ignores_a_token_that_is_still_set(caplog):
    caplog.set_level(logging.WARNING)
    run = run_stack(production_base(gitlabIntegration="removed", gitlabToken=API_TOKEN), secrets=SECRETS)
    assert gitlab_resources(run) == []
    assert "delivery:gitlabToken: is ignored: gitlabIntegration is removed" in caplog.text


def test_an_unknown_state_is_refused():
    with pytest.raises(pulumi.RunError, match="delivery:gitlabIntegration: expected one of pending, enabled, removed"):
        run_stack(production_base(gitlabIntegration="on", gitlabToken=API_TOKEN), secrets=SECRETS)
