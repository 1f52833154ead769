"""The contract between the stacks: what staging reads from production through the
StackReference named in its config, what each stack exports, and the clear error for a
missing output."""

from __future__ import annotations

import base64
import io
import re
import tarfile
import tomllib
from typing import Any

import pulumi
import pytest

from conftest import PRODUCTION_STACK, StackRun, production_outputs, run_stack, staging_config
from gitlab_stacks import API_TOKEN, DNS_API_TOKEN, SECRETS, production_base, run_production, run_staging

staging = run_staging


def without(name: str) -> dict[str, Any]:
    outputs = production_outputs()
    del outputs[name]
    return outputs


def docker_files(run: StackRun, host: str) -> dict[str, str]:
    stdin = run.named(f"{host}-docker-config").plain["stdin"]
    with tarfile.open(fileobj=io.BytesIO(base64.b64decode(stdin))) as tar:
        return {m.name: tar.extractfile(m).read().decode() for m in tar.getmembers() if m.isfile()}


# -- what staging reads from production -----------------------------------------------------------
def test_stack_reference_reads_the_stack_named_in_config():
    # The mocks know only the stack named here (any other name fails the run).
    outputs = production_outputs()
    outputs["delegatedDockerServers"]["staging"]["trustPem"] = "-----BEGIN CERTIFICATE-----\nMOCKprod-ca\n-----END CERTIFICATE-----\n"
    run = staging(outputs, stack_name="acme/delivery/prod")
    assert docker_files(run, "staging")["etc/docker/tls/ca.pem"] == outputs["delegatedDockerServers"]["staging"]["trustPem"]


def test_a_stack_reference_to_another_stack_fails():
    with pytest.raises(Exception, match="unknown stack 'organization/delivery/production'"):
        run_stack(
            staging_config(),
            secrets=SECRETS,
            stack="staging",
            stack_outputs={"acme/delivery/prod": production_outputs()},
        )


def test_staging_daemon_uses_the_ca_and_server_certificate_from_production():
    run = staging()
    files = docker_files(run, "staging")
    expected = production_outputs()
    assert files["etc/docker/tls/ca.pem"] == expected["delegatedDockerServers"]["staging"]["trustPem"]
    assert files["etc/docker/tls/server-cert.pem"] == expected["delegatedDockerServers"]["staging"]["certPem"]
    assert files["etc/docker/tls/server-key.pem"] == expected["delegatedDockerServers"]["staging"]["keyPem"]


def test_staging_runner_reaches_gitlab_at_the_production_stacks_url():
    outputs = production_outputs()
    outputs["gitlabUrl"] = "https://code.company.ru"
    run = staging(outputs, gitlabToken=API_TOKEN)
    cfg = tomllib.loads(run.named("gitlab-runner-staging-config").plain["stdin"])
    assert cfg["runners"][0]["url"] == "https://code.company.ru"
    provider = run.named("gitlab-api")
    assert provider.plain["baseUrl"] == "https://code.company.ru/api/v4/", provider.urn


def test_staging_gitlab_url_override_does_not_need_the_output():
    run = staging(without("gitlabUrl"), gitlabToken=API_TOKEN, gitlabUrl="https://git.example.org")
    assert run.named("gitlab-api").plain["baseUrl"] == "https://git.example.org/api/v4/"


def test_staging_without_token_does_not_need_the_gitlab_url_output():
    run = staging(without("gitlabUrl"))
    assert run.outputs["wildcardDomain"] == "dev.company.ru"


# -- a missing output stops the run, naming the stack and the output ---------------------------------
# (dockerCaCertPem, operatorClient, delegatedDockerServers: tests/test_docker_host.py)
def test_missing_gitlab_url_output_names_stack_and_output():
    pattern = rf"stack '{re.escape(PRODUCTION_STACK)}' has no output 'gitlabUrl'"
    with pytest.raises(pulumi.RunError, match=pattern):
        staging(without("gitlabUrl"), gitlabToken=API_TOKEN)


def test_missing_server_certificate_entry_names_the_output():
    outputs = production_outputs()
    outputs["delegatedDockerServers"] = {}
    with pytest.raises(pulumi.RunError, match=r"output 'delegatedDockerServers' has no entry 'staging\.\w+'"):
        staging(outputs)


# -- the staging host is the daemon production declared (address, port, names) ---------------------
@pytest.mark.parametrize("field, theirs, message", [
    ("address", "192.168.88.30", r"delivery:hosts\[0\]\.address is '192\.168\.88\.3' here, delivery:reviewAppsDaemon\.address is '192\.168\.88\.30'"),
    ("port", 12376, r"delivery:hosts\[0\]\.dockerPort is 2376 here, delivery:reviewAppsDaemon\.dockerPort is 12376"),
    ("dnsNames", ["staging.company.ru"], r"delivery:hosts\[0\]\.dnsNames is \[\] here, delivery:reviewAppsDaemon\.dnsNames is \['staging\.company\.ru'\]"),
])
def test_staging_fails_when_its_host_is_not_the_declared_review_daemon(field, theirs, message):
    outputs = production_outputs()
    outputs["delegatedDockerServers"]["staging"]["identity"][field] = theirs
    with pytest.raises(pulumi.RunError, match=message):
        staging(outputs)


def test_matching_identity_evaluates():
    outputs = production_outputs()
    run = staging(outputs)
    assert run.named("staging-engine")


def test_production_declares_the_review_daemons_port():
    cfg = production_base()
    cfg["reviewAppsDaemon"] = {"name": "staging", "address": "192.168.88.3", "dockerPort": 12376}
    run = run_stack(cfg, secrets=SECRETS)
    assert run.outputs["delegatedDockerServers"]["staging"]["identity"]["port"] == 12376
    assert run.outputs["reviewAppsDockerEndpoint"] == "tcp://192.168.88.3:12376"


# -- what each stack exports ---------------------------------------------------------------------------
def test_production_stack_evaluates_without_any_staging_stack():
    # The mocks know no stack at all: any StackReference would fail the run.
    run = run_stack(production_base(), secrets=SECRETS, stack_outputs={})
    assert {"dockerCaCertPem", "operatorClient", "delegatedDockerServers", "gitlabUrl", "reviewAppsDockerEndpoint"} <= set(run.outputs)


def test_production_exports_gitlab_url_in_plain_text():
    run = run_stack(production_base(), secrets=SECRETS)
    assert run.outputs["gitlabUrl"] == "https://gitlab.company.ru"
    assert "gitlabUrl" not in run.secret_outputs


def test_production_exports_key_material_only_as_secrets():
    run = run_stack(production_base(), secrets=SECRETS)
    assert {"operatorClient", "delegatedDockerServers"} <= run.secret_outputs
    assert "dockerCaCertPem" not in run.secret_outputs


def test_staging_exports_what_review_app_pipelines_need():
    run = staging()
    assert run.outputs["reviewAppsDockerEndpoint"] == "tcp://192.168.88.3:2376"
    assert run.outputs["wildcardDomain"] == "dev.company.ru"
    assert run.outputs["runnerTags"] == {"staging-runner": ["staging"]}
    assert not {"reviewAppsDockerEndpoint", "wildcardDomain", "runnerTags"} & run.secret_outputs


def test_runner_tags_output_follows_config():
    run = staging(runners={"staging-runner": {"tags": ["staging", "qa"]}})
    assert run.outputs["runnerTags"] == {"staging-runner": ["staging", "qa"]}


def test_production_exports_its_runner_tags():
    run = run_stack(production_base(), secrets=SECRETS)
    assert run.outputs["runnerTags"] == {"production-runner": ["production"]}


def test_no_output_holds_a_token():
    run = run_production()
    text = repr(run.outputs)
    assert "glrt-" not in text and API_TOKEN not in text and DNS_API_TOKEN not in text
