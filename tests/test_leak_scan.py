"""The leak scan (tests/leak_scan.py) over both stacks with every optional feature switched on:
no secret config value may appear in plain text in any resource name, input, registered
output or stack output. The configurations below set every key the project declares (a test
checks it), each secret key as a secret, with distinctive values."""

from __future__ import annotations

import base64
import io
import tarfile
from dataclasses import dataclass, field
from typing import Any

import pulumi
import pulumi_command as command
import pytest
import yaml

from conftest import (
    HOST_KEYS,
    PRODUCTION_SECRETS,
    PRODUCTION_STACK,
    ROOT,
    ca_certificate_pem,
    production_config,
    production_outputs,
    run_program,
    run_stack,
    staging_config,
)
from leak_scan import find_leaks, secret_values

#: Every key set with --secret in the scan's configurations: the project's secret keys and
#: ciVariables, which may be set as a secret (its values then stay secret).
SECRET_KEYS = PRODUCTION_SECRETS + ("ciVariables",)

SSH_KEY = "-----BEGIN OPENSSH PRIVATE KEY-----\nMOCKscanSSHkeyBody0123456789abcdefABCDEF\n-----END OPENSSH PRIVATE KEY-----\n"
ADMIN = "admin:$2y$05$Yjbx6uDjVn.KmF.QfdNASef9tXCH2kTE8mBb8xF2ir.HGy.mN3V9q"
OPS = "ops:$2b$10$rqC.k/aol0AdK3use4mOxOkrRX7YHgChFeHSu55uTQALNclaDNbCy"


def everything_on_gitlab(**overrides: Any) -> dict[str, Any]:
    """The GitLab integration with every option: token, runners' overrides, CI variables."""
    return {
        "gitlabIntegration": "enabled",
        "gitlabToken": "glpat-SCANtoken-9f8e7d6c5b4a",
        "gitlabRunnerVersion": "v18.5.0",
        "runnerDefaultImage": "docker:29.2.0-cli",
        "runnerTokenRotation": "2026-07",
        "ciProject": "group/app",
        "ciEnvironmentScope": "*",
        "ciVariables": {
            "DEPLOY_ENVIRONMENT": "Scan-plain-variable-value-31",
            "API_KEY": {"value": "Scan-api-key-value-Zx81", "masked": True, "protected": True, "hidden": True, "raw": True},
            "REPORT_URL": {"value": "Scan-report-url-value-Q2", "environmentScope": "review/*", "description": "Scan-description-of-report-77"},
        },
        "ciSecretVariables": {"SENTRY_DSN": "Scan-ci-secret-variable-Pp3", "DEPLOY_KEY": "Scan-ci-deploy-key-Uu9"},
        **overrides,
    }


def production_everything_on() -> dict[str, Any]:
    """Production and Services, wildcard certificate by Traefik (lego), every option."""
    cfg = production_config(
        sshPrivateKey=SSH_KEY,
        dockerPackage="docker-ce",
        dockerVersion="29.2.0",
        dockerCaValidityHours=87600,
        dockerCertValidityHours=8760,
        dockerCertEarlyRenewalHours=720,
        dockerClients=["operator", "deployer"],
        dockerApiAllowedSources=["192.0.2.0/24"],
        fail2banIgnoreIps=["192.0.2.7"],
        logRotationKeep=30,
        logRotationMaxSize="200M",
        # maintenance: registry clean-up and GC, a CA rotation under way
        registryCleanup=True,
        registryCleanupProjects=["group/app", "group/other"],
        registryCleanupOlderThanDays=30,
        registryCleanupKeepN=10,
        registryCleanupCadence="7d",
        registryCleanupDeleteRegex="review-.+",
        registryCleanupKeepRegex="(main|master|v[0-9].*)",
        registryGc=True,
        registryGcSchedule="Sat *-*-* 02:00:00",
        registryGcDeleteUntagged=True,
        dockerCaGeneration=1,
        dockerCaRotation="switch",
        traefikRateLimits={"gitlabApi": {"average": 80, "period": 1, "burst": 300}},
        traefikInFlightRequests=150,
        hosts=[
            {
                "name": "production", "address": "192.168.88.1", "hostKey": HOST_KEYS["production"], "user": "deploy",
                "port": 2222, "roles": ["traefik", "production-runner"], "dnsNames": ["production.company.ru"],
                "dockerListenAddress": "0.0.0.0", "dockerPort": 12376,
            },
            {"name": "services", "address": "192.168.88.2", "insecureSkipHostKeyCheck": True, "roles": ["gitlab"]},
        ],
        reviewAppsDaemon={"name": "staging", "address": "192.168.88.3", "dnsNames": ["staging.company.ru"]},
        gitlabVersion="18.5.1-ce.0",
        gitlabShmSize=512,
        gitlabRootPassword="Scan-root-passw0rd-Kq7",
        traefikVersion="v3.6.1",
        acmeEmail="mail@company.ru",
        acmeStaging=True,
        traefikDashboardUsers=f"{ADMIN}\n{OPS}\n",
        productionApps=[
            {"name": "demo", "host": "company.ru", "url": "http://192.168.88.1:8000"},
            {"name": "shop", "host": "shop.company.ru", "url": "http://192.168.88.1:8001"},
        ],
        wildcardMethod="traefik",
        dnsProvider="cloudflare",
        dnsCredentials={"CF_DNS_API_TOKEN": "Scan-cf-dns-api-token-Ab12", "CF_ZONE_API_TOKEN": "Scan-cf-zone-api-token-Cd34"},
        dnsPropagationSeconds=120,
        dnsResolvers=["192.0.2.53", "192.0.2.54:5353"],
        dnsPropagationCheck=True,
        dnsrobocertVersion="3.26.1",
        gitlabReadyTimeoutSeconds=600,
        backupRepository="sftp:scanbackup@192.0.2.40:/srv/Scan-restic-repo-Rr41",
        backupPassword="Scan-restic-password-Tt52",
        backupSftpPrivateKey="-----BEGIN OPENSSH PRIVATE KEY-----\nMOCKscanBackupKeyBody0123456789\n-----END OPENSSH PRIVATE KEY-----\n",
        backupSftpKnownHosts="192.0.2.40 " + HOST_KEYS["staging"],
        backupSchedule="*-*-* 03:15:00",
        backupCheckSchedule="Sat *-*-* 04:00:00",
        backupKeep=21,
        backupGitlabSkip=["registry", "artifacts"],
        backupWebhookUrl="https://hooks.example.net/Scan-webhook-token-Ww63",
        ciSecretEnvironmentScope="production",
        infraProject="group/delivery",
        **everything_on_gitlab(
            gitlabUrl="https://git.company.ru",
            gitlabAllowInsecureUrl=False,
            runnerScope={"group": "platform"},
            dnsProviderApiToken="Scan-dns-provider-api-token-Ef56",
            runners={
                "production-runner": {
                    "tags": ["production", "deploy"], "accessLevel": "ref_protected", "locked": True, "concurrent": 2,
                    "requestConcurrency": 2, "maximumTimeout": 7200, "description": "Scan production runner",
                    "volumes": ["/var/run/docker.sock:/var/run/docker.sock", "/cache", "/etc/ssl/certs:/certs:ro"],
                    "allowDangerous": ["volumes"],
                }
            },
        ),
    )
    return cfg


def all_in_one_everything_on() -> dict[str, Any]:
    """One host with GitLab and Traefik (their shared network), wildcard by dnsrobocert, GitLab
    reached over http in a lab."""
    cfg = production_everything_on()
    cfg.update(
        hosts=[{
            "name": "allinone", "address": "10.0.0.5", "hostKey": HOST_KEYS["production"],
            "roles": ["gitlab", "traefik", "review-apps", "production-runner"],
        }],
        wildcardMethod="dnsrobocert",
        dnsProvider="yandex",
        dnsCredentials={"auth_token": "Scan-lexicon-auth-token-Gh78"},
        gitlabUrl="http://10.0.0.5",
        gitlabAllowInsecureUrl=True,
        runnerScope={"project": "group/app"},
        acmeServer="https://ca.lab.example:9000/acme/directory",
        acmeCaCertificate=ca_certificate_pem("scan ACME CA"),
        backupRepository="s3:https://s3.example.net/Scan-bucket-Ss74/platform",
        backupCredentials={"AWS_ACCESS_KEY_ID": "Scan-aws-access-key-Aa85", "AWS_SECRET_ACCESS_KEY": "Scan-aws-secret-key-Bb96"},
    )
    for key in ("backupSftpPrivateKey", "backupSftpKnownHosts"):
        cfg.pop(key)
    for key in ("reviewAppsDaemon", "dnsProviderApiToken", "acmeStaging", "dnsResolvers", "infraProject"):
        cfg.pop(key)
    return cfg


def production_exec_dns() -> dict[str, Any]:
    """Production with lego's exec DNS provider: the user's script is a secret."""
    cfg = production_everything_on()
    cfg.update(dnsProvider="exec", dnsExecScript="#!/bin/sh\n# Scan-exec-script-body-Xy12\ncurl -s https://dns.example/api\n",
               dnsPropagationCheck=False)
    cfg.pop("dnsCredentials")
    return cfg


def staging_everything_on() -> dict[str, Any]:
    return staging_config(
        sshPrivateKey=SSH_KEY,
        acmeEmail="mail@company.ru",
        **everything_on_gitlab(
            runnerScope={"project": "group/app"},
            dnsProviderApiToken="Scan-staging-dns-token-Ij90",
            runners={"staging-runner": {"concurrent": 10, "requestConcurrency": 5, "tags": ["staging", "review"], "volumes": ["/srv/gitlab-runner/jobs:/logs"]}},
        ),
    )


@dataclass(frozen=True)
class Variant:
    name: str
    config: dict[str, Any]
    stack: str = "production"
    stack_outputs: dict[str, Any] = field(default_factory=dict)

    def run(self):
        return run_stack(self.config, secrets=SECRET_KEYS, stack=self.stack, stack_outputs=self.stack_outputs)


VARIANTS = [
    Variant("production", production_everything_on()),
    Variant("production-all-in-one", all_in_one_everything_on()),
    Variant("production-exec-dns", production_exec_dns()),
    Variant("staging", staging_everything_on(), "staging", {PRODUCTION_STACK: production_outputs()}),
]


@pytest.mark.parametrize("variant", VARIANTS, ids=lambda v: v.name)
def test_no_secret_config_value_is_stored_in_plain_text(variant: Variant):
    secrets = secret_values(variant.config, SECRET_KEYS)
    assert len(secrets) >= 8, sorted(secrets)
    run = variant.run()
    leaks = find_leaks(run, secrets)
    assert not leaks, "\n".join(map(str, leaks))


def declared_keys() -> tuple[set[str], set[str]]:
    """(every key Pulumi.yaml declares, including its structured keys; the secret ones)."""
    project = yaml.safe_load((ROOT / "Pulumi.yaml").read_text())
    text = (ROOT / "Pulumi.yaml").read_text()
    block = text.split("# Structured keys", 1)[1].split("\nconfig:", 1)[0]
    import re

    structured = set(re.findall(r"^#   ([a-zA-Z]+)\s", block, flags=re.M))
    secret = {k for k, d in project["config"].items() if d.get("secret")} | {"ciSecretVariables", "dnsCredentials"}
    return set(project["config"]) | structured, secret


def test_the_scan_sets_every_declared_key_and_every_secret_as_a_secret():
    keys, secret = declared_keys()
    set_somewhere = set().union(*(v.config for v in VARIANTS))
    assert not keys - set_somewhere, f"keys no scan configuration sets (switch the feature on): {sorted(keys - set_somewhere)}"
    assert secret <= set(SECRET_KEYS), f"secret keys the scan does not set as secrets: {sorted(secret - set(SECRET_KEYS))}"


# -- the scan itself can fail --------------------------------------------------------------------
SECRET = "Planted-secret-value-Mn45"


def planted(where: str):
    """A tiny program that puts SECRET somewhere, the way a defect would."""

    class Holder(pulumi.ComponentResource):
        def __init__(self, outputs: dict) -> None:
            super().__init__("test:leak:Holder", "holder", None, None)
            self.register_outputs(outputs)

    def program():
        tar = io.BytesIO()
        with tarfile.open(fileobj=tar, mode="w") as t:
            data = f"password: {SECRET}\n".encode()
            info = tarfile.TarInfo("srv/x/config.yml")
            info.size = len(data)
            t.addfile(info, io.BytesIO(data))
        bundle = base64.b64encode(b"xy" + tar.getvalue()).decode()  # shifted off the 3-byte grid
        stdin = {"plain": f"key={SECRET}", "base64-tar": bundle, "secret": pulumi.Output.secret(f"key={SECRET}")}[
            "plain" if where == "input" else where if where in ("base64-tar", "secret") else "secret"
        ]
        command.local.Command("cmd", create="true", stdin=stdin)
        Holder({"note": f"the {SECRET}"} if where == "component-output" else {"note": "nothing"})
        return {"out": SECRET} if where == "stack-output" else {}

    return run_program(program, {})


@pytest.mark.parametrize("where", ["input", "base64-tar", "component-output", "stack-output"])
def test_the_scan_finds_a_planted_leak(where: str):
    leaks = find_leaks(planted(where), {"plantedKey": SECRET})
    assert leaks, f"the scan missed a secret left in plain text ({where})"


def test_the_scan_accepts_a_secret_kept_secret():
    assert find_leaks(planted("secret"), {"plantedKey": SECRET}) == []


def test_the_scan_refuses_secrets_too_short_to_find():
    with pytest.raises(ValueError, match="too short"):
        secret_values({"gitlabToken": "abc"}, ["gitlabToken"])
