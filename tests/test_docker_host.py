"""DockerHost under mocks: scripts over SSH through stdin, triggers, daemon.json, provider."""

from __future__ import annotations

import base64
import io
import json
import shlex
import tarfile

import jsonschema
import pytest

from conftest import PRODUCTION_SECRETS, ROOT, StackRun, production_config, run_stack
from schema_files import PUBLISHED_SCHEMAS

from components.config import DockerEngineConfig, HostConfig
from components.host.docker_host import daemon_config, systemd_drop_in

CMD = "command:remote:Command"
SCHEMAS = PUBLISHED_SCHEMAS


def bundle(run: StackRun, host: str) -> dict[str, tarfile.TarInfo | bytes]:
    """The files the docker-config step sends to `host`, decoded from its stdin."""
    stdin = run.named(f"{host}-docker-config").plain["stdin"]
    tar = tarfile.open(fileobj=io.BytesIO(base64.b64decode(stdin)))
    return {m.name: (m, tar.extractfile(m).read()) for m in tar.getmembers()}


def test_each_host_gets_engine_setup_and_config_steps(production_run: StackRun):
    names = {r.name for r in production_run.of_type(CMD)}
    for host in ("production", "services"):
        assert {f"{host}-engine", f"{host}-host", f"{host}-docker-config"} <= names


def test_steps_are_children_of_their_host_component(production_run: StackRun):
    for host in ("production", "services"):
        component = production_run.named(host)
        assert component.type == "delivery:docker:DockerHost"
        children = production_run.children_of(component)
        assert {c.name for c in children} == {f"{host}-engine", f"{host}-host", f"{host}-docker-config", f"{host}-docker"}


def test_scripts_are_run_by_bash_with_nothing_secret_on_the_command_line(production_run: StackRun):
    for r in production_run.of_type(CMD):
        create = r.plain["create"]
        argv = shlex.split(create)
        assert argv[:2] == ["bash", "-c"], r.urn
        assert "set -euo pipefail" in argv[2], r.urn
        assert "PRIVATE KEY" not in create and "MOCK" not in create, r.urn
        assert not r.plain.get("environment"), f"{r.urn} must not use environment"


def test_every_step_has_a_trigger_hash(production_run: StackRun):
    for r in production_run.of_type(CMD):
        triggers = r.plain["triggers"]
        assert len(triggers[0]) == 64, r.urn
        # Only the readiness gate re-runs on something else too: the container it checks.
        expected = 2 if r.name == "gitlab-server-ready" else 1
        assert len(triggers) == expected, r.urn


def test_config_files_travel_through_secret_stdin(production_run: StackRun):
    r = production_run.named("production-docker-config")
    assert r.secret("stdin"), f"{r.urn}: stdin carries the server key and must be secret"
    files = bundle(production_run, "production")
    assert set(files) == {
        "etc/docker/daemon.json",
        "etc/docker/tls/ca.pem",
        "etc/docker/tls/server-cert.pem",
        "etc/docker/tls/server-key.pem",
        "etc/systemd/system/docker.service.d/10-delivery.conf",
    }


def test_tls_file_modes_and_owner(production_run: StackRun):
    files = bundle(production_run, "production")
    modes = {name: info.mode for name, (info, _) in files.items()}
    assert modes["etc/docker/tls/server-key.pem"] == 0o400
    assert modes["etc/docker/tls/server-cert.pem"] == 0o444
    assert modes["etc/docker/tls/ca.pem"] == 0o444
    assert all(info.uid == 0 and info.gid == 0 for info, _ in files.values())


def test_the_host_receives_its_own_server_key_and_never_the_ca_key(production_run: StackRun):
    files = bundle(production_run, "production")
    assert files["etc/docker/tls/server-key.pem"][1] == b"-----BEGIN EC PRIVATE KEY-----\nMOCKdocker-ca-server-production-key\n-----END EC PRIVATE KEY-----\n"
    assert not any(b"docker-ca-ca-key" in content for _, content in files.values())


def test_the_bundle_is_deterministic():
    a = run_stack(production_config(), secrets=PRODUCTION_SECRETS)
    b = run_stack(production_config(), secrets=PRODUCTION_SECRETS)
    assert a.named("services-docker-config").plain["stdin"] == b.named("services-docker-config").plain["stdin"]
    assert a.named("services-docker-config").plain["triggers"] == b.named("services-docker-config").plain["triggers"]


def test_a_config_change_changes_the_trigger():
    a = run_stack(production_config(), secrets=PRODUCTION_SECRETS)
    cfg = production_config()
    cfg["hosts"][1]["dockerListenAddress"] = "0.0.0.0"
    b = run_stack(cfg, secrets=PRODUCTION_SECRETS)
    assert a.named("services-docker-config").plain["triggers"] != b.named("services-docker-config").plain["triggers"]
    assert a.named("production-docker-config").plain["triggers"] == b.named("production-docker-config").plain["triggers"]


def test_daemon_json_settings(production_run: StackRun):
    daemon = json.loads(bundle(production_run, "services")["etc/docker/daemon.json"][1])
    assert daemon["storage-driver"] == "overlay2"
    assert daemon["live-restore"] is True
    assert daemon["log-opts"] == {"max-size": "10m", "max-file": "3"}
    # On: without it a container cannot reach a port published on its own host's address
    # (tests/e2e/test_services_e2e.py shows the production app behind Traefik).
    assert daemon["userland-proxy"] is True
    assert daemon["no-new-privileges"] is True
    assert daemon["icc"] is False
    assert daemon["tlsverify"] is True
    assert (daemon["tlscacert"], daemon["tlscert"], daemon["tlskey"]) == (
        "/etc/docker/tls/ca.pem",
        "/etc/docker/tls/server-cert.pem",
        "/etc/docker/tls/server-key.pem",
    )
    assert daemon["hosts"] == ["unix:///var/run/docker.sock", "tcp://192.168.88.2:2376"]


def test_daemon_json_validates_against_the_published_schema():
    schema = json.loads((SCHEMAS / "dockerd.json").read_text())
    host = HostConfig(name="h", address="10.0.0.1")
    jsonschema.Draft7Validator(schema).validate(daemon_config(host))


def test_hosts_are_set_in_daemon_json_only():
    drop_in = systemd_drop_in(DockerEngineConfig())
    assert "-H" not in drop_in and "--host" not in drop_in
    assert drop_in.splitlines()[-2:] == ["ExecStart=", "ExecStart=/usr/bin/dockerd"]
    assert systemd_drop_in(DockerEngineConfig(package="docker.io")).splitlines()[-1] == "ExecStart=/usr/sbin/dockerd"


def test_listen_address_defaults_to_the_host_address_and_can_differ():
    assert daemon_config(HostConfig(name="h", address="10.0.0.1"))["hosts"][1] == "tcp://10.0.0.1:2376"
    assert daemon_config(HostConfig(name="h", address="127.0.0.1", docker_listen_address="0.0.0.0"))["hosts"][1] == "tcp://0.0.0.0:2376"
    assert daemon_config(HostConfig(name="h", address="fd00::1"))["hosts"][1] == "tcp://[fd00::1]:2376"


def test_engine_step_installs_the_configured_package_and_version():
    run = run_stack(production_config(dockerPackage="docker.io"), secrets=PRODUCTION_SECRETS)
    argv = shlex.split(run.named("services-engine").plain["create"])
    assert argv[3:] == ["install-docker.sh", "docker.io", ""]
    argv = shlex.split(run_stack(production_config(), secrets=PRODUCTION_SECRETS).named("services-engine").plain["create"])
    assert argv[3:] == ["install-docker.sh", "docker-ce", "29.2.0"]


def test_host_step_sets_time_zone_and_role_directories(production_run: StackRun):
    services = production_run.named("services-host").plain
    assert shlex.split(services["create"])[3:] == ["host-setup.sh", "Europe/Volgograd"]
    assert services["stdin"].splitlines() == [
        "/srv/services/gitlab/config 0755",
        "/srv/services/gitlab/data 0755",
        "/srv/services/gitlab/logs 0755",
    ]
    production = production_run.named("production-host").plain["stdin"]
    assert "/srv/traefik/letsencrypt 0700" in production.splitlines()
    assert "/srv/gitlab-runner/config 0700" in production.splitlines()


def test_connection_is_bounded_and_pins_the_host_key_when_configured():
    cfg = production_config()
    key = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIOMqqnkVzrm0SdG6UOoqKLsabgH5C9okWi0dh2l9GKJl"
    cfg["hosts"][1].update(hostKey=key, port=2222, user="deploy")
    run = run_stack(cfg, secrets=PRODUCTION_SECRETS)
    r = run.named("services-engine")
    conn = r.plain["connection"]
    assert r.secret("connection"), r.urn
    assert (conn["host"], conn["port"], conn["user"], conn["hostKey"]) == ("192.168.88.2", 2222, "deploy", key)
    assert conn["dialErrorLimit"] == 5 and conn["perDialTimeout"] == 15
    assert r.plain["create"].startswith("sudo -n bash -c "), "a non-root user runs the scripts through sudo"


def test_docker_config_waits_for_the_engine(production_run: StackRun):
    engine = production_run.named("services-engine")
    assert engine.urn in production_run.named("services-docker-config").dependencies


def test_one_docker_provider_per_host_with_mutual_tls(production_run: StackRun):
    providers = {r.name: r for r in production_run.of_type("pulumi:providers:docker")}
    assert set(providers) == {"production-docker", "services-docker"}
    p = providers["services-docker"]
    assert p.plain["host"] == "tcp://192.168.88.2:2376"
    assert "MOCKdocker-ca-client-operator-cert" in p.plain["certMaterial"]
    assert "MOCKdocker-ca-ca-cert" in p.plain["caMaterial"]
    assert p.secret("keyMaterial"), f"{p.urn}: keyMaterial must be secret"


def test_provider_endpoint_is_unknown_until_the_daemon_is_configured():
    """On a fresh stack's preview the provider gets no host, so it does not dial a daemon
    that does not exist yet."""
    from conftest import PlatformMocks

    class FreshPreview(PlatformMocks):
        def new_resource(self, args):
            rid, state = super().new_resource(args)
            if args.typ == CMD:
                state.pop("stdout")  # unknown in a preview of a create
            return rid, state

    run = run_stack(production_config(), secrets=PRODUCTION_SECRETS, mocks=FreshPreview(), preview=True)
    provider = run.named("services-docker")
    assert "host" not in provider.plain or type(provider.plain["host"]).__name__ == "Unknown", provider.plain.get("host")
    assert run.named("services-docker-config").urn in provider.dependencies


def test_stack_outputs(production_run: StackRun):
    out = production_run.outputs
    assert out["dockerEndpoints"] == {"production": "tcp://192.168.88.1:2376", "services": "tcp://192.168.88.2:2376"}
    assert out["dockerCaCertPem"].startswith("-----BEGIN CERTIFICATE-----")
    assert "dockerCaCertPem" not in production_run.secret_outputs
    assert set(out["operatorClient"]) == {"caPem", "certPem", "keyPem"}
    assert {"operatorClient", "delegatedDockerServers"} <= production_run.secret_outputs


def test_satellite_stack_installs_the_delegated_server_certificate(staging_run: StackRun):
    files = bundle(staging_run, "staging")
    assert files["etc/docker/tls/server-key.pem"][1] == b"-----BEGIN EC PRIVATE KEY-----\nMOCKstaging\n-----END EC PRIVATE KEY-----\n"
    # Staging's daemon trusts both CAs: the operator's certificate opens it too.
    assert files["etc/docker/tls/ca.pem"][1] == (
        b"-----BEGIN CERTIFICATE-----\nMOCKca\n-----END CERTIFICATE-----\n"
        b"-----BEGIN CERTIFICATE-----\nMOCKstaging-ca\n-----END CERTIFICATE-----\n"
    )


def test_satellite_stack_deploys_with_the_staging_domains_client(staging_run: StackRun):
    provider = staging_run.named("staging-docker")
    assert provider.plain["certMaterial"] == "-----BEGIN CERTIFICATE-----\nMOCKstaging-deployer\n-----END CERTIFICATE-----\n"
    assert provider.plain["caMaterial"] == "-----BEGIN CERTIFICATE-----\nMOCKstaging-ca\n-----END CERTIFICATE-----\n"


def test_missing_production_output_names_stack_and_output():
    from conftest import PRODUCTION_STACK, production_outputs, staging_config

    outputs = production_outputs()
    del outputs["delegatedDockerServers"]
    with pytest.raises(Exception, match=f"stack '{PRODUCTION_STACK}' has no output 'delegatedDockerServers'"):
        run_stack(staging_config(), secrets=PRODUCTION_SECRETS, stack="staging", stack_outputs={PRODUCTION_STACK: outputs})


@pytest.mark.parametrize("unused", ["dockerCaCertPem", "operatorClient"])
def test_staging_reads_no_production_key_material_beyond_its_entry(unused):
    """The staging stack deploys with its own entry of delegatedDockerServers only: without the
    production CA and the operator's key it still evaluates."""
    from conftest import PRODUCTION_STACK, production_outputs, staging_config

    outputs = production_outputs()
    del outputs[unused]
    run = run_stack(staging_config(), secrets=PRODUCTION_SECRETS, stack="staging", stack_outputs={PRODUCTION_STACK: outputs})
    assert run.named("staging-docker-config")
