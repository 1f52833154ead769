"""ProjectCi: the application project's CI/CD variables, their flags and secrecy."""

from __future__ import annotations

from typing import Any

import pulumi
import pytest

from conftest import Registration, StackRun, run_stack
from gitlab_stacks import API_TOKEN, SECRETS, production_base, run_production

VARIABLE = "gitlab:index/projectVariable:ProjectVariable"


def production(secrets: tuple[str, ...] = SECRETS, **overrides: Any) -> StackRun:
    return run_production(secrets=secrets, **overrides)


def variable(run: StackRun, key: str) -> Registration:
    found = [r for r in run.of_type(VARIABLE) if r.plain["key"] == key]
    assert len(found) == 1, f"expected one variable {key}, found {[r.urn for r in found]}"
    return found[0]


def test_default_variables_are_email_timezone_and_the_review_host():
    run = production()
    keys = sorted(r.plain["key"] for r in run.of_type(VARIABLE))
    # No DNS token: it opens the whole DNS zone, and the platform renews the wildcard itself.
    assert keys == ["LETSENCRYPT_EMAIL", "STAGING_HOST_ADDRESS", "TZ"], keys


def test_review_host_variable_is_the_daemon_traefik_watches():
    """The review-app template publishes containers on $STAGING_HOST_ADDRESS."""
    r = variable(production(), "STAGING_HOST_ADDRESS")
    assert r.plain["value"] == "192.168.88.3", r.urn
    assert not r.secret("value") and r.plain["masked"] is False, r.urn


def test_variables_belong_to_the_configured_project():
    run = production()
    for r in run.of_type(VARIABLE):
        assert r.plain["project"] == "group/app", r.urn


def test_timezone_variable_is_the_platform_timezone_in_plain_text():
    r = variable(production(), "TZ")
    assert r.plain["value"] == "Europe/Volgograd", r.urn
    assert not r.secret("value") and r.plain["masked"] is False, r.urn


def test_dns_token_only_when_configured_explicitly_and_then_secret_and_production_only():
    run = production(dnsProviderApiToken="explicit-dns-token-0123456789")
    r = variable(run, "DNS_PROVIDER_API_TOKEN")
    assert r.secret("value") and r.plain["value"] == "explicit-dns-token-0123456789", r.urn
    assert r.plain["masked"] is True and r.plain["protected"] is True, r.urn
    assert r.plain["hidden"] is True, r.urn
    assert r.plain["environmentScope"] == "production", r.urn


def test_secret_variables_reach_the_production_environment_only():
    run = production(ciSecretVariables={"REGISTRY_PASSWORD": "s3cr3t-Passw0rd"})
    assert variable(run, "REGISTRY_PASSWORD").plain["environmentScope"] == "production"
    other = production(ciSecretVariables={"REGISTRY_PASSWORD": "s3cr3t-Passw0rd"}, ciSecretEnvironmentScope="prod/*")
    assert variable(other, "REGISTRY_PASSWORD").plain["environmentScope"] == "prod/*"


def test_secret_variables_from_config_are_secret_masked_and_protected():
    run = production(ciSecretVariables={"REGISTRY_PASSWORD": "s3cr3t-Passw0rd"})
    r = variable(run, "REGISTRY_PASSWORD")
    assert r.secret("value") and r.plain["value"] == "s3cr3t-Passw0rd", r.urn
    assert r.plain["masked"] and r.plain["protected"] and r.plain["hidden"], r.urn


def test_plain_variable_with_a_secret_like_name_is_masked_and_protected():
    run = production(ciVariables={"SENTRY_AUTH_TOKEN": "abcdefgh12345678"})
    r = variable(run, "SENTRY_AUTH_TOKEN")
    assert r.plain["masked"] is True and r.plain["protected"] is True, r.urn
    assert r.secret("value"), r.urn


def test_plain_variable_flags_and_scope_come_from_config():
    run = production(
        ciVariables={"APP_HOST": {"value": "app.company.ru", "protected": True, "raw": True, "environmentScope": "production", "description": "host"}}
    )
    r = variable(run, "APP_HOST")
    assert r.plain["value"] == "app.company.ru" and not r.secret("value"), r.urn
    assert r.plain["protected"] is True and r.plain["raw"] is True and r.plain["masked"] is False, r.urn
    assert r.plain["environmentScope"] == "production" and r.plain["description"] == "host", r.urn


def test_environment_scope_default_comes_from_config():
    run = production(ciEnvironmentScope="production")
    r = variable(run, "TZ")
    assert r.plain["environmentScope"] == "production", r.urn


def test_variables_use_the_gitlab_provider():
    run = production()
    provider = run.named("gitlab-api")
    for r in run.of_type(VARIABLE):
        assert r.provider.startswith(provider.urn + "::"), r.urn


def test_without_ci_project_no_variables_are_managed():
    cfg = production_base(gitlabToken=API_TOKEN, gitlabIntegration="enabled", runnerScope={"project": "group/app"})
    cfg.pop("ciProject")
    run = run_stack(cfg, secrets=SECRETS)
    assert not run.of_type(VARIABLE)
    assert not run.of_type("delivery:gitlab:ProjectCi")


def test_unmaskable_value_names_the_key_without_echoing_it():
    with pytest.raises(pulumi.RunError, match=r"delivery:ciVariables\.DB_PASSWORD\.value") as e:
        production(ciVariables={"DB_PASSWORD": "short!"})
    assert "short!" not in str(e.value)


def test_unmaskable_secret_value_names_the_key_without_echoing_it():
    with pytest.raises(pulumi.RunError, match=r"delivery:ciSecretVariables\.SSH_KEY") as e:
        production(ciSecretVariables={"SSH_KEY": "line one\nline two"})
    assert "line one" not in str(e.value)


def test_unmaskable_dns_token_names_the_key():
    with pytest.raises(pulumi.RunError, match=r"delivery:dnsProviderApiToken: cannot be masked"):
        production(dnsProviderApiToken="short")


def test_dns_token_must_be_set_as_a_secret():
    secrets = tuple(k for k in SECRETS if k != "dnsProviderApiToken")
    with pytest.raises(pulumi.RunError, match=r"delivery:dnsProviderApiToken: is a secret"):
        production(secrets=secrets, dnsProviderApiToken="explicit-0123456789")


def test_dns_credentials_never_become_a_ci_variable():
    run = production(dnsCredentials={"CF_DNS_API_TOKEN": "abcdefgh1234"})
    values = [r.plain["value"] for r in run.of_type(VARIABLE)]
    assert "abcdefgh1234" not in values


def test_variables_without_ci_project_are_an_error():
    cfg = production_base(ciVariables={"A": "b"})
    cfg.pop("ciProject")
    with pytest.raises(pulumi.RunError, match=r"delivery:ciVariables"):
        run_stack(cfg, secrets=SECRETS)
