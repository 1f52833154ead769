"""The services' config keys (components/config/services.py): each problem names its key,
keys are required only where their role runs, secret values are never echoed."""

from __future__ import annotations

import json
from typing import Any

import pulumi
import pytest

from conftest import DASHBOARD_USERS, DNS_API_TOKEN, GITLAB_ROOT_PASSWORD, PRODUCTION_SECRETS, production_config, staging_config

from components.config import load_stack_config


def load(config: dict[str, Any], secrets=PRODUCTION_SECRETS, stack: str = "production"):
    pulumi.runtime.set_all_config(
        {f"delivery:{k}": v if isinstance(v, str) else json.dumps(v) for k, v in config.items() if v is not None},
        secret_keys=[f"delivery:{k}" for k in secrets if config.get(k) is not None],
    )
    return load_stack_config(project="delivery", stack=stack)


def errors_of(config: dict[str, Any], **kwargs) -> str:
    with pytest.raises(pulumi.RunError) as e:
        load(config, **kwargs)
    return str(e.value)


def test_example_config_parses_with_pinned_defaults():
    s = load(production_config()).services
    assert s.gitlab.version == "18.5.1-ce.0" and s.gitlab.shm_size_mb == 256
    assert s.traefik.version == "v3.6.15" and s.traefik.acme.staging_wildcard is False
    assert s.traefik.acme.server == "https://acme-v02.api.letsencrypt.org/directory"
    assert s.wildcard.method == "traefik" and s.wildcard.dnsrobocert_version == "3.26.1"
    assert s.hostnames.wildcard_domain == "dev.company.ru"
    assert [a.name for a in s.traefik.production_apps] == ["demo"]


def test_staging_stack_needs_none_of_the_service_keys():
    s = load(staging_config(), stack="staging").services
    assert s.gitlab.root_password is None and s.wildcard.dns_credentials is None


@pytest.mark.parametrize("key", ["gitlabRootPassword", "acmeEmail", "dnsProvider", "dnsCredentials"])
def test_role_keys_are_required_where_the_role_runs(key):
    msg = errors_of(production_config(**{key: None}))
    assert f"delivery:{key}: missing" in msg


def test_root_password_must_be_secret_and_is_not_echoed():
    msg = errors_of(production_config(), secrets=tuple(s for s in PRODUCTION_SECRETS if s != "gitlabRootPassword"))
    assert "delivery:gitlabRootPassword: is a secret" in msg
    assert GITLAB_ROOT_PASSWORD not in msg


def test_short_root_password_is_rejected_without_showing_it():
    msg = errors_of(production_config(gitlabRootPassword="s3cr3t"))
    assert "delivery:gitlabRootPassword: expected at least 8 characters" in msg and "s3cr3t" not in msg


@pytest.mark.parametrize("version", ["latest", "18.5.1", "18.5.1-ee.0", "v18.5.1-ce.0"])
def test_gitlab_version_must_be_a_ce_tag(version):
    assert "delivery:gitlabVersion: expected a gitlab/gitlab-ce tag" in errors_of(production_config(gitlabVersion=version))


@pytest.mark.parametrize("version", ["v3.6.0", "3.5.9", "v2.11.30", "v4.0.0"])
def test_traefik_before_3_6_1_or_not_v3_is_rejected(version):
    msg = errors_of(production_config(traefikVersion=version))
    assert "delivery:traefikVersion: expected Traefik v3 at 3.6.1 or later" in msg


@pytest.mark.parametrize("version", ["latest", "v3", "3.6"])
def test_traefik_version_must_be_exact(version):
    assert "delivery:traefikVersion: expected a Traefik version" in errors_of(production_config(traefikVersion=version))


def test_traefik_version_without_v_is_tagged_with_v():
    assert load(production_config(traefikVersion="3.6.2")).services.traefik.version == "v3.6.2"


def test_wildcard_method_is_one_of_two():
    assert "delivery:wildcardMethod: expected one of traefik, dnsrobocert" in errors_of(production_config(wildcardMethod="certbot"))


def test_dns_credentials_must_be_secret_and_are_not_echoed():
    msg = errors_of(production_config(), secrets=tuple(s for s in PRODUCTION_SECRETS if s != "dnsCredentials"))
    assert "delivery:dnsCredentials: is a secret" in msg and DNS_API_TOKEN not in msg


def test_lego_credential_names_are_variables_without_file_suffix():
    msg = errors_of(production_config(dnsCredentials={"CF_DNS_API_TOKEN_FILE": "x", "auth_token": "y"}))
    assert "delivery:dnsCredentials.CF_DNS_API_TOKEN_FILE: give the variable without _FILE" in msg
    assert "delivery:dnsCredentials.auth_token: expected the name to be a lego environment variable" in msg


def test_dashboard_users_must_be_htpasswd_lines_and_are_not_echoed():
    msg = errors_of(production_config(traefikDashboardUsers="admin password-in-clear\nok:$apr1$x$y"))
    assert "delivery:traefikDashboardUsers: expected bcrypt htpasswd lines" in msg and "(line 1, 2)" in msg  # apr1 (MD5) is refused too
    assert "password-in-clear" not in msg


def test_dashboard_users_must_be_secret():
    msg = errors_of(production_config(), secrets=tuple(s for s in PRODUCTION_SECRETS if s != "traefikDashboardUsers"))
    assert "delivery:traefikDashboardUsers: is a secret" in msg and DASHBOARD_USERS not in msg


def test_production_apps_are_checked_entry_by_entry():
    apps = [
        {"name": "shop", "host": "shop.company.ru", "url": "ftp://x"},
        {"name": "shop", "host": "gitlab.company.ru", "url": "http://192.168.88.1:80"},
        {"name": "Bad_Name", "host": "x.dev.company.ru", "url": "http://192.168.88.1:81", "port": 1},
        {"host": "y.company.ru", "url": "http://192.168.88.1:82"},
    ]
    msg = errors_of(production_config(productionApps=apps))
    assert "delivery:productionApps[0].url: expected an http(s) URL" in msg
    assert "delivery:productionApps[2].name: expected a lower-case DNS label" in msg
    assert "delivery:productionApps[2].port: unknown key" in msg
    assert "delivery:productionApps[3].name: missing" in msg


def test_production_apps_may_not_take_reserved_or_duplicate_hosts():
    apps = [
        {"name": "shop", "host": "gitlab.company.ru", "url": "http://192.168.88.1:80"},
        {"name": "shop", "host": "a.dev.company.ru", "url": "http://192.168.88.1:81"},
    ]
    msg = errors_of(production_config(productionApps=apps))
    assert "delivery:productionApps[0].host: 'gitlab.company.ru' is served for GitLab" in msg
    assert "delivery:productionApps[1].name: duplicate name 'shop'" in msg
    assert "delivery:productionApps[1].host: 'a.dev.company.ru' is under dev.company.ru" in msg


def test_a_traefik_client_of_the_production_ca_is_refused():
    msg = errors_of(production_config(dockerClients=["operator", "traefik"]))
    assert "delivery:dockerClients: 'traefik' is no longer a client of the production CA" in msg


def test_every_service_problem_is_reported_at_once():
    cfg = production_config(gitlabVersion="latest", traefikVersion="v3.0.0", wildcardMethod="x", acmeStaging="maybe", gitlabShmSize=1)
    msg = errors_of(cfg)
    for key in ("gitlabVersion", "traefikVersion", "wildcardMethod", "acmeStaging", "gitlabShmSize"):
        assert f"delivery:{key}:" in msg, key



# -- ACME: any CA --------------------------------------------------------------------------------
def test_acme_server_and_staging_are_exclusive():
    msg = errors_of(production_config(acmeServer="https://ca.example.net/directory", acmeStaging="true"))
    assert "delivery:acmeStaging: switches the wildcard certificate to Let's Encrypt's staging CA" in msg


@pytest.mark.parametrize("bad", ["http://ca.example.net/directory", "ca.example.net", "https://ca example/dir"])
def test_acme_server_must_be_an_https_url(bad):
    assert "delivery:acmeServer: expected an https:// ACME directory URL" in errors_of(production_config(acmeServer=bad))


def test_acme_ca_certificate_must_be_pem_ca_certificates():
    from conftest import fake_pem

    assert "delivery:acmeCaCertificate: expected PEM CA certificates" in errors_of(
        production_config(acmeCaCertificate=fake_pem("CERTIFICATE", "not-parseable"))
    )


def test_acme_staging_covers_the_wildcard_only():
    s = load(production_config(acmeStaging="true")).services
    assert s.traefik.acme.server == "https://acme-v02.api.letsencrypt.org/directory"
    assert s.traefik.acme.wildcard_server == "https://acme-staging-v02.api.letsencrypt.org/directory"


def test_dns_resolvers_get_the_dns_port_when_none_is_given():
    s = load(production_config(dnsResolvers=["192.0.2.1", "ns.example.net:5353", "[2001:db8::1]"])).services
    assert s.wildcard.resolvers == ("192.0.2.1:53", "ns.example.net:5353", "[2001:db8::1]:53")


def test_dns_resolvers_are_for_the_traefik_method_only():
    cfg = production_config(wildcardMethod="dnsrobocert", dnsProvider="yandex", dnsCredentials={"auth_token": "x" * 12},
                            dnsResolvers=["192.0.2.1"])
    assert "delivery:dnsResolvers: is used by wildcardMethod traefik (lego) only" in errors_of(cfg)


def test_exec_provider_needs_its_script_and_no_credentials():
    cfg = production_config(dnsProvider="exec")
    cfg.pop("dnsCredentials")
    assert "delivery:dnsExecScript: missing" in errors_of(cfg)
    s = load({**cfg, "dnsExecScript": "#!/bin/sh\ntrue\n"}, secrets=PRODUCTION_SECRETS + ("dnsExecScript",)).services
    assert s.wildcard.dns_provider == "exec" and not s.wildcard.dns_credentials


def test_exec_script_without_the_exec_provider_is_an_error():
    cfg = production_config(dnsExecScript="#!/bin/sh\ntrue\n")
    assert "delivery:dnsExecScript: is only used with dnsProvider exec" in errors_of(cfg, secrets=PRODUCTION_SECRETS + ("dnsExecScript",))


def test_lexicon_ddns_needs_its_zone_server_and_key():
    """Lexicon's ddns provider reads its zone from its own `domain` option (the real dnsrobocert
    fails inside its auth hook without it: tests/e2e/test_dnsrobocert_e2e.py)."""
    cfg = production_config(wildcardMethod="dnsrobocert", dnsProvider="ddns",
                            dnsCredentials={"auth_token": "hmac-sha256:acme:c2VjcmV0"})
    msg = errors_of(cfg)
    assert "delivery:dnsCredentials.domain: missing; Lexicon's ddns provider needs it: the DNS zone" in msg
    assert "delivery:dnsCredentials.ddns_server: missing" in msg
    assert "delivery:dnsCredentials.auth_token" not in msg
    assert "c2VjcmV0" not in msg
    full = {"auth_token": "hmac-sha256:acme:c2VjcmV0", "ddns_server": "192.0.2.53", "domain": "example.com"}
    s = load(production_config(wildcardMethod="dnsrobocert", dnsProvider="ddns", dnsCredentials=full)).services
    assert sorted(s.wildcard.dns_credentials) == ["auth_token", "ddns_server", "domain"]
    # Method traefik: lego's variables, not Lexicon's options.
    assert load(production_config(dnsProvider="rfc2136", dnsCredentials={"RFC2136_NAMESERVER": "x"})).services.wildcard.method == "traefik"
