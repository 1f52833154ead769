"""GitLabServer: the omnibus container on the gitlab host, its gitlab.rb (every setting of the
seed's gitlab.rb, one test per group), volumes, health check, root password, protection."""

from __future__ import annotations


import pytest

from conftest import HOST_KEY, GITLAB_ROOT_PASSWORD, PRODUCTION_SECRETS, production_config, run_stack
from service_files import bundle, container_labels, container_volumes, production

from components.host.remote_script import sha256
from components.config.services import Hostnames
from components.services.gitlab_server import (
    GITLAB_RB,
    PROXY_HEADERS,
    Setting,
    gitlab_settings,
    render_gitlab_rb,
    ruby,
)

TRAEFIK = ["192.168.88.1"]


def settings(**kw) -> dict[str, object]:
    args = dict(hostnames=Hostnames("company.ru"), timezone="Europe/Volgograd", trusted_proxies=TRAEFIK)
    args.update(kw)
    return {s.name: s.value for s in gitlab_settings(**args)}


def sent_gitlab_rb(run=None) -> str:
    run = run or production()
    config = run.named("gitlab-server-files")
    mode, text = bundle(config)[GITLAB_RB]
    assert mode == 0o600, config.urn
    return text


# -- gitlab.rb: each group of the seed's settings ------------------------------------------
def test_external_url_is_https_gitlab_domain():
    assert settings()["external_url"] == "https://gitlab.company.ru"
    assert "external_url 'https://gitlab.company.ru'" in sent_gitlab_rb().splitlines()


def test_nginx_listens_on_80_without_https():
    s = settings()
    assert (s["nginx['listen_port']"], s["nginx['listen_https']"]) == (80, False)
    lines = sent_gitlab_rb().splitlines()
    assert "nginx['listen_port'] = 80" in lines and "nginx['listen_https'] = false" in lines


def test_proxy_headers_are_the_seeds():
    expected = {
        "Host": "$http_host",
        "X-Real-IP": "$remote_addr",
        "X-Forwarded-For": "$proxy_add_x_forwarded_for",
        "X-Forwarded-Proto": "https",
        "X-Forwarded-Ssl": "on",
    }
    s = settings()
    assert s["nginx['proxy_set_headers']"] == expected
    assert s["registry_nginx['proxy_set_headers']"] == expected
    line = "nginx['proxy_set_headers'] = { 'Host' => '$http_host', 'X-Real-IP' => '$remote_addr', " \
        "'X-Forwarded-For' => '$proxy_add_x_forwarded_for', 'X-Forwarded-Proto' => 'https', 'X-Forwarded-Ssl' => 'on' }"
    assert line in sent_gitlab_rb().splitlines()


def test_time_zone_comes_from_config():
    assert settings(timezone="Asia/Tokyo")["gitlab_rails['time_zone']"] == "Asia/Tokyo"
    assert "gitlab_rails['time_zone'] = 'Europe/Volgograd'" in sent_gitlab_rb().splitlines()


def test_trusted_proxies_and_real_ip_are_the_traefik_hosts():
    s = settings()
    assert s["gitlab_rails['trusted_proxies']"] == TRAEFIK
    assert s["nginx['real_ip_trusted_addresses']"] == TRAEFIK
    assert s["nginx['real_ip_header']"] == "X-Forwarded-For"
    assert s["nginx['real_ip_recursive']"] == "on"
    lines = sent_gitlab_rb().splitlines()
    assert "gitlab_rails['trusted_proxies'] = ['192.168.88.1']" in lines
    assert "nginx['real_ip_trusted_addresses'] = ['192.168.88.1']" in lines


def test_trusted_proxies_follow_the_traefik_role():
    hosts = [
        {"name": "production", "address": "192.168.88.1", "hostKey": HOST_KEY, "roles": ["production-runner"]},
        {"name": "edge", "address": "192.168.88.9", "hostKey": HOST_KEY, "roles": ["traefik"]},
        {"name": "services", "address": "192.168.88.2", "hostKey": HOST_KEY, "roles": ["gitlab"]},
    ]
    assert "gitlab_rails['trusted_proxies'] = ['192.168.88.9']" in sent_gitlab_rb(production(hosts=hosts)).splitlines()


def test_registry_on_its_own_domain_with_nginx_on_5005_without_https():
    s = settings()
    assert s["registry_external_url"] == "https://registry.company.ru"
    assert s["registry['enable']"] is True and s["registry_nginx['enable']"] is True
    assert (s["registry_nginx['listen_port']"], s["registry_nginx['listen_https']"]) == (5005, False)
    lines = sent_gitlab_rb().splitlines()
    assert "registry_external_url 'https://registry.company.ru'" in lines
    assert "registry_nginx['listen_port'] = 5005" in lines


def test_ssh_port_is_1023():
    assert settings()["gitlab_rails['gitlab_shell_ssh_port']"] == 1023
    assert "gitlab_rails['gitlab_shell_ssh_port'] = 1023" in sent_gitlab_rb().splitlines()


def test_omnibus_lets_encrypt_is_off_because_traefik_terminates_tls():
    assert settings()["letsencrypt['enable']"] is False


def test_ruby_literals_escape_quotes_and_backslashes():
    assert ruby("it's a \\ test") == "'it\\'s a \\\\ test'"
    assert ruby({"a": [1, True]}) == "{ 'a' => [1, true] }"
    with pytest.raises(TypeError):
        ruby(1.5)


# -- the initial root password ------------------------------------------------------------------
# (its own step, only while GitLab has no database: tests/test_gitlab_root_password.py)
def test_gitlab_rb_holds_no_password_and_loads_the_password_file_while_it_exists():
    text = sent_gitlab_rb()
    assert GITLAB_ROOT_PASSWORD not in text
    assert text.splitlines()[-1] == (
        "from_file '/etc/gitlab/delivery-root-password.rb' if File.exist?('/etc/gitlab/delivery-root-password.rb')"
    )


# -- the container ----------------------------------------------------------------------------
def test_container_runs_the_pinned_ce_image():
    run = production(gitlabVersion="18.4.3-ce.0")
    assert run.named("gitlab-server-image").plain["name"] == "gitlab/gitlab-ce:18.4.3-ce.0"
    container = run.named("gitlab-server-container")
    assert container.plain["image"].startswith("sha256:"), f"{container.urn}: use RemoteImage.image_id"


def test_container_is_on_the_host_with_the_gitlab_role():
    run = production()
    container = run.named("gitlab-server-container")
    assert container.provider.startswith(run.named("services-docker").urn), container.urn
    assert run.named("gitlab-server-files").plain["connection"]["host"] == "192.168.88.2"


def test_container_publishes_http_registry_and_ssh_on_the_hosts_address():
    container = production().named("gitlab-server-container")
    ports = sorted((int(p["internal"]), int(p["external"]), p["ip"]) for p in container.plain["ports"])
    assert ports == [(22, 1023, "192.168.88.2"), (80, 80, "192.168.88.2"), (5005, 5005, "192.168.88.2")], container.urn


def test_volumes_are_srv_services_gitlab_config_data_logs():
    run = production()
    container = run.named("gitlab-server-container")
    volumes = container_volumes(container)
    expected = {"/etc/gitlab": "config", "/var/opt/gitlab": "data", "/var/log/gitlab": "logs"}
    for path, key in expected.items():
        volume = run.named(f"gitlab-server-volume-{key}")
        assert volumes[path]["volumeName"] == volume.plain["name"], container.urn
        assert volume.plain["driverOpts"] == {"type": "none", "o": "bind", "device": f"/srv/services/gitlab/{key}"}


def test_config_and_data_are_protected_from_deletion():
    run = production()
    for key in ("config", "data"):
        volume = run.named(f"gitlab-server-volume-{key}")
        assert volume.protect and volume.retain_on_delete, volume.urn
    container = run.named("gitlab-server-container")
    assert not container.protect and container.delete_before_replace, f"{container.urn} must stay replaceable"


def test_container_spec_shm_restart_health_env_hostname():
    container = production(gitlabShmSize=512).named("gitlab-server-container")
    spec = container.plain
    assert spec["shmSize"] == 512 and spec["restart"] == "always" and spec["name"] == "gitlab"
    assert spec["hostname"] == "gitlab.company.ru"
    # No TZ: the time zone is gitlab.rb's, and a change of it must not replace the container.
    assert [e.split("=", 1)[0] for e in spec["envs"]] == ["GITLAB_POST_RECONFIGURE_SCRIPT"]
    assert spec["healthcheck"]["tests"] == ["CMD", "/opt/gitlab/bin/gitlab-healthcheck", "--fail", "--max-time", "10"]
    assert "healthcheck" in container.replace_on_changes


def test_a_gitlab_rb_change_reconfigures_the_running_container_instead_of_replacing_it():
    run = production()
    step = run.named("gitlab-server-reconfigure")
    container = run.named("gitlab-server-container")
    container_id, fingerprint = step.plain["stdin"].split()
    assert container_id and fingerprint == sha256(sent_gitlab_rb(run)), step.urn
    assert step.plain["create"].split()[-3:] == ["/srv/services/gitlab/.reconfigured", "gitlab", "reconfigure"], step.urn
    assert {run.named("gitlab-server-ready").urn, run.named("gitlab-server-files").urn, container.urn} <= set(step.dependencies)
    other = production(timezone="Asia/Tokyo")
    assert other.named("gitlab-server-container").plain == container.plain, "a gitlab.rb change must not touch the container"
    assert other.named("gitlab-server-reconfigure").plain["triggers"] != step.plain["triggers"], step.urn


def test_container_waits_for_its_configuration():
    run = production()
    assert run.named("gitlab-server-files").urn in run.named("gitlab-server-container").dependencies


def test_password_change_does_not_touch_the_container():
    cfg = production_config(gitlabRootPassword="Another-passw0rd-1")
    other = run_stack(cfg, secrets=PRODUCTION_SECRETS).named("gitlab-server-container")
    assert other.plain == production().named("gitlab-server-container").plain


def test_settings_render_one_line_each():
    text = render_gitlab_rb([Setting("nginx", "listen_port", 80), Setting("external_url", None, "https://x")])
    assert text.splitlines()[-2:] == ["nginx['listen_port'] = 80", "external_url 'https://x'"]
    assert PROXY_HEADERS["X-Forwarded-Proto"] == "https"


# -- the readiness gate ---------------------------------------------------------------------------
def test_readiness_gate_waits_for_gitlab_after_its_container_and_reruns_when_it_is_replaced():
    from gitlab_stacks import run_production

    run = run_production()
    gate = run.named("gitlab-server-ready")
    container = run.named("gitlab-server-container")
    assert container.urn in gate.dependencies, gate.urn
    assert gate.plain["triggers"][1] == "gitlab-server-container-id", f"{gate.urn}: a new container runs the gate again"
    assert "wait-gitlab-ready.sh" in gate.plain["create"] and gate.plain["create"].endswith(" wait-gitlab-ready.sh gitlab 900")


def test_every_gitlab_api_resource_waits_for_the_readiness_gate():
    from gitlab_stacks import run_production

    run = run_production()
    gate = run.named("gitlab-server-ready").urn
    api = [r for r in run.registrations if r.type.startswith("gitlab:index/")]
    assert api, "the production example with a token has GitLab API resources"
    for r in api:
        # Directly, or through its component (depends_on of a component reaches its children).
        chain = [r] + [p for p in run.registrations if p.urn == r.parent]
        assert any(gate in x.dependencies for x in chain), f"{r.urn} does not wait for the readiness gate"


def test_readiness_timeout_comes_from_config():
    from gitlab_stacks import run_production

    gate = run_production(gitlabReadyTimeoutSeconds=120).named("gitlab-server-ready")
    assert gate.plain["create"].endswith(" wait-gitlab-ready.sh gitlab 120")
