"""Every validated config key refuses a value that is valid but for a trailing line break.

Patterns applied with `re.match` and `$` accept "value\\n" (`$` matches before a final line
break), and such a value would reach scripts, file names and certificates. Each case below
first loads the stack with a valid value (it must parse), then with the same value plus "\\n",
which must fail with an error naming the key. The list of cases is checked against the keys
the README documents and the nested fields the config parser knows, so a new key cannot be
forgotten: give it a case, or an exemption with its reason.
"""

from __future__ import annotations

import copy
import json
import re
from dataclasses import dataclass
from typing import Any, Callable

import pulumi
import pytest

from conftest import PRODUCTION_SECRETS, ROOT, production_config, staging_config

from components.config import load_stack_config
from components.config.gitlab import RUNNER_KEYS, SCOPE_KEYS, VARIABLE_KEYS
from components.config.platform import DAEMON_KEYS, HOST_KEYS
from components.config.services import PRODUCTION_APP_KEYS

Config = dict[str, Any]
TOKEN = "glpat-MOCKtoken-0123456789"


def load(config: Config, stack: str) -> None:
    pulumi.runtime.set_all_config(
        {f"delivery:{k}": v if isinstance(v, str) else json.dumps(v) for k, v in config.items()},
        secret_keys=[f"delivery:{k}" for k in PRODUCTION_SECRETS if k in config],
    )
    load_stack_config(project="delivery", stack=stack)


def put(cfg: Config, path: str, value: Any) -> Config:
    """`cfg` with `value` at `path` (`a.b[0].c`), creating objects on the way."""
    out = copy.deepcopy(cfg)
    parts = [p for p in re.split(r"\.|(\[\d+\])", path) if p]
    node: Any = out
    for here, nxt in zip(parts, parts[1:] + [None]):
        key: Any = int(here[1:-1]) if here.startswith("[") else here
        if isinstance(node, list) and key == len(node):
            node.append(None)
        if nxt is None:
            node[key] = value
        else:
            if isinstance(key, str) and key not in node:
                node[key] = [] if nxt.startswith("[") else {}
            node = node[key]
    return out


@dataclass(frozen=True)
class Case:
    """A documented key, how to set it (valid value + suffix) and the key its error names."""

    key: str
    build: Callable[[str], tuple[Config, str]]
    error_key: str


def scalar(key: str, value: str, *, stack: str = "production", base: Callable[[], Config] = production_config, **extra: Any) -> Case:
    return Case(key, lambda s: ({**base(), **extra, key: value + s}, stack), key)


def nested(key: str, path: str, value: Any, *, base: Callable[[], Config] = production_config, **extra: Any) -> Case:
    """A field inside a structured key; non-string values (booleans, integers) are given as
    their text form plus the suffix when the suffix is set (a string is not a number)."""
    def build(s: str) -> tuple[Config, str]:
        v = value if not s else (value if isinstance(value, str) else json.dumps(value)) + s
        return put({**base(), **extra}, path, v), "production"

    return Case(key, build, path)


def named(key: str, container: str, name: str, value: Any, **extra: Any) -> Case:
    """The NAME of an entry of an object of named entries (dnsCredentials, ciVariables...)."""
    return Case(key, lambda s: ({**production_config(), **extra, container: {name + s: value}}, "production"), f"{container}.{name}")


def unpinned() -> Config:
    """The production example whose first host opts out of host key verification."""
    cfg = production_config()
    del cfg["hosts"][0]["hostKey"]
    return cfg


APP = "productionApps[0]"
RUNNER = "runners.production-runner"
VAR = "ciVariables.DEPLOY_ENVIRONMENT"

BACKUP: Config = {
    "backupRepository": "sftp:backup@192.0.2.40:/srv/restic",
    "backupPassword": "Mock-restic-password-1",
    "backupSftpPrivateKey": "-----BEGIN OPENSSH PRIVATE KEY-----\nMOCKBACKUPKEY\n-----END OPENSSH PRIVATE KEY-----\n",
    "backupSftpKnownHosts": "192.0.2.40 ecdsa-sha2-nistp256 AAAAE2VjZHNhLXNoYTItbmlzdHAyNTYAAAAIbmlzdHAyNTY=",
}
S3_BACKUP: Config = {
    "backupRepository": "s3:https://s3.example.net/bucket/platform",
    "backupPassword": "Mock-restic-password-1",
    "backupCredentials": {"AWS_ACCESS_KEY_ID": "Mock-access-key", "AWS_SECRET_ACCESS_KEY": "Mock-secret-key"},
}

CASES: list[Case] = [
    # platform and hosts
    scalar("domain", "company.ru"),
    scalar("timezone", "Europe/Volgograd"),
    scalar("dockerPackage", "docker-ce"),
    scalar("dockerVersion", "29.2.0"),
    scalar("dockerCaValidityHours", "87600"),
    scalar("dockerCertValidityHours", "8760"),
    scalar("dockerCertEarlyRenewalHours", "720"),
    Case("dockerClients", lambda s: ({**production_config(), "dockerClients": ["operator", "ci" + s]}, "production"), "dockerClients[1]"),
    scalar("productionStack", "organization/delivery/production", stack="staging", base=staging_config),
    nested("hosts[].name", "hosts[0].name", "production"),
    nested("hosts[].address", "hosts[0].address", "192.168.88.1"),
    nested("hosts[].user", "hosts[0].user", "deploy"),
    nested("hosts[].port", "hosts[0].port", 22),
    nested("hosts[].hostKey", "hosts[0].hostKey", "ecdsa-sha2-nistp256 AAAAE2VjZHNhLXNoYTItbmlzdHAyNTYAAAAIbmlzdHAyNTY="),
    nested("hosts[].insecureSkipHostKeyCheck", "hosts[0].insecureSkipHostKeyCheck", True, base=unpinned),
    nested("hosts[].roles", "hosts[0].roles[1]", "production-runner"),
    nested("hosts[].dnsNames", "hosts[0].dnsNames[0]", "production.company.ru"),
    nested("hosts[].dockerListenAddress", "hosts[0].dockerListenAddress", "0.0.0.0"),
    nested("hosts[].dockerPort", "hosts[0].dockerPort", 2376),
    nested("hosts[].adopt", "hosts[0].adopt", True),
    nested("reviewAppsDaemon.name", "reviewAppsDaemon.name", "staging"),
    nested("reviewAppsDaemon.address", "reviewAppsDaemon.address", "192.168.88.3"),
    nested("reviewAppsDaemon.dnsNames", "reviewAppsDaemon.dnsNames[0]", "staging.company.ru"),
    nested("reviewAppsDaemon.dockerPort", "reviewAppsDaemon.dockerPort", 2376),
    # services
    scalar("gitlabVersion", "18.5.1-ce.0"),
    scalar("gitlabShmSize", "256"),
    scalar("gitlabRootPassword", "Mock-root-passw0rd-7Qx"),
    scalar("traefikVersion", "v3.6.1"),
    scalar("acmeEmail", "mail@company.ru"),
    scalar("acmeStaging", "true"),
    nested("productionApps[].name", f"{APP}.name", "demo"),
    nested("productionApps[].host", f"{APP}.host", "company.ru"),
    nested("productionApps[].url", f"{APP}.url", "http://192.168.88.1:8000"),
    scalar("wildcardMethod", "traefik"),
    scalar("dnsProvider", "cloudflare"),
    named("dnsCredentials.<NAME>", "dnsCredentials", "CF_DNS_API_TOKEN", "mock-dns-api-token-4Kd9"),
    scalar("dnsPropagationSeconds", "120"),
    scalar("dnsrobocertVersion", "3.26.1"),
    scalar("acmeServer", "https://ca.example.net:9000/acme/directory"),
    scalar("gitlabReadyTimeoutSeconds", "300"),
    nested("dnsResolvers", "dnsResolvers[0]", "192.0.2.53:53"),
    scalar("dnsPropagationCheck", "false"),
    # edge protection
    nested("dockerApiAllowedSources", "dockerApiAllowedSources[0]", "192.0.2.0/24"),
    nested("fail2banIgnoreIps", "fail2banIgnoreIps[0]", "192.0.2.7"),
    nested("fail2banJails", "fail2banJails.traefik-dashboard.maxRetry", 5),
    scalar("logRotationKeep", "14"),
    scalar("logRotationMaxSize", "100M"),
    # maintenance: registry clean-up, CA rotation (components/config/maintenance.py)
    scalar("registryCleanup", "true"),
    nested("registryCleanupProjects", "registryCleanupProjects[0]", "group/app"),
    scalar("registryCleanupOlderThanDays", "14"),
    scalar("registryCleanupKeepN", "5"),
    scalar("registryCleanupCadence", "1d"),
    scalar("registryCleanupDeleteRegex", ".+-[0-9a-f]{8,40}"),
    scalar("registryCleanupKeepRegex", "(main|master)([-.].*)?"),
    scalar("registryGc", "true"),
    scalar("registryGcSchedule", "Sun *-*-* 03:30:00"),
    scalar("registryGcDeleteUntagged", "true"),
    scalar("dockerCaGeneration", "2"),
    scalar("dockerCaRotation", "trust"),
    nested("traefikRateLimits", "traefikRateLimits.gitlabSignIn.average", 10),
    scalar("traefikInFlightRequests", "200"),
    # GitLab integration
    scalar("gitlabToken", TOKEN, gitlabIntegration="enabled"),
    scalar("gitlabIntegration", "enabled", gitlabToken=TOKEN),
    scalar("gitlabUrl", "https://gitlab.company.ru"),
    scalar("gitlabAllowInsecureUrl", "true"),
    scalar("gitlabRunnerVersion", "v18.5.0"),
    scalar("runnerDefaultImage", "docker:29.2.0-cli"),
    nested("runnerScope.project", "runnerScope.project", "group/app"),
    nested("runnerScope.group", "runnerScope.group", "group"),
    nested("runnerScope.projects", "runnerScope.projects[0]", "group/app"),
    scalar("infraProject", "group/delivery", runnerScope={"group": "group"}),
    nested("runners.<role>.tags", f"{RUNNER}.tags[0]", "production"),
    nested("runners.<role>.accessLevel", f"{RUNNER}.accessLevel", "ref_protected"),
    nested("runners.<role>.locked", f"{RUNNER}.locked", False),
    nested("runners.<role>.concurrent", f"{RUNNER}.concurrent", 2),
    nested("runners.<role>.requestConcurrency", f"{RUNNER}.requestConcurrency", 2),
    nested("runners.<role>.maximumTimeout", f"{RUNNER}.maximumTimeout", 3600),
    nested("runners.<role>.volumes", f"{RUNNER}.volumes[0]", "/cache"),
    nested("runners.<role>.allowDangerous", f"{RUNNER}.allowDangerous[0]", "volumes", runners={"production-runner": {"volumes": ["/etc:/e"]}}),
    scalar("ciProject", "group/app"),
    scalar("ciEnvironmentScope", "production"),
    scalar("ciSecretEnvironmentScope", "production"),
    named("ciVariables.<NAME>", "ciVariables", "DEPLOY_ENVIRONMENT", "production"),
    nested("ciVariables.<NAME>.masked", f"{VAR}.masked", False, ciVariables={"DEPLOY_ENVIRONMENT": {"value": "production"}}),
    nested("ciVariables.<NAME>.protected", f"{VAR}.protected", False, ciVariables={"DEPLOY_ENVIRONMENT": {"value": "production"}}),
    nested("ciVariables.<NAME>.raw", f"{VAR}.raw", False, ciVariables={"DEPLOY_ENVIRONMENT": {"value": "production"}}),
    nested("ciVariables.<NAME>.hidden", f"{VAR}.hidden", False, ciVariables={"DEPLOY_ENVIRONMENT": {"value": "production"}}),
    nested("ciVariables.<NAME>.environmentScope", f"{VAR}.environmentScope", "review/*", ciVariables={"DEPLOY_ENVIRONMENT": {"value": "production"}}),
    named("ciSecretVariables.<NAME>", "ciSecretVariables", "API_SECRET", "Mock-secret-value-0123"),
    Case("ciSecretVariables.<NAME> (value)", lambda s: ({**production_config(), "ciSecretVariables": {"API_SECRET": "Mock-secret-value-0123" + s}}, "production"), "ciSecretVariables.API_SECRET"),
    scalar("dnsProviderApiToken", "mock-dns-api-token-4Kd9"),
    # backups (components/config/backup.py)
    scalar("backupRepository", "sftp:backup@192.0.2.40:/srv/restic", **{k: v for k, v in BACKUP.items() if k != "backupRepository"}),
    scalar("backupPassword", "Mock-restic-password-1", **{k: v for k, v in BACKUP.items() if k != "backupPassword"}),
    scalar("backupSftpKnownHosts", BACKUP["backupSftpKnownHosts"], **{k: v for k, v in BACKUP.items() if k != "backupSftpKnownHosts"}),
    scalar("backupSchedule", "*-*-* 02:30:00", **BACKUP),
    scalar("backupCheckSchedule", "Sun *-*-* 05:00:00", **BACKUP),
    scalar("backupKeep", "14", **BACKUP),
    scalar("backupWebhookUrl", "https://hooks.example.net/backup", **BACKUP),
    nested("backupGitlabSkip", "backupGitlabSkip[0]", "registry", **BACKUP),
    Case("backupCredentials.<NAME>", lambda s: ({**production_config(), **S3_BACKUP, "backupCredentials": {"AWS_ACCESS_KEY_ID": "Mock-access-key", "AWS_SECRET_ACCESS_KEY": "Mock-secret-key", "AWS_DEFAULT_REGION" + s: "eu-west-1"}}, "production"), "backupCredentials.AWS_DEFAULT_REGION"),
    Case("backupCredentials.<NAME> (value)", lambda s: ({**production_config(), **S3_BACKUP, "backupCredentials": {"AWS_ACCESS_KEY_ID": "Mock-access-key" + s, "AWS_SECRET_ACCESS_KEY": "Mock-secret-key"}}, "production"), "backupCredentials.AWS_ACCESS_KEY_ID"),
]

#: Documented keys that take free text on purpose, and the structured keys whose fields have
#: their own cases; a trailing line break is legitimate or checked elsewhere.
EXEMPT: dict[str, str] = {
    "sshPrivateKey": "an OpenSSH/PEM private key; it ends with a line break",
    "acmeCaCertificate": "PEM certificates; they end with a line break, and are parsed as certificates",
    "dnsExecScript": "a shell script, several lines",
    "traefikDashboardUsers": "htpasswd lines: line breaks separate users, each line is checked as a whole",
    "runnerTokenRotation": "any text; only a change of it matters (the runners' replacement trigger)",
    "runners.<role>.description": "free text GitLab shows",
    "ciVariables.<NAME>.value": "any text, several lines allowed; masked values are checked (see ciSecretVariables)",
    "ciVariables.<NAME>.description": "free text GitLab shows",
    "dnsCredentials.<NAME> (value)": "written to a file as given; some providers' credentials are several lines (JSON keys)",
    "hosts": "structured: its fields have cases",
    "reviewAppsDaemon": "structured: its fields have cases",
    "productionApps": "structured: its fields have cases",
    "runnerScope": "structured: its fields have cases",
    "runners": "structured: its fields have cases",
    "ciVariables": "structured: its entries and their fields have cases",
    "ciSecretVariables": "structured: its names and values have cases",
    "dnsCredentials": "structured: its names have cases",
    "backupSftpPrivateKey": "an OpenSSH/PEM private key; it ends with a line break",
    "backupCredentials": "structured: its names and values have cases",
}


def documented_keys() -> set[str]:
    """Top-level keys of the README's configuration tables, host fields, and the nested fields
    the parser accepts (HOST_KEYS, RUNNER_KEYS, ...)."""
    readme = (ROOT / "README.md").read_text()
    section = readme.split("## Configuration", 1)[1].split("\n## ", 1)[0]
    keys: set[str] = set()
    header = ""
    for line in section.splitlines():
        if not line.startswith("|"):
            header = ""
            continue
        cells = [c.strip() for c in line.strip("|").split("|")]
        if not header:
            header = cells[0]
            continue
        m = re.fullmatch(r"`([A-Za-z][A-Za-z0-9]*)`", cells[0])
        if m:
            keys.add(f"hosts[].{m.group(1)}" if header == "field" else m.group(1))
    keys |= {f"hosts[].{k}" for k in HOST_KEYS}
    keys |= {f"reviewAppsDaemon.{k}" for k in DAEMON_KEYS}
    keys |= {f"runnerScope.{k}" for k in SCOPE_KEYS}
    keys |= {f"runners.<role>.{k}" for k in RUNNER_KEYS}
    keys |= {f"productionApps[].{k}" for k in PRODUCTION_APP_KEYS}
    keys |= {f"ciVariables.<NAME>.{k}" for k in VARIABLE_KEYS}
    keys |= {"backupCredentials.<NAME>", "backupCredentials.<NAME> (value)"}
    keys |= {"ciVariables.<NAME>", "ciSecretVariables.<NAME>", "ciSecretVariables.<NAME> (value)", "dnsCredentials.<NAME>", "dnsCredentials.<NAME> (value)"}
    return keys


def test_every_documented_key_has_a_case_or_a_reason():
    covered = {c.key for c in CASES} | set(EXEMPT)
    missing = sorted(documented_keys() - covered)
    assert not missing, f"keys without a trailing-line-break case or an exemption: {missing}"
    stale = sorted(covered - documented_keys())
    assert not stale, f"cases for keys the README and the parser do not know: {stale}"


@pytest.mark.parametrize("case", CASES, ids=lambda c: c.key)
def test_trailing_line_break_is_refused_and_names_the_key(case: Case):
    config, stack = case.build("")
    load(config, stack)  # the value itself is valid
    config, stack = case.build("\n")
    with pytest.raises(pulumi.RunError) as e:
        load(config, stack)
    assert f"delivery:{case.error_key}" in str(e.value), str(e.value)


@pytest.mark.parametrize("field", ["hosts[0].address", "hosts[0].dockerListenAddress", "reviewAppsDaemon.address"])
@pytest.mark.parametrize("address", ["fe80::1%eth0", "fe80::1%a b;$(reboot)"])
def test_ipv6_address_with_a_zone_is_refused(field: str, address: str):
    with pytest.raises(pulumi.RunError) as e:
        load(put(production_config(), field, address), "production")
    assert f"delivery:{field}: expected an IPv4 or IPv6 address without a zone" in str(e.value)
