"""Certificate renewal and Docker CA rotation on a real daemon (docs/operations.md,
"Certificate renewal", "Docker CA rotation").

One disposable all-in-one host (tests/e2e/platform_program.py: the real program, remote
commands over SSH, real certificates, the docker resources applied for real), bootstrapped once;
then, in file order:

1. renewal: `pulumi up --refresh` a day later. What the refresh does is emulated exactly as
   pulumi-tls does it: a certificate whose `notAfter - early_renewal_hours` has passed at the
   refresh time is planned for replacement (its state is dropped, so the next run issues it
   anew); nothing else. The host gets the new certificates: Docker restarts once with
   `live-restore`, and every container keeps its ID and StartedAt (the review Traefik, whose
   client certificate is renewed, is replaced once: that is its one restart);
2. CA rotation: `dockerCaRotation: trust`, `switch`, then `dockerCaGeneration: 2`, one run each,
   while a client thread keeps asking the daemon over mutual TLS with the credentials the stack
   exported last (a client that takes the new outputs after each step). No request may be
   refused by TLS; requests that find the daemon restarting (connection refused or reset
   before TLS) are retried and counted, and each such window must be short.
"""

from __future__ import annotations

import datetime as dt
import socket
import ssl
import sys
import threading
import time
from dataclasses import dataclass, field
from types import SimpleNamespace
from typing import Optional

import pytest
from cryptography import x509

from .conftest import DisposableHost, own_host
from .platform_program import HOST_NAME, run_program, stack_config
from .services_harness import StackState
from .test_docker_host_e2e import _tls_context, sh

pytestmark = pytest.mark.e2e

LSC = "tls:index/locallySignedCert:LocallySignedCert"
SSC = "tls:index/selfSignedCert:SelfSignedCert"
#: Validity and window of the leaf certificates here (hours): the refresh "a day later" is in the window.
VALIDITY, WINDOW = 48, 24
REVIEW_TRAEFIK = "traefik-review"
#: Longest the daemon may be unreachable in one restart (live-restore: no container stops).
MAX_UNAVAILABLE_SECONDS = 20.0


def _log(msg: str) -> None:
    sys.stderr.write(f"[e2e] {msg}\n")
    sys.stderr.flush()


def config(host: DisposableHost, **overrides):
    return stack_config(
        host, dockerCertValidityHours=str(VALIDITY), dockerCertEarlyRenewalHours=str(WINDOW), **overrides
    )


@pytest.fixture(scope="module")
def rotation_host(e2e_dockerd, e2e_image):
    yield from own_host(e2e_dockerd, e2e_image, "delivery-e2e-rotation", _log)


@pytest.fixture(scope="module")
def platform(rotation_host: DisposableHost, e2e_images):
    state = StackState()
    t0 = time.monotonic()
    first = run_program(rotation_host, state, e2e_images, config=config(rotation_host), log=_log)
    _log(f"bootstrap: {first.elapsed:.1f}s")
    ns = SimpleNamespace(host=rotation_host, state=state, images=e2e_images, outputs=first.outputs, t0=t0)
    yield ns
    _log(f"module wall time: {time.monotonic() - t0:.1f}s")


# -- helpers ----------------------------------------------------------------------------------


def refresh(state: StackState, at: dt.datetime) -> list[str]:
    """What `pulumi refresh` tells the engine about pulumi-tls certificates at time `at`: those
    with `notAfter - earlyRenewalHours <= at` are ready for renewal and get replaced."""
    due = []
    for key, (_inputs, _rid, st) in list(state.tls.items()):
        if key[0] not in (LSC, SSC):
            continue
        cert = x509.load_pem_x509_certificate(st["certPem"].encode())
        if cert.not_valid_after_utc - dt.timedelta(hours=int(st.get("earlyRenewalHours") or 0)) <= at:
            del state.tls[key]
            due.append(key[1])
    return sorted(due)


def containers(host: DisposableHost) -> dict[str, tuple[str, str, str]]:
    """name -> (ID, State.StartedAt, RestartCount) of every container on the host's daemon."""
    out = sh(host, "docker ps -aq | xargs -r docker inspect --format '{{.Name}} {{.Id}} {{.State.StartedAt}} {{.RestartCount}}'")
    rows = [line.split() for line in out.splitlines() if line.strip()]
    return {r[0].lstrip("/"): (r[1], r[2], r[3]) for r in rows}


def docker_starts_since(host: DisposableHost, since_epoch: int) -> int:
    out = sh(host, f"journalctl -u docker.service --since @{since_epoch} -o cat --no-pager | grep -c '^Started docker.service' || true")
    return int(out or "0")


def served_certificate(host: DisposableHost, ctx: ssl.SSLContext) -> x509.Certificate:
    with socket.create_connection((host.ssh_host, host.docker_port), timeout=15) as raw:
        with ctx.wrap_socket(raw, server_hostname=host.ssh_host) as s:
            der = s.getpeercert(binary_form=True)
    assert der is not None
    return x509.load_der_x509_certificate(der)


def leaf_pem(state: StackState, name: str) -> str:
    return next(st["certPem"] for (typ, n), (_i, _r, st) in state.tls.items() if typ == LSC and n == name)


def operator_ctx(outputs: dict) -> ssl.SSLContext:
    op = outputs["operatorClient"]
    return _tls_context(op["caPem"], op["certPem"], op["keyPem"])


def pem_count(pem: str) -> int:
    return pem.count("-----BEGIN CERTIFICATE-----")


def assert_containers_kept(before: dict, after: dict, allowed_replaced: set[str]) -> None:
    assert set(before) == set(after), f"containers appeared or vanished: {sorted(set(before) ^ set(after))}"
    changed = {n for n in before if before[n] != after[n]}
    assert changed <= allowed_replaced, f"containers restarted or replaced: {sorted(changed - allowed_replaced)}: {before} -> {after}"


# -- a client of the daemon that never stops asking -----------------------------------------------


@dataclass
class DaemonClient:
    """GET /_ping and /containers/json over mutual TLS, in a loop, with the credentials of the
    last stack outputs it was given. A TLS refusal (certificate verify failed, an alert) is a
    failed request, and so is any HTTP answer but 200. A daemon that is restarting (refused or
    reset, or a connection it closes without an answer) is retried every 0.2 s; each such
    window is recorded."""

    host: DisposableHost
    ctx: ssl.SSLContext
    ok: int = 0
    closed: int = 0
    """Requests the daemon closed without an answer (it was stopping), retried."""
    failures: list[str] = field(default_factory=list)
    windows: list[float] = field(default_factory=list)
    _stop: threading.Event = field(default_factory=threading.Event)
    _lock: threading.Lock = field(default_factory=threading.Lock)
    _thread: Optional[threading.Thread] = None

    def use(self, outputs: dict) -> None:
        ctx = operator_ctx(outputs)
        with self._lock:
            self.ctx = ctx

    def request(self, path: str) -> str:
        with self._lock:
            ctx = self.ctx
        with socket.create_connection((self.host.ssh_host, self.host.docker_port), timeout=10) as raw:
            with ctx.wrap_socket(raw, server_hostname=self.host.ssh_host) as s:
                s.sendall(f"GET {path} HTTP/1.0\r\nHost: docker\r\n\r\n".encode())
                data = b""
                while chunk := s.recv(65536):
                    data += chunk
        return data.split(b"\r\n", 1)[0].decode()

    def _loop(self) -> None:
        down_since: Optional[float] = None
        while not self._stop.is_set():
            for path in ("/_ping", "/containers/json"):
                try:
                    status = self.request(path)
                except (ssl.SSLCertVerificationError,) as e:
                    self.failures.append(f"{path}: {e}")
                    continue
                except ssl.SSLError as e:
                    if isinstance(e, ssl.SSLEOFError) or "EOF" in str(e):
                        down_since = down_since or time.monotonic()
                    else:
                        self.failures.append(f"{path}: TLS {e}")
                    continue
                except (ConnectionRefusedError, ConnectionResetError, BrokenPipeError, socket.timeout, TimeoutError) as e:
                    down_since = down_since or time.monotonic()
                    if time.monotonic() - down_since > MAX_UNAVAILABLE_SECONDS:
                        self.failures.append(f"{path}: unavailable for more than {MAX_UNAVAILABLE_SECONDS}s ({e!r})")
                        down_since = time.monotonic()
                    continue
                if status == "":
                    # TLS completed, then the connection closed with no answer: the daemon is
                    # shutting down (a TLS refusal is an alert, an SSLError above)
                    self.closed += 1
                    down_since = down_since or time.monotonic()
                    continue
                if not status.endswith(" 200 OK"):
                    self.failures.append(f"{path}: {status}")
                    continue
                if down_since is not None:
                    self.windows.append(time.monotonic() - down_since)
                    down_since = None
                self.ok += 1
            self._stop.wait(0.2)

    def start(self) -> None:
        self._thread = threading.Thread(target=self._loop, name="daemon-client", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=60)


# -- 1. renewal ---------------------------------------------------------------------------------


def test_renewal_inside_the_window_rotates_the_certificates_with_zero_container_restarts(platform):
    host, state = platform.host, platform.state
    server_name = f"docker-staging-ca-server-{HOST_NAME}-cert"  # the all-in-one host runs review apps
    old_server = x509.load_pem_x509_certificate(leaf_pem(state, server_name).encode())
    assert served_certificate(host, operator_ctx(platform.outputs)).serial_number == old_server.serial_number

    # The scheduled job today: nothing is due, the run changes nothing.
    assert refresh(state, dt.datetime.now(dt.timezone.utc)) == []

    before = containers(host)
    assert before, "the program's containers run on the host"
    since = int(sh(host, "date +%s"))
    due = refresh(state, dt.datetime.now(dt.timezone.utc) + dt.timedelta(hours=VALIDITY - WINDOW + 1))
    assert server_name in due and "docker-ca-client-operator-cert" in due, due
    assert not [n for n in due if n.endswith("-ca-cert")], f"the CAs are not due: {due}"
    run = run_program(host, state, platform.images, config=config(host), log=_log)
    _log(f"renewal run: {run.elapsed:.1f}s; renewed {due}")
    platform.outputs = run.outputs

    new_server = x509.load_pem_x509_certificate(leaf_pem(state, server_name).encode())
    assert new_server.serial_number != old_server.serial_number
    served = served_certificate(host, operator_ctx(run.outputs))
    assert served.serial_number == new_server.serial_number, "the daemon serves the renewed certificate"
    assert served.not_valid_after_utc > old_server.not_valid_after_utc

    assert docker_starts_since(host, since) == 1, "the daemon restarts exactly once for its new files"
    after = containers(host)
    assert_containers_kept(before, after, allowed_replaced={REVIEW_TRAEFIK})
    _log(f"renewal: {len(before)} containers, unchanged: {sorted(n for n in before if before[n] == after[n])}")


# -- 2. CA rotation -------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def client(platform):
    c = DaemonClient(platform.host, operator_ctx(platform.outputs))
    c.start()
    yield c
    c.stop()


def _step(platform, client: DaemonClient, name: str, **overrides) -> dict:
    before = containers(platform.host)
    since = int(sh(platform.host, "date +%s"))
    ok_before = client.ok
    run = run_program(platform.host, platform.state, platform.images, config=config(platform.host, **overrides), log=_log)
    starts = docker_starts_since(platform.host, since)
    # A few more requests with the credentials the client had during the run.
    deadline = time.monotonic() + 30
    while client.ok < ok_before + 4 and time.monotonic() < deadline:
        time.sleep(0.2)
    assert client.failures == [], f"{name}: failed requests: {client.failures}"
    assert client.ok > ok_before, f"{name}: the client got no answer through the step"
    client.use(run.outputs)
    platform.outputs = run.outputs
    assert_containers_kept(before, containers(platform.host), allowed_replaced={REVIEW_TRAEFIK})
    _log(f"rotation {name}: {run.elapsed:.1f}s, docker starts {starts}, client ok {client.ok}, restart windows {[round(w, 1) for w in client.windows]}")
    assert starts <= 1, f"{name}: the daemon restarted {starts} times"
    return run.outputs


def test_rotation_trust_adds_the_new_ca_to_every_bundle(platform, client):
    pre = platform.outputs
    outputs = _step(platform, client, "trust", dockerCaRotation="trust")
    assert pem_count(outputs["dockerCaCertPem"]) == 2 and pem_count(outputs["dockerStagingCaCertPem"]) == 2
    # the all-in-one daemon (review-app role) trusts both domains, both generations
    assert sh(platform.host, "grep -c 'BEGIN CERTIFICATE' /etc/docker/tls/ca.pem") == "4"
    # a client that has not taken the new outputs yet still works: nothing it uses changed
    status = DaemonClient(platform.host, operator_ctx(pre)).request("/_ping")
    assert status.endswith(" 200 OK"), status
    platform.pre_rotation = pre


def test_rotation_switch_moves_daemons_and_clients_to_the_new_ca(platform, client):
    trust_outputs = platform.outputs
    outputs = _step(platform, client, "switch", dockerCaRotation="switch")
    new_ca = [c for c in x509.load_pem_x509_certificates(outputs["dockerStagingCaCertPem"].encode())]
    served = served_certificate(platform.host, operator_ctx(outputs))
    issuers = {c.subject for c in new_ca}
    assert served.issuer in issuers
    g2 = x509.load_pem_x509_certificate(leaf_pem(platform.state, f"docker-staging-ca-g2-server-{HOST_NAME}-cert").encode())
    assert served.serial_number == g2.serial_number, "the daemon serves the certificate of the new generation"
    # the client certificate of the trust step (old CA) is still accepted during the overlap
    status = DaemonClient(platform.host, operator_ctx(trust_outputs)).request("/_ping")
    assert status.endswith(" 200 OK"), status


def test_rotation_finish_removes_the_old_ca(platform, client):
    outputs = _step(platform, client, "finish", dockerCaGeneration="2")
    assert pem_count(outputs["dockerCaCertPem"]) == 1 and pem_count(outputs["dockerStagingCaCertPem"]) == 1
    assert sh(platform.host, "grep -c 'BEGIN CERTIFICATE' /etc/docker/tls/ca.pem") == "2"
    assert DaemonClient(platform.host, operator_ctx(outputs)).request("/_ping").endswith(" 200 OK")
    # the pre-rotation operator certificate (old CA) is refused now
    pre = platform.pre_rotation["operatorClient"]
    old = _tls_context(outputs["operatorClient"]["caPem"], pre["certPem"], pre["keyPem"])
    with pytest.raises((ssl.SSLError, ConnectionResetError, BrokenPipeError)):
        DaemonClient(platform.host, old).request("/_ping")
    client.stop()
    assert client.failures == [], client.failures
    _log(f"rotation: {client.ok} requests answered, {client.closed} closed unanswered by a stopping daemon, restart windows (s): {[round(w, 2) for w in client.windows]}")
    assert all(w <= MAX_UNAVAILABLE_SECONDS for w in client.windows)


# -- registry garbage collection (same host: it has the gitlab role) ------------------------------


def test_registry_gc_timer_runs_gitlab_ctl_in_the_gitlab_container(platform):
    """The timer is enabled with the default window; its service, started by hand (what the
    timer does at the window), runs `gitlab-ctl registry-garbage-collect -m` in the GitLab
    STAND-IN, which records the call (real GitLab cannot run here)."""
    host = platform.host
    assert sh(host, "systemctl is-enabled delivery-registry-gc.timer") == "enabled"
    assert sh(host, "systemctl is-active delivery-registry-gc.timer") == "active"
    assert sh(host, "systemctl show -p TimersCalendar --value delivery-registry-gc.timer").startswith("{ OnCalendar=Sun *-*-* 03:30:00")
    sh(host, "systemctl start delivery-registry-gc.service", timeout=120)
    assert sh(host, "systemctl show -p Result --value delivery-registry-gc.service") == "success"
    calls = sh(host, "docker exec gitlab cat /var/log/gitlab/standin-calls.jsonl")
    assert '"args": ["registry-garbage-collect", "-m"]' in calls, calls
