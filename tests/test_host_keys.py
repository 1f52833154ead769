"""SSH host keys: every host's key is pinned, or its check is switched off explicitly and a
warning says so on every run."""

from __future__ import annotations

import json
import logging
from typing import Any

import pulumi
import pytest

from conftest import PRODUCTION_SECRETS, PRODUCTION_STACK, production_config, production_outputs, run_stack, staging_config

from components.config import load_stack_config

ED25519 = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIOMqqnkVzrm0SdG6UOoqKLsabgH5C9okWi0dh2l9GKJl"


def load(config: dict[str, Any], stack: str = "production"):
    pulumi.runtime.set_all_config(
        {f"delivery:{k}": v if isinstance(v, str) else json.dumps(v) for k, v in config.items()},
        secret_keys=[f"delivery:{k}" for k in PRODUCTION_SECRETS if k in config],
    )
    return load_stack_config(project="delivery", stack=stack)


def errors_of(config: dict[str, Any]) -> str:
    with pytest.raises(pulumi.RunError) as e:
        load(config)
    return str(e.value)


def unpinned(**host: Any) -> dict[str, Any]:
    """The production example whose second host (services) has no hostKey, plus `host`."""
    cfg = production_config()
    del cfg["hosts"][1]["hostKey"]
    cfg["hosts"][1].update(host)
    return cfg


def test_a_host_without_a_pinned_key_is_refused_with_how_to_read_it():
    msg = errors_of(unpinned())
    assert "delivery:hosts[1].hostKey: missing; pin the host's SSH host key" in msg
    assert "ssh-keyscan -t ecdsa <address>" in msg and "insecureSkipHostKeyCheck: true" in msg


def test_the_opt_out_is_accepted_and_leaves_the_key_unpinned():
    cfg = load(unpinned(insecureSkipHostKeyCheck=True))
    services = next(h for h in cfg.platform.hosts if h.name == "services")
    assert services.host_key is None and services.insecure_skip_host_key_check


def test_the_opt_out_warns_on_every_run_naming_the_host(caplog):
    caplog.set_level(logging.WARNING)
    for run in (1, 2):
        caplog.clear()
        run_stack(unpinned(insecureSkipHostKeyCheck=True), secrets=PRODUCTION_SECRETS)
        warnings = [r.getMessage() for r in caplog.records if "insecureSkipHostKeyCheck" in r.getMessage()]
        assert len(warnings) == 1, f"run {run}: {caplog.text}"
        assert "host 'services' is NOT verified" in warnings[0]


def test_pinned_hosts_give_no_warning(caplog):
    caplog.set_level(logging.WARNING)
    run_stack(production_config(), secrets=PRODUCTION_SECRETS)
    assert "NOT verified" not in caplog.text


def test_opt_out_next_to_a_pinned_key_is_contradictory():
    msg = errors_of(unpinned(hostKey=ED25519, insecureSkipHostKeyCheck=True))
    assert "delivery:hosts[1].insecureSkipHostKeyCheck: is true but hostKey is set" in msg


def test_opt_out_must_be_a_boolean():
    assert "delivery:hosts[1].insecureSkipHostKeyCheck: expected true or false, got a string" in errors_of(unpinned(insecureSkipHostKeyCheck="yes"))


def test_a_key_whose_blob_is_another_type_is_refused():
    # an Ed25519 key labelled as ECDSA: a copy error that would fail every connection
    msg = errors_of(unpinned(hostKey="ecdsa-sha2-nistp256 " + ED25519.split()[1]))
    assert "delivery:hosts[1].hostKey: the base64 part is not a ecdsa-sha2-nistp256 key" in msg


@pytest.mark.parametrize("stack", ["production", "staging"])
def test_every_remote_command_verifies_its_hosts_pinned_key(stack: str):
    if stack == "production":
        config, kwargs = production_config(), {}
    else:
        config, kwargs = staging_config(), {"stack": "staging", "stack_outputs": {PRODUCTION_STACK: production_outputs()}}
    keys = {h["address"]: h["hostKey"] for h in config["hosts"]}
    run = run_stack(config, secrets=PRODUCTION_SECRETS, **kwargs)
    commands = run.of_type("command:remote:Command")
    assert commands
    for c in commands:
        conn = c.plain["connection"]
        assert conn.get("hostKey") == keys[conn["host"]], c.urn


def test_an_opted_out_host_connects_without_a_pinned_key():
    run = run_stack(unpinned(insecureSkipHostKeyCheck=True), secrets=PRODUCTION_SECRETS)
    services = [c for c in run.of_type("command:remote:Command") if c.plain["connection"]["host"] == "192.168.88.2"]
    assert services and all("hostKey" not in c.plain["connection"] for c in services)
