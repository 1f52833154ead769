"""The services in the whole graph: secrets stay secret (never in a label, an environment, a
command line or a plain output), every image is pinned, outputs are the documented contract."""

from __future__ import annotations

import re

import pytest
import yaml

from conftest import HOST_KEY, PRODUCTION_SECRETS, production_config, run_stack
from service_files import SECRET_VALUES, bundle, plain_strings, production

DNSROBOCERT = {"wildcardMethod": "dnsrobocert", "dnsProvider": "yandex", "dnsCredentials": {"auth_token": "mock-lexicon-token-93Fa"}}
SECRETS_BY_METHOD = {
    "traefik": SECRET_VALUES,
    "dnsrobocert": tuple(v for v in SECRET_VALUES if not v.startswith("mock-dns")) + ("mock-lexicon-token-93Fa",),
}
#: A pinned tag: not latest, not a bare major (v3, 18); an exact version.
PINNED = re.compile(r"^[a-z0-9./_-]+:v?\d+\.\d+\.\d+([.-][A-Za-z0-9.]+)*$")


def run_for(method: str):
    return production(**DNSROBOCERT) if method == "dnsrobocert" else production()


@pytest.mark.parametrize("method", ["traefik", "dnsrobocert"])
def test_no_secret_value_appears_in_a_plain_input(method):
    run = run_for(method)
    leaks = [
        f"{r.urn} {key}.{path}"
        for r in run.registrations
        for key, value in r.inputs.items()
        for path, text in plain_strings(value)
        for secret in SECRETS_BY_METHOD[method]
        if secret in text
    ]
    assert not leaks, f"secret values in plain inputs: {leaks}"


@pytest.mark.parametrize("method", ["traefik", "dnsrobocert"])
def test_no_secret_value_is_in_a_label_env_or_command_line(method):
    run = run_for(method)
    for r in run.of_type("docker:index/container:Container"):
        for key in ("labels", "envs", "command", "entrypoints"):
            for _, text in plain_strings(r.plain.get(key)):
                assert not [s for s in SECRETS_BY_METHOD[method] if s in text], f"{r.urn} {key}"
    for r in run.of_type("command:remote:Command"):
        assert not [s for s in SECRETS_BY_METHOD[method] if s in r.plain.get("create", "")], r.urn


@pytest.mark.parametrize("method", ["traefik", "dnsrobocert"])
def test_no_secret_value_is_in_a_plain_output(method):
    run = run_for(method)
    for name, value in run.outputs.items():
        if name in run.secret_outputs:
            continue
        for _, text in plain_strings(value):
            assert not [s for s in SECRETS_BY_METHOD[method] if s in text], f"output {name}"


def test_the_steps_that_carry_secrets_send_them_as_secrets():
    run = production()
    for name in ("gitlab-server-root-password", "traefik-files", "wildcard-certificate-credentials"):
        step = run.named(name)
        assert step.secret("stdin"), f"{step.urn}: stdin must be secret"
        assert step.secret("triggers"), f"{step.urn}: the trigger hashes secret content, so it is secret too"


def test_the_leak_check_can_fail():
    """The walk above sees plain strings: a secret put in a label would be found."""
    found = [p for p, t in plain_strings({"labels": [{"label": "x", "value": SECRET_VALUES[0]}]}) if SECRET_VALUES[0] in t]
    assert found == ["labels[0].value"]


@pytest.mark.parametrize("method", ["traefik", "dnsrobocert"])
def test_every_image_has_a_pinned_tag(method):
    run = run_for(method)
    images = run.of_type("docker:index/remoteImage:RemoteImage")
    assert {r.name for r in images} >= {"gitlab-server-image", "traefik-image"}
    unpinned = [f"{r.urn}: {r.plain['name']}" for r in images if not PINNED.match(r.plain["name"]) or r.plain["name"].endswith(":latest")]
    assert not unpinned, unpinned
    for c in run.of_type("docker:index/container:Container"):
        assert c.plain["image"].startswith("sha256:"), f"{c.urn}: image must be a RemoteImage's image_id"


def test_pinned_check_rejects_floating_tags():
    assert PINNED.match("traefik:v3.6.1") and PINNED.match("gitlab/gitlab-ce:18.5.1-ce.0")
    assert not PINNED.match("traefik:v3") and not PINNED.match("traefik:latest") and not PINNED.match("traefik")


def test_service_outputs_are_the_documented_contract():
    run = production()
    expected = {
        "gitlabUrl": "https://gitlab.company.ru",
        "registryUrl": "https://registry.company.ru",
        "gitlabSshUrl": "ssh://git@gitlab.company.ru:1023",
        "traefikEntrypoints": {"web": ":80", "websecure": ":443", "gitlab-ssh": ":1023"},
        "wildcardDomain": "dev.company.ru",
        "wildcardMethod": "traefik",
        "productionAppUrls": {"demo": "https://company.ru"},
        "traefikDashboardUrl": "https://traefik.company.ru/dashboard/",
    }
    assert {k: run.outputs[k] for k in expected} == expected
    assert not set(expected) & run.secret_outputs


def test_staging_stack_creates_no_services(staging_run):
    assert not [r for r in staging_run.registrations if r.type.startswith(("delivery:services:", "delivery:traefik:"))]
    assert "traefikEntrypoints" not in staging_run.outputs


@pytest.mark.parametrize("method", ["traefik", "dnsrobocert"])
def test_a_fresh_stack_previews_with_the_services(method):
    """In a preview the certificates and the hosts' steps are unknown: the services still register."""
    overrides = DNSROBOCERT if method == "dnsrobocert" else {}
    run = run_stack(production_config(**overrides), secrets=PRODUCTION_SECRETS, preview=True)
    names = {r.name for r in run.registrations}
    assert {"gitlab-server-container", "traefik-container", "traefik-files"} <= names
    assert ("wildcard-certificate-container" in names) == (method == "dnsrobocert")


def co_located_run():
    hosts = [{"name": "solo", "address": "192.168.88.5", "hostKey": HOST_KEY, "roles": ["gitlab", "traefik", "production-runner"]}]
    return run_stack(production_config(hosts=hosts), secrets=PRODUCTION_SECRETS)


def test_gitlab_next_to_traefik_publishes_no_port_and_joins_their_network():
    run = co_located_run()
    network = run.named("services-network")
    assert network.provider.startswith(run.named("solo-docker").urn), network.urn
    assert network.plain["ipamConfigs"] == [{"subnet": "172.31.254.0/24"}]
    gitlab = run.named("gitlab-server-container")
    assert not gitlab.plain.get("ports"), f"{gitlab.urn}: Traefik listens on 80 and 1023 on this host"
    assert gitlab.plain["networksAdvanced"] == [{"name": "delivery-services", "aliases": ["gitlab"]}]
    edge = {n["name"] for n in run.named("traefik-container").plain["networksAdvanced"]}
    assert edge == {"delivery-edge", "delivery-review", "delivery-services"}
    assert "delivery-services" not in {n["name"] for n in run.named("traefik-review-container").plain["networksAdvanced"]}


def test_traefik_next_to_gitlab_routes_to_the_container_and_gitlab_trusts_the_network():
    run = co_located_run()
    routes = yaml.safe_load(bundle(run.named("traefik-files"))["/srv/traefik/dynamic/routes.yml"][1])
    assert routes["http"]["services"]["gitlab"]["loadBalancer"]["servers"] == [{"url": "http://gitlab:80"}]
    assert routes["http"]["services"]["registry"]["loadBalancer"]["servers"] == [{"url": "http://gitlab:5005"}]
    assert routes["tcp"]["services"]["gitlab-ssh"]["loadBalancer"]["servers"] == [{"address": "gitlab:22"}]
    gitlab_rb = bundle(run.named("gitlab-server-files"))["/srv/services/gitlab/config/gitlab.rb"][1]
    assert "gitlab_rails['trusted_proxies'] = ['172.31.254.0/24']" in gitlab_rb.splitlines()


def test_gitlab_on_its_own_host_needs_no_network():
    run = production()
    assert "services-network" not in {r.name for r in run.of_type("docker:index/network:Network")}
    assert "networksAdvanced" not in run.named("gitlab-server-container").plain
