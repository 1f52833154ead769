"""Stack config validation: every problem reported at once, keys named, secrets never echoed."""

from __future__ import annotations

import json
from typing import Any

import pulumi
import pytest

from conftest import HOST_KEY, PRODUCTION_SECRETS, SSH_KEY, production_config, staging_config

from components.config import load_stack_config


def load(config: dict[str, Any], secrets=PRODUCTION_SECRETS, stack: str = "production"):
    pulumi.runtime.set_all_config(
        {f"delivery:{k}": v if isinstance(v, str) else json.dumps(v) for k, v in config.items()},
        secret_keys=[f"delivery:{k}" for k in secrets],
    )
    return load_stack_config(project="delivery", stack=stack)


def errors_of(config: dict[str, Any], **kwargs) -> str:
    with pytest.raises(pulumi.RunError) as e:
        load(config, **kwargs)
    return str(e.value)


def test_example_production_config_parses_into_typed_hosts():
    cfg = load(production_config())
    hosts = {h.name: h for h in cfg.platform.hosts}
    assert hosts["production"].roles == ("traefik", "production-runner")
    assert hosts["services"].address == "192.168.88.2"
    assert hosts["services"].port == 22 and hosts["services"].user == "root"
    assert cfg.platform.owns_ca


def test_staging_config_is_a_satellite_of_production():
    cfg = load(staging_config(), stack="staging")
    assert not cfg.platform.owns_ca
    assert cfg.platform.production_stack == "organization/delivery/production"


def test_missing_keys_are_named_with_the_project_prefix():
    msg = errors_of({}, secrets=())
    assert "delivery:domain: missing" in msg
    assert "delivery:hosts: missing" in msg
    assert "delivery:sshPrivateKey: missing" in msg


def test_all_problems_are_reported_in_one_error():
    cfg = production_config(domain="Not A Domain", timezone="no zone!", dockerPackage="podman")
    msg = errors_of(cfg)
    assert "3 problem(s)" in msg
    for key in ("delivery:domain", "delivery:timezone", "delivery:dockerPackage"):
        assert key in msg


def test_malformed_address_names_the_host_entry():
    cfg = production_config()
    cfg["hosts"][1]["address"] = "192.168.88.300"
    msg = errors_of(cfg)
    assert "delivery:hosts[1].address: expected an IPv4 or IPv6 address, got '192.168.88.300'" in msg


def test_wrong_type_is_reported_with_what_was_expected():
    cfg = production_config()
    cfg["hosts"][0]["port"] = "twenty-two"
    assert "delivery:hosts[0].port: expected an integer, got a string" in errors_of(cfg)


def test_integer_key_rejects_text():
    assert "delivery:dockerCertValidityHours: expected an integer, got a string" in errors_of(
        production_config(dockerCertValidityHours="a year")
    )


def test_unknown_role_is_rejected():
    cfg = production_config()
    cfg["hosts"][0]["roles"] = ["traefik", "database"]
    msg = errors_of(cfg)
    assert "delivery:hosts[0].roles[1]: expected one of gitlab, traefik, review-apps" in msg


def test_unknown_host_field_is_rejected():
    cfg = production_config()
    cfg["hosts"][0]["adress"] = "192.168.88.1"
    assert "delivery:hosts[0].adress: unknown key" in errors_of(cfg)


def test_duplicate_host_names_and_addresses_are_rejected():
    cfg = production_config()
    cfg["hosts"].append({"name": "services", "address": "192.168.88.2", "hostKey": HOST_KEY, "roles": []})
    msg = errors_of(cfg)
    assert "delivery:hosts[2].name: duplicate host name 'services'" in msg
    assert "delivery:hosts[2].address: duplicate address 192.168.88.2" in msg


def test_single_role_placed_twice_is_rejected():
    cfg = production_config()
    cfg["hosts"][1]["roles"] = ["gitlab", "traefik"]
    assert "role 'traefik' must run on exactly one host, found it on production, services" in errors_of(cfg)


def test_single_role_placed_nowhere_is_rejected_in_the_ca_stack():
    cfg = production_config()
    cfg["hosts"][1]["roles"] = []
    assert "role 'gitlab' must run on exactly one host of the stack that owns the Docker CA, found it on none" in errors_of(cfg)


def test_single_role_in_a_satellite_stack_is_rejected():
    cfg = staging_config()
    cfg["hosts"][0]["roles"] = ["review-apps", "gitlab"]
    assert "role 'gitlab' runs in the stack that owns the Docker CA" in errors_of(cfg, stack="staging")


def test_review_daemon_must_be_declared_once():
    cfg = production_config()
    del cfg["reviewAppsDaemon"]
    assert "no review-app Docker daemon" in errors_of(cfg)
    cfg = production_config()
    cfg["hosts"][0]["roles"].append("review-apps")
    assert "delivery:reviewAppsDaemon: conflicts with host 'production'" in errors_of(cfg)


def test_secret_key_set_without_secret_flag_is_rejected_without_echoing_it():
    msg = errors_of(production_config(), secrets=())
    assert "delivery:sshPrivateKey: is a secret: it must be set with `pulumi config set --secret`" in msg
    assert "MOCKKEY" not in msg and SSH_KEY not in msg


def test_secret_value_never_appears_in_errors_even_alongside_other_problems():
    msg = errors_of(production_config(domain="bad_domain"), secrets=())
    assert "delivery:domain" in msg
    assert "MOCKKEY" not in msg


def test_ssh_key_is_a_secret_output():
    cfg = load(production_config())
    assert isinstance(cfg.platform.ssh_private_key, pulumi.Output)


def test_host_key_must_look_like_an_ssh_key():
    cfg = production_config()
    cfg["hosts"][0]["hostKey"] = "AAAAC3NzaC1lZDI1NTE5"
    assert "delivery:hosts[0].hostKey: expected an SSH host key" in errors_of(cfg)


def test_host_key_is_kept_when_well_formed():
    cfg = production_config()
    cfg["hosts"][0]["hostKey"] = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIOMqqnkVzrm0SdG6UOoqKLsabgH5C9okWi0dh2l9GKJl"
    assert load(cfg).platform.hosts[0].host_key.startswith("ssh-ed25519 ")


def test_docker_ce_needs_a_pinned_version_while_docker_io_may_float():
    assert load(production_config()).platform.docker.version == "29.2.0"
    assert load(production_config(dockerPackage="docker.io")).platform.docker.version is None
    assert "delivery:dockerVersion: expected an upstream Docker version" in errors_of(production_config(dockerVersion="latest"))


def test_structured_key_given_as_plain_text_is_explained():
    assert "delivery:hosts: expected a list of host objects (set it with `pulumi config set --path`)" in errors_of(
        production_config(hosts="production,services")
    )


def test_certificate_renewal_window_must_fit_in_validity():
    msg = errors_of(production_config(dockerCertValidityHours=100, dockerCertEarlyRenewalHours=200))
    assert "delivery:dockerCertEarlyRenewalHours: must be less than dockerCertValidityHours (100)" in msg


def test_operator_client_is_always_issued():
    assert "delivery:dockerClients: must include 'operator'" in errors_of(production_config(dockerClients=["traefik"]))


def test_number_of_hosts_is_free():
    cfg = production_config()
    cfg["hosts"] = [{"name": "allinone", "address": "10.0.0.5", "hostKey": HOST_KEY, "roles": ["gitlab", "traefik", "review-apps", "staging-runner"]}]
    del cfg["reviewAppsDaemon"]
    assert [h.name for h in load(cfg).platform.hosts] == ["allinone"]
