"""The Docker host bootstrap, for real: the program (`load_stack_config()` + `build()`) runs
under mocks in which every `remote.Command` really runs on a disposable Debian bookworm host
over SSH, exactly as the program declares it, and the pulumi-tls resources are real keys and
certificates. The stack is a production stack with one all-in-one host (roles gitlab, traefik,
review-apps, production-runner), Docker from Debian's docker.io (`dockerPackage: docker.io`,
Docker's own apt repository is out of reach here), time zone Europe/Volgograd.

The module bootstraps its own host once (the first run), then asserts on it; the last tests
change the config (a converged re-run, two broken changes) in file order.
"""

from __future__ import annotations

import datetime as dt
import ipaddress
import json
import socket
import ssl
import sys
import tempfile
from pathlib import Path
from types import SimpleNamespace

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from components.config.services import DEFAULT_GITLAB_VERSION
from components.host.layout import ROLE_DIRECTORIES

from .conftest import DisposableHost, own_host
from .services_harness import StackState
from .platform_program import ALL_IN_ONE_ROLES, HOST_NAME, TIMEZONE, run_program, stack_config

pytestmark = pytest.mark.e2e

DOCKER_FILES = (
    "/etc/docker/daemon.json",
    "/etc/docker/tls/ca.pem",
    "/etc/docker/tls/server-cert.pem",
    "/etc/docker/tls/server-key.pem",
    "/etc/systemd/system/docker.service.d/10-delivery.conf",
)
STEPS = (f"{HOST_NAME}-engine", f"{HOST_NAME}-host", f"{HOST_NAME}-docker-config")


def _log(msg: str) -> None:
    sys.stderr.write(f"[e2e] {msg}\n")
    sys.stderr.flush()


@pytest.fixture(scope="module")
def platform_host(e2e_dockerd, e2e_image):
    """A disposable host of this module's own (the session host stays bare for test_harness)."""
    yield from own_host(e2e_dockerd, e2e_image, "delivery-e2e-platform", _log)


@pytest.fixture(scope="module")
def bootstrap(platform_host: DisposableHost, e2e_images):
    """The first run of the program on the bare host."""
    state = StackState()
    first = run_program(platform_host, state, e2e_images, log=_log)
    _log(f"first bootstrap: {first.elapsed:.1f}s, {len(first.mocks.runs)} remote commands")
    return SimpleNamespace(host=platform_host, state=state, images=e2e_images, first=first, outputs=first.outputs)


# -- helpers --------------------------------------------------------------------------------


def sh(host: DisposableHost, command: str, timeout: float = 300) -> str:
    """stdout of `command` on the host over SSH (pinned host key); fails on a non-zero exit."""
    code, out, err = host.ssh(command, timeout=timeout)
    assert code == 0, f"{command!r} exited {code}: {out}{err}"
    return out.strip()


def docker_unit(host: DisposableHost) -> dict[str, str]:
    out = sh(host, "systemctl show -p ActiveState -p ActiveEnterTimestamp -p MainPID -p NRestarts docker.service")
    return dict(line.split("=", 1) for line in out.splitlines())


def files_digest(host: DisposableHost, paths=DOCKER_FILES) -> dict[str, str]:
    """sha256, mode, owner and mtime of each file ("absent" when it does not exist)."""
    out = sh(
        host,
        "for f in " + " ".join(paths) + "; do "
        'if [ -e "$f" ]; then echo "$f $(sha256sum < "$f" | cut -c1-64) $(stat -c "%a %U:%G %Y" "$f")"; '
        'else echo "$f absent"; fi; done',
    )
    return {line.split(" ", 1)[0]: line.split(" ", 1)[1] for line in out.splitlines()}


def _tls_context(ca_pem: str, cert_pem: str | None = None, key_pem: str | None = None) -> ssl.SSLContext:
    ctx = ssl.create_default_context(ssl.Purpose.SERVER_AUTH, cadata=ca_pem)
    ctx.check_hostname = True  # the server certificate's SAN is the host's address, 127.0.0.1
    if cert_pem is not None:
        with tempfile.TemporaryDirectory() as d:
            cert, key = Path(d, "cert.pem"), Path(d, "key.pem")
            cert.write_text(cert_pem)
            key.write_text(key_pem or "")
            key.chmod(0o600)
            ctx.load_cert_chain(str(cert), str(key))
    return ctx


def docker_get(host: DisposableHost, ctx: ssl.SSLContext, path: str = "/_ping", timeout: float = 15) -> tuple[str, str]:
    """GET `path` from the daemon's TLS port published on 127.0.0.1; (status line, body)."""
    with socket.create_connection((host.ssh_host, host.docker_port), timeout=timeout) as raw:
        with ctx.wrap_socket(raw, server_hostname=host.ssh_host) as s:
            s.sendall(f"GET {path} HTTP/1.0\r\nHost: docker\r\n\r\n".encode())
            data = b""
            while True:
                chunk = s.recv(65536)
                if not chunk:
                    break
                data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    return head.split(b"\r\n", 1)[0].decode(), body.decode()


def operator_context(outputs: dict) -> ssl.SSLContext:
    op = outputs["operatorClient"]
    return _tls_context(op["caPem"], op["certPem"], op["keyPem"])


def other_ca_client() -> tuple[str, str]:
    """A client certificate (clientAuth) from a CA that is not the platform's."""
    now = dt.datetime.now(dt.timezone.utc)
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "Another Docker CA")])
    ca = (
        x509.CertificateBuilder()
        .subject_name(ca_name)
        .issuer_name(ca_name)
        .public_key(ca_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + dt.timedelta(days=1))
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(ca_key, hashes.SHA256())
    )
    key = ec.generate_private_key(ec.SECP256R1())
    cert = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "operator")]))
        .issuer_name(ca.subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + dt.timedelta(days=1))
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.CLIENT_AUTH]), critical=False)
        .sign(ca_key, hashes.SHA256())
    )
    key_pem = key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    ).decode()
    return cert.public_bytes(serialization.Encoding.PEM).decode(), key_pem


def assert_refused(host: DisposableHost, ctx: ssl.SSLContext) -> str:
    """The daemon refuses the client: the handshake (TLS 1.2) or the first read (TLS 1.3, where
    the server checks the client certificate after the client's side of the handshake) fails
    with a TLS alert, and no API answer comes back."""
    try:
        status, body = docker_get(host, ctx)
    except (ssl.SSLError, ConnectionResetError, BrokenPipeError) as e:
        return str(e)
    raise AssertionError(f"the daemon answered a client it should refuse: {status} {body!r}")


# -- the first run --------------------------------------------------------------------------


def test_first_run_bootstraps_the_bare_host(bootstrap):
    runs = {r.name: r for r in bootstrap.first.mocks.runs}
    assert set(STEPS) <= set(runs), sorted(runs)
    assert all(r.exit_code == 0 for r in runs.values())
    # apt's and dpkg's progress come first; the script's summary is the last line
    assert runs[f"{HOST_NAME}-engine"].stdout.splitlines()[-1].startswith("installed: docker.io ")
    assert runs[f"{HOST_NAME}-host"].stdout.startswith("changed: timezone")
    assert runs[f"{HOST_NAME}-docker-config"].stdout.endswith("; docker restarted")
    # every remote command of the program ran on this host, over SSH to its published port
    assert {(r.host, r.port) for r in runs.values()} == {("127.0.0.1", bootstrap.host.ssh_port)}
    _log("first run: " + "; ".join(f"{r.name} {r.elapsed:.1f}s: {r.stdout.splitlines()[-1][:100]}" for r in bootstrap.first.mocks.runs))


def test_docker_io_from_debian_is_installed_and_held(bootstrap):
    host = bootstrap.host
    assert sh(host, "dpkg-query -W -f='${Status}' docker.io") == "hold ok installed"  # apt-mark hold
    assert "docker.io" in sh(host, "apt-mark showhold").split()
    assert sh(host, "dpkg-query -W -f='${Status}' docker-ce 2>/dev/null || echo absent") in ("absent", "unknown ok not-installed")


def test_docker_is_active_with_overlay2_and_live_restore(bootstrap):
    host = bootstrap.host
    assert sh(host, "systemctl is-active docker") == "active"
    assert sh(host, "systemctl is-enabled docker") == "enabled"
    assert sh(host, "docker info --format '{{.Driver}} {{.LiveRestoreEnabled}}'") == "overlay2 true"


def test_daemon_json_listens_on_the_configured_address_with_tls(bootstrap):
    host = bootstrap.host
    daemon = json.loads(sh(host, "cat /etc/docker/daemon.json"))
    assert daemon["hosts"] == ["unix:///var/run/docker.sock", "tcp://0.0.0.0:2376"]
    assert (daemon["tls"], daemon["tlsverify"]) == (True, True)
    assert (daemon["storage-driver"], daemon["live-restore"]) == ("overlay2", True)
    assert (daemon["tlscacert"], daemon["tlscert"], daemon["tlskey"]) == (
        "/etc/docker/tls/ca.pem",
        "/etc/docker/tls/server-cert.pem",
        "/etc/docker/tls/server-key.pem",
    )
    # the drop-in clears the unit's `-H fd://`: daemon.json's hosts are the only listeners
    assert sh(host, "systemctl show -p ExecStart docker | grep -o 'argv\\[\\]=[^;]*'") == "argv[]=/usr/sbin/dockerd"
    assert sh(host, "ss -Hltn 'sport = :2376' | awk '{ print $4 }'") in ("*:2376", "0.0.0.0:2376")


def test_tls_port_accepts_the_operator_client_certificate(bootstrap):
    status, body = docker_get(bootstrap.host, operator_context(bootstrap.outputs))
    assert (status, body) == ("HTTP/1.0 200 OK", "OK")
    status, body = docker_get(bootstrap.host, operator_context(bootstrap.outputs), "/version")
    assert status == "HTTP/1.0 200 OK" and json.loads(body)["Version"].startswith("20.10.")


def test_tls_port_refuses_a_client_without_a_certificate(bootstrap):
    ca = bootstrap.outputs["operatorClient"]["caPem"]
    reason = assert_refused(bootstrap.host, _tls_context(ca))
    assert "CERTIFICATE_REQUIRED" in reason or "certificate" in reason.lower() or "reset" in reason.lower(), reason


def test_tls_port_refuses_a_client_certificate_from_another_ca(bootstrap):
    ca = bootstrap.outputs["operatorClient"]["caPem"]
    cert, key = other_ca_client()
    reason = assert_refused(bootstrap.host, _tls_context(ca, cert, key))
    assert "BAD_CERTIFICATE" in reason or "UNKNOWN_CA" in reason or "certificate" in reason.lower() or "reset" in reason.lower(), reason


def test_docker_tls_files_modes_owner_and_content(bootstrap):
    host = bootstrap.host
    listing = sh(host, "stat -c '%n %a %U:%G' /etc/docker/tls/* /etc/docker/daemon.json /etc/systemd/system/docker.service.d/*")
    assert sorted(listing.splitlines()) == sorted(
        [
            "/etc/docker/tls/ca.pem 444 root:root",
            "/etc/docker/tls/server-cert.pem 444 root:root",
            "/etc/docker/tls/server-key.pem 400 root:root",
            "/etc/docker/daemon.json 644 root:root",
            "/etc/systemd/system/docker.service.d/10-delivery.conf 644 root:root",
        ]
    )
    # The all-in-one host runs review apps: it is in the staging trust domain, and trusts both CAs.
    assert sh(host, "cat /etc/docker/tls/ca.pem") == bootstrap.outputs["operatorClient"]["caPem"].strip()
    ca = x509.load_pem_x509_certificate(bootstrap.outputs["dockerStagingCaCertPem"].encode())
    server = x509.load_pem_x509_certificate(sh(host, "cat /etc/docker/tls/server-cert.pem").encode())
    server.verify_directly_issued_by(ca)
    sans = server.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert [str(ip) for ip in sans.get_values_for_type(x509.IPAddress)] == ["127.0.0.1"]
    key = serialization.load_pem_private_key(sh(host, "cat /etc/docker/tls/server-key.pem").encode(), None)
    assert key.public_key().public_numbers() == server.public_key().public_numbers()


def test_srv_layout_of_the_roles(bootstrap):
    wanted = {d.path: f"{d.mode:o}" for role in ALL_IN_ONE_ROLES for d in ROLE_DIRECTORIES[role]}
    assert wanted, "the roles need folders under /srv"
    out = sh(bootstrap.host, "stat -c '%n %a %U:%G %F' " + " ".join(sorted(wanted)))
    found = {line.split()[0]: line.split(" ", 1)[1] for line in out.splitlines()}
    assert found == {p: f"{m} root:root directory" for p, m in wanted.items()}


def test_time_zone_is_europe_volgograd(bootstrap):
    host = bootstrap.host
    assert sh(host, "readlink /etc/localtime") == f"/usr/share/zoneinfo/{TIMEZONE}"
    assert sh(host, "cat /etc/timezone") == TIMEZONE
    # the system's local time is Volgograd's (MSK, UTC+3 since tzdata 2020e), not UTC
    assert sh(host, "date +%Z") == sh(host, f"TZ={TIMEZONE} date +%Z") == "MSK"
    assert sh(host, "date +%z") == "+0300"


# -- a second run, then config changes (in this order) --------------------------------------


def test_second_run_changes_nothing_and_restarts_nothing(bootstrap):
    """The same config again: every step reports `unchanged` and Docker is not restarted (its
    ActiveEnterTimestamp, MainPID and NRestarts stay), no file of its configuration is rewritten
    (same mtime). Under `pulumi up` unchanged Commands would not even run; here they all run."""
    host = bootstrap.host
    before_unit, before_files = docker_unit(host), files_digest(host)
    again = run_program(host, bootstrap.state, bootstrap.images, log=_log)
    _log(f"converged re-run: {again.elapsed:.1f}s, first bootstrap {bootstrap.first.elapsed:.1f}s")
    assert sorted(r.name for r in again.mocks.runs) == sorted(r.name for r in bootstrap.first.mocks.runs)
    outputs = {r.name: r.stdout for r in again.mocks.runs}
    assert outputs.pop(f"{HOST_NAME}-engine").startswith("unchanged: docker.io ")
    assert outputs.pop("gitlab-server-ready") == "ready: gitlab"
    # the upgrade gate checks the running version on every run: the same version, nothing done
    assert outputs.pop("gitlab-upgrade-pre-upgrade") == f"unchanged: GitLab {DEFAULT_GITLAB_VERSION}"
    assert outputs == {n: "unchanged" for n in outputs}
    # ... and every container the program declares is the same one (same inputs, not touched).
    assert {e.action for e in again.mocks.applier.events} == {"same"}
    assert docker_unit(host) == before_unit
    assert files_digest(host) == before_files
    assert again.outputs["operatorClient"] == bootstrap.outputs["operatorClient"]
    assert docker_get(host, operator_context(again.outputs)) == ("HTTP/1.0 200 OK", "OK")


def test_listen_address_the_host_does_not_have_is_refused_before_docker_is_touched(bootstrap):
    """dockerListenAddress 192.0.2.10 (TEST-NET-1; no interface of the host has it): dockerd
    could not bind it. configure-docker.sh refuses it before it writes or restarts anything,
    on Docker 20.10 (Debian's docker.io, no `dockerd --validate`) as on Docker >= 23 (whose
    --validate does not check listen addresses either). Untouched means untouched here: the
    step fails, no file changes, the daemon keeps running (same ActiveEnterTimestamp and
    MainPID) and keeps answering the operator on 2376."""
    host = bootstrap.host
    before_unit, before_files = docker_unit(host), files_digest(host)
    broken = run_program(
        host, bootstrap.state, bootstrap.images, config=stack_config(host, listen_address="192.0.2.10"), raise_errors=False, log=_log
    )
    assert broken.error is not None, "the run with a listen address the host lacks succeeded"
    message = str(broken.error)
    assert f"{HOST_NAME}-docker-config: Process exited with status 1" in message
    assert "daemon.json listens on 192.0.2.10, an address this host does not have" in message
    assert "nothing was changed" in message
    assert docker_unit(host) == before_unit
    assert files_digest(host) == before_files
    assert docker_get(host, operator_context(bootstrap.outputs)) == ("HTTP/1.0 200 OK", "OK")


def test_docker_that_does_not_come_back_is_restored_with_the_previous_files(bootstrap):
    """A change that passes every check but with which dockerd does not start: the first
    configuration of a host on which another program already listens on 2376 (dockerd: "bind:
    address already in use"). The host is put back to where install-docker.sh leaves a fresh
    one (Debian's docker.service, `-H fd://`, no daemon.json, no TLS files), a listener squats
    0.0.0.0:2376, and the program runs.

    On Docker 20.10 nothing can tell beforehand, so configure-docker.sh writes the files,
    restarts Docker, sees it fail, puts the previous files back (here: removes the new ones),
    restarts Docker with them and fails the step. So "untouched" means, on 20.10 and on >= 23
    alike for this class of failure: the daemon was restarted once to try, then restored; it
    runs again with the previous configuration and files. (On Docker >= 23 a daemon.json that
    `dockerd --validate` rejects, and on every version a listen address the host lacks, is
    refused before any file or the daemon is touched: the previous test.)
    """
    host = bootstrap.host
    sh(
        host,
        "set -e; rm -f /etc/docker/daemon.json /etc/systemd/system/docker.service.d/10-delivery.conf; "
        "rm -rf /etc/docker/tls; systemctl daemon-reload; systemctl restart docker.socket docker.service; "
        "systemd-run --unit=delivery-e2e-squatter --quiet python3 -c "
        "'import socket, time; s = socket.socket(); s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1); "
        "s.bind((\"0.0.0.0\", 2376)); s.listen(); time.sleep(3600)'; "
        "for i in $(seq 1 50); do ss -Hltn 'sport = :2376' | grep -q . && break; sleep 0.1; done; "
        "docker info --format '{{.ServerVersion}}' >/dev/null",
    )
    assert "python3" in sh(host, "ss -Hltnp 'sport = :2376'"), "the squatter does not hold 2376"
    try:
        previous_files = files_digest(host)
        assert set(previous_files.values()) == {"absent"}
        before_unit = docker_unit(host)
        failed = run_program(host, bootstrap.state, bootstrap.images, raise_errors=False, log=_log)
        assert failed.error is not None, "the run succeeded although port 2376 was taken"
        message = str(failed.error)
        assert f"{HOST_NAME}-docker-config: Process exited with status 1" in message
        assert "docker did not start with the new configuration" in message
        assert "bind: address already in use" in message
        assert "docker runs again with the previous configuration" in message
        # the previous files (none of ours) are what is on disk
        assert files_digest(host) == previous_files
        # Docker runs again, with the previous configuration: the package's unit, its socket
        after_unit = docker_unit(host)
        assert after_unit["ActiveState"] == "active"
        assert after_unit["ActiveEnterTimestamp"] != before_unit["ActiveEnterTimestamp"]  # restarted to try
        assert "-H fd://" in sh(host, "systemctl show -p ExecStart docker")
        assert sh(host, "docker info --format '{{.Driver}} {{.LiveRestoreEnabled}}'") == "overlay2 false"
    finally:
        sh(host, "systemctl stop delivery-e2e-squatter.service || true")
    # with the port free again the same config converges
    fixed = run_program(host, bootstrap.state, bootstrap.images, log=_log)
    assert fixed.stdout(f"{HOST_NAME}-docker-config").endswith("; docker restarted")
    assert sh(host, "docker info --format '{{.Driver}} {{.LiveRestoreEnabled}}'") == "overlay2 true"
    assert docker_get(host, operator_context(fixed.outputs)) == ("HTTP/1.0 200 OK", "OK")


# -- an interrupted configure-docker.sh (issue 14, finding 9) -------------------------------


def served_certificate(host: DisposableHost, outputs: dict) -> bytes:
    """The DER certificate the daemon presents on 2376 (to the operator's client certificate;
    the server certificate itself is not verified here, it is what is compared)."""
    op = outputs["operatorClient"]
    ctx = _tls_context(op["caPem"], op["certPem"], op["keyPem"])
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    with socket.create_connection((host.ssh_host, host.docker_port), timeout=15) as raw:
        with ctx.wrap_socket(raw, server_hostname=host.ssh_host) as s:
            return s.getpeercert(binary_form=True)


def test_a_configure_docker_killed_before_the_restart_is_completed_by_the_next_run(bootstrap):
    """configure-docker.sh killed (SIGKILL) between writing the files and restarting Docker:
    a `systemctl` shim first on PATH kills the script at its `systemctl daemon-reload`. The new
    server certificate is on disk but the daemon still serves the old one; the next run with the
    same files restarts Docker (it does not say "unchanged") and the daemon serves the new
    certificate; the run after that is "unchanged". The program's own files are put back last."""
    from components.host.remote_script import SCRIPTS, FileSpec, script_command, tar_base64

    host = bootstrap.host
    old = served_certificate(host, bootstrap.outputs)
    assert old == x509.load_pem_x509_certificate(sh(host, "cat /etc/docker/tls/server-cert.pem").encode()).public_bytes(serialization.Encoding.DER)
    # A new server certificate for the same key (self-signed, SAN 127.0.0.1): the daemon's
    # client CA does not change, so the operator's client certificate is still accepted.
    key_pem = sh(host, "cat /etc/docker/tls/server-key.pem")
    key = serialization.load_pem_private_key(key_pem.encode(), None)
    now = dt.datetime.now(dt.timezone.utc)
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "interrupted-run")])
    new_cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + dt.timedelta(days=1))
        .add_extension(x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]), critical=False)
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
        .sign(key, hashes.SHA256())
    )
    files = [
        FileSpec(path, int(sh(host, f"stat -c %a {path}"), 8), sh(host, f"cat {path}") + "\n")
        for path in DOCKER_FILES
        if path != "/etc/docker/tls/server-cert.pem"
    ]
    files.append(FileSpec("/etc/docker/tls/server-cert.pem", 0o444, new_cert.public_bytes(serialization.Encoding.PEM).decode()))
    stdin = tar_base64(files)
    command = script_command(SCRIPTS / "configure-docker.sh")
    sh(
        host,
        "set -e; mkdir -p /root/delivery-e2e-shim; cat > /root/delivery-e2e-shim/systemctl <<'SHIM'\n"
        "#!/bin/bash\n"
        'if [ "$1" = daemon-reload ]; then kill -9 "$PPID"; sleep 5; exit 1; fi\n'
        'exec /usr/bin/systemctl "$@"\n'
        "SHIM\n"
        "chmod 755 /root/delivery-e2e-shim/systemctl",
    )
    before_unit = docker_unit(host)
    code, out, err = host.ssh("PATH=/root/delivery-e2e-shim:$PATH " + command, stdin=stdin, timeout=120)
    assert code != 0, f"the shim did not kill the step: {out}{err}"
    assert sh(host, "cat /etc/docker/tls/server-cert.pem") + "\n" == files[-1].content  # written ...
    assert docker_unit(host) == before_unit  # ... but Docker was not restarted
    assert served_certificate(host, bootstrap.outputs) == old
    try:
        code, out, err = host.ssh(command, stdin=stdin, timeout=180)
        assert code == 0, out + err
        assert out.strip() == "completed: docker restarted with the files already in place", out + err
        assert "completing an interrupted change" in err
        assert docker_unit(host)["ActiveEnterTimestamp"] != before_unit["ActiveEnterTimestamp"]
        assert served_certificate(host, bootstrap.outputs) == new_cert.public_bytes(serialization.Encoding.DER)
        op = bootstrap.outputs["operatorClient"]
        new_trust = _tls_context(files[-1].content, op["certPem"], op["keyPem"])  # the new certificate is its own CA
        assert docker_get(host, new_trust) == ("HTTP/1.0 200 OK", "OK")
        code, out, err = host.ssh(command, stdin=stdin, timeout=120)
        assert (code, out.strip()) == (0, "unchanged"), out + err
    finally:
        sh(host, "rm -rf /root/delivery-e2e-shim")
        # the program's own configuration back (its certificate)
        back = run_program(host, bootstrap.state, bootstrap.images, log=_log)
    assert back.stdout(f"{HOST_NAME}-docker-config").endswith("; docker restarted")
    assert served_certificate(host, back.outputs) == old
