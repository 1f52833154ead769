"""The churn table of docs/operations.md ("What a change restarts") against the resource graph:
for each key, the production stack is evaluated under mocks before and after a change, and what
Pulumi would do with each container follows from the provider schema, as in the e2e harness
(tests/e2e/docker_apply.py: ForceNew inputs, replaceOnChanges, replacementTrigger replace a
container), plus the in-place steps (components/services/in_place.py): their stdin changes while
their container stays, so the running container is restarted or reconfigured.

The e2e tier measures the same claims on real hosts (tests/e2e/test_services_e2e.py)."""

from __future__ import annotations

import pytest

from churn_table import Effect, churn_table
from conftest import PRODUCTION_SECRETS, StackRun, ca_certificate_pem, production_config, run_stack
from e2e.docker_apply import CONTAINER_FORCE_NEW

CONTAINER = "docker:index/container:Container"
#: The in-place steps and the container and effect each stands for.
IN_PLACE = {"traefik-restart": ("traefik", "restarted in place"), "gitlab-server-reconfigure": ("gitlab", "reconfigured in place")}
EXEC_SCRIPT = "#!/bin/sh\necho set-txt \"$@\"\n"

#: key -> (base overrides, changed overrides): one realistic change of each key in the table.
CHANGES: dict[str, tuple[dict, dict]] = {
    "timezone": ({}, {"timezone": "Asia/Tokyo"}),
    "acmeEmail": ({}, {"acmeEmail": "ops@company.ru"}),
    "acmeStaging": ({}, {"acmeStaging": "true"}),
    "acmeServer": ({}, {"acmeServer": "https://ca.example.net:9000/acme/directory"}),
    "acmeCaCertificate": ({}, {"acmeCaCertificate": ca_certificate_pem("private ACME CA")}),
    "dnsCredentials": ({}, {"dnsCredentials": {"CF_DNS_API_TOKEN": "another-token-0123"}}),
    "dnsExecScript": (
        {"dnsProvider": "exec", "dnsCredentials": None, "dnsExecScript": EXEC_SCRIPT},
        {"dnsProvider": "exec", "dnsCredentials": None, "dnsExecScript": EXEC_SCRIPT + "# v2\n"},
    ),
    "dnsPropagationSeconds": ({}, {"dnsPropagationSeconds": "300"}),
    "dnsResolvers": ({}, {"dnsResolvers": ["192.0.2.53"]}),
    "dnsPropagationCheck": ({}, {"dnsPropagationCheck": "false"}),
    "traefikDashboardUsers": ({}, {"traefikDashboardUsers": "ops:$2y$05$Yjbx6uDjVn.KmF.QfdNASef9tXCH2kTE8mBb8xF2ir.HGy.mN3V9q"}),
    "productionApps": ({}, {"productionApps": [{"name": "shop", "host": "shop.company.ru", "url": "http://192.168.88.1:8080"}]}),
    "traefikRateLimits": ({}, {"traefikRateLimits": {"gitlabSignIn": {"average": 3}}}),
    "traefikInFlightRequests": ({}, {"traefikInFlightRequests": 50}),
    "traefikVersion": ({}, {"traefikVersion": "v3.6.16"}),
    "gitlabVersion": ({}, {"gitlabVersion": "18.6.0-ce.0"}),
    "gitlabShmSize": ({}, {"gitlabShmSize": 512}),
    "gitlabReadyTimeoutSeconds": ({}, {"gitlabReadyTimeoutSeconds": 300}),
    "gitlabRootPassword": ({}, {"gitlabRootPassword": "Another-passw0rd-9Zq"}),
    "gitlabRunnerVersion": ({}, {"gitlabRunnerVersion": "v18.6.0"}),
    "runnerDefaultImage": ({}, {"runnerDefaultImage": "docker:29.3.0-cli"}),
    "runners": ({}, {"runners": {"production-runner": {"concurrent": 3}}}),
    "runnerTokenRotation": ({}, {"runnerTokenRotation": "2027-01"}),
    "ciVariables": ({}, {"ciVariables": {"APP_MODE": "production"}}),
    "fail2banJails": ({}, {"fail2banJails": {"gitlab-auth": {"banTime": 86400}}}),
    "fail2banIgnoreIps": ({}, {"fail2banIgnoreIps": ["203.0.113.7"]}),
    "dockerApiAllowedSources": ({}, {"dockerApiAllowedSources": ["203.0.113.7"]}),
    "logRotationKeep": ({}, {"logRotationKeep": 30}),
    "logRotationMaxSize": ({}, {"logRotationMaxSize": "1G"}),
}


def run(overrides: dict) -> StackRun:
    """The production stack with GitLab integration, `overrides` applied (None removes a key)."""
    config = production_config(gitlabToken="glpat-mock-0123456789abcdefghij", gitlabIntegration="enabled", **overrides)
    return run_stack({k: v for k, v in config.items() if v is not None}, secrets=PRODUCTION_SECRETS)


def effects(before: StackRun, after: StackRun) -> set[Effect]:
    """What `pulumi up` from `before` to `after` does to the containers."""
    old = {r.urn: r for r in before.registrations}
    out: set[Effect] = set()
    replaced: set[str] = set()
    for new in after.of_type(CONTAINER):
        prev = old.get(new.urn)
        assert prev is not None, f"{new.urn}: a new container"
        a, b = prev.plain, new.plain
        changed = {k for k in set(a) | set(b) if a.get(k) != b.get(k)}
        if changed & (CONTAINER_FORCE_NEW | set(new.replace_on_changes)) or prev.replacement_trigger != new.replacement_trigger:
            out.add((b["name"], "replaced"))
            replaced.add(b["name"])
    for step, (container, effect) in IN_PLACE.items():
        if old_step := next((r for r in before.registrations if r.name == step), None):
            if after.named(step).plain["stdin"] != old_step.plain["stdin"] and container not in replaced:
                out.add((container, effect))
    return out


def test_every_key_in_the_table_has_a_change_here_and_every_change_a_row():
    assert set(churn_table()) == set(CHANGES)


@pytest.fixture(scope="module")
def default_run() -> StackRun:
    return run({})


def test_the_same_config_twice_restarts_nothing(default_run):
    assert effects(default_run, run({})) == set()


@pytest.mark.parametrize("key", sorted(CHANGES))
def test_the_table_says_what_a_change_restarts(key, default_run):
    base, changed = CHANGES[key]
    before = run(base) if base else default_run
    assert effects(before, run(changed)) == set(churn_table()[key]), f"docs/operations.md, row {key}"


def test_the_table_parser_rejects_a_row_that_says_nothing_clear():
    text = "## What a change restarts\n\n| key | restarts |\n|---|---|\n| `timezone` | some things |\n"
    with pytest.raises(ValueError, match="timezone"):
        churn_table(text)
