"""The disposable-host harness: a private dockerd, a debootstrapped bookworm server image and a
session-scoped container of it with systemd as PID 1, reachable over SSH on 127.0.0.1.

Tests that need the host carry ``@pytest.mark.e2e``. They run only with ``DELIVERY_E2E=1``;
without it they are deselected (``pytest -m "not e2e"`` is the fast tier). With it, a missing
prerequisite is a test error that says what to install, never a skip.

Environment:
  DELIVERY_E2E=1          run the e2e tests
  DELIVERY_E2E_KEEP=1     leave the host container running after the session (for debugging)
"""

from __future__ import annotations

import io
import os
import shutil
import subprocess
import sys
import time
import uuid
from typing import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import paramiko
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ed25519

from .dockerd import DockerdError, PrivateDockerd, missing_prerequisites
from .dockerd import pid_alive
from .real_mocks import RemoteCommandError

HERE = Path(__file__).resolve().parent
BUILD_IMAGE = HERE / "build-image.sh"
E2E_ENABLED = os.environ.get("DELIVERY_E2E") == "1"

# What a fresh Debian bookworm machine needs for this harness (apt-get install ...).
APT_PACKAGES = ("docker.io", "containerd", "runc", "iptables", "iproute2", "debootstrap")


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers", "e2e: needs the disposable Debian host (root, docker.io, debootstrap); run with DELIVERY_E2E=1"
    )


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    if E2E_ENABLED:
        return
    selected, deselected = [], []
    for item in items:
        (deselected if item.get_closest_marker("e2e") else selected).append(item)
    if deselected:
        config.hook.pytest_deselected(items=deselected)
        items[:] = selected


def pytest_report_header(config: pytest.Config) -> str:
    return f"delivery e2e: {'enabled (DELIVERY_E2E=1)' if E2E_ENABLED else 'e2e tests deselected (set DELIVERY_E2E=1)'}"


def _require(ok: bool, message: str) -> None:
    if not ok:
        pytest.fail(f"e2e prerequisite missing: {message}", pytrace=False)


def _log(msg: str) -> None:
    sys.stderr.write(f"[e2e] {msg}\n")
    sys.stderr.flush()


@dataclass
class DisposableHost:
    """A running bookworm server container, reachable on 127.0.0.1."""

    container: str
    volume: str
    image: str
    ssh_port: int
    docker_port: int
    private_key_pem: str  # OpenSSH format, ed25519
    public_key: str  # "ssh-ed25519 AAAA..."
    host_key: str  # the host's "ssh-ed25519 AAAA..." (pin it in ConnectionArgs.host_key)
    host_keys: dict[str, str]  # every host key by type ("ssh-ed25519", "ecdsa-sha2-nistp256", "ssh-rsa")
    daemon: PrivateDockerd
    ip: str = ""  # the host's address on the harness's bridge (how other hosts reach it)
    published: dict[int, int] = field(default_factory=dict)  # host port -> port on 127.0.0.1
    ssh_host: str = "127.0.0.1"
    user: str = "root"
    timings: dict[str, float] = field(default_factory=dict)

    @property
    def docker_endpoint(self) -> str:
        """Where a client reaches the host's dockerd once it listens on tcp://0.0.0.0:2376."""
        return f"tcp://{self.ssh_host}:{self.docker_port}"

    def connection(self, **overrides: Any) -> dict[str, Any]:
        """Keyword arguments for pulumi_command.remote.ConnectionArgs."""
        args = {
            "host": self.ssh_host,
            "port": float(self.ssh_port),
            "user": self.user,
            "private_key": self.private_key_pem,
            "host_key": self.host_key,
            "dial_error_limit": 5,
            "per_dial_timeout": 10,
        }
        args.update(overrides)
        return args

    def exec(
        self, command: str, stdin: str | None = None, timeout: float = 120, check: bool = True
    ) -> subprocess.CompletedProcess:
        """Run ``bash -c command`` in the container with docker exec (no SSH involved)."""
        argv = ["exec", "-i"] if stdin is not None else ["exec"]
        proc = self.daemon.docker(*argv, self.container, "bash", "-c", command, check=False, timeout=timeout, input=stdin)
        if check and proc.returncode != 0:
            raise AssertionError(f"{command!r} exited {proc.returncode} on {self.container}: {proc.stdout}{proc.stderr}")
        return proc

    def ssh(self, command: str, stdin: str | None = None, timeout: float = 120) -> tuple[int, str, str]:
        """Run a command over SSH with the pinned host key (strict); returns (code, stdout, stderr)."""
        from .real_mocks import run_remote

        return run_remote(
            {
                "host": self.ssh_host,
                "port": self.ssh_port,
                "user": self.user,
                "privateKey": self.private_key_pem,
                "hostKey": self.host_key,
                "dialErrorLimit": 3,
                "perDialTimeout": 10,
            },
            command,
            stdin=stdin,
            timeout=timeout,
        )


@pytest.fixture(scope="session")
def e2e_dockerd() -> PrivateDockerd:
    """The private Docker daemon; started if needed, stopped at the end if started here."""
    missing = missing_prerequisites()
    _require(not missing, "; ".join(missing) + f" (apt-get install {' '.join(APT_PACKAGES)})")
    daemon = PrivateDockerd()
    t0 = time.monotonic()
    try:
        daemon.start(timeout=90)
    except DockerdError as e:
        pytest.fail(f"e2e prerequisite missing: private dockerd did not start: {e}", pytrace=False)
    _log(f"private dockerd {'started' if daemon.started_here else 'reused'} in {time.monotonic() - t0:.1f}s ({daemon.host})")
    # Hosts left behind by an interrupted session (the daemon outlives it when .ci/run owns it).
    # Hosts of another live session (several checkouts may test at once) are left alone.
    stale = [cid for cid, owner in host_owners(daemon) if owner is None or not pid_alive(owner)]
    for cid in stale:
        vols = daemon.docker(
            "inspect", "-f", '{{range .Mounts}}{{if eq .Type "volume"}}{{.Name}} {{end}}{{end}}', cid, check=False
        ).stdout.split()
        daemon.docker("rm", "--force", cid, check=False, timeout=120)
        for v in vols:
            daemon.docker("volume", "rm", "--force", v, check=False, timeout=60)
    if stale:
        _log(f"removed {len(stale)} stale disposable host(s)")
    yield daemon
    if daemon.other_leases():
        _log("leaving the private dockerd running: another live session uses it")
    daemon.stop(only_if_started=True)


#: Label of every disposable host: the pid of the test session that owns it.
OWNER_LABEL = "delivery-e2e.owner-pid"


def host_owners(daemon: PrivateDockerd) -> list[tuple[str, int | None]]:
    """(container id, owner pid or None) of every disposable host on the daemon."""
    out = daemon.docker(
        "ps", "-a", "--filter", "label=delivery-e2e=host", "--format", '{{.ID}} {{.Label "' + OWNER_LABEL + '"}}',
        check=False,
    ).stdout
    owners = []
    for line in out.splitlines():
        cid, _, owner = line.partition(" ")
        owners.append((cid, int(owner) if owner.strip().isdigit() else None))
    return owners


@pytest.fixture(scope="session")
def e2e_image(e2e_dockerd: PrivateDockerd) -> str:
    """The host image (built or taken from the cache by build-image.sh)."""
    _require(BUILD_IMAGE.exists(), f"{BUILD_IMAGE} is missing")
    _require(bool(shutil.which("debootstrap")) or _cached_tarball_exists(), "debootstrap (apt-get install debootstrap)")
    t0 = time.monotonic()
    # flock: another checkout testing at the same time builds or imports the same image.
    lock = Path(os.environ.get("DELIVERY_E2E_STATE", "/var/lib/delivery-e2e")) / "build-image.lock"
    lock.parent.mkdir(parents=True, exist_ok=True)
    proc = subprocess.run(
        ["flock", "--timeout", "1500", str(lock), "bash", str(BUILD_IMAGE)],
        env=e2e_dockerd.env(), capture_output=True, text=True, timeout=1600,
    )
    if proc.returncode != 0:
        pytest.fail(f"build-image.sh exited {proc.returncode}:\n{proc.stderr[-4000:]}", pytrace=False)
    image = proc.stdout.strip().splitlines()[-1]
    _log(f"host image {image} ready in {time.monotonic() - t0:.1f}s")
    return image


@pytest.fixture(scope="session")
def e2e_images(e2e_dockerd: PrivateDockerd):
    """The images the program's containers run (tests/e2e/images.py), built once a session."""
    from components.config.gitlab import DEFAULT_RUNNER_VERSION
    from components.config.services import DEFAULT_GITLAB_VERSION, DEFAULT_TRAEFIK_VERSION

    from .images import build, standard_images

    t0 = time.monotonic()
    try:
        store = build(e2e_dockerd, standard_images(DEFAULT_TRAEFIK_VERSION, DEFAULT_GITLAB_VERSION, DEFAULT_RUNNER_VERSION), log=_log)
    except (RuntimeError, subprocess.SubprocessError) as e:
        pytest.fail(f"e2e images could not be built: {e}", pytrace=False)
    _log(f"images ready in {time.monotonic() - t0:.1f}s")
    return store


def _cached_tarball_exists() -> bool:
    cache = Path(os.environ.get("DELIVERY_E2E_CACHE", "/var/cache/delivery-e2e"))
    return any(cache.glob("bookworm-host-*.tar"))


def _published_port(daemon: PrivateDockerd, container: str, port: int) -> int:
    out = daemon.docker("port", container, f"{port}/tcp").stdout.split()
    addr = next(a for a in out if a.startswith("127.0.0.1:"))
    return int(addr.rsplit(":", 1)[1])


def _wait(what: str, probe: Callable[[], bool], timeout: float, interval: float = 0.5) -> float:
    t0 = time.monotonic()
    while time.monotonic() - t0 < timeout:
        if probe():
            return time.monotonic() - t0
        time.sleep(interval)
    raise TimeoutError(f"{what} not ready after {timeout:.0f}s")


def start_host(
    daemon: PrivateDockerd,
    image: str,
    name_prefix: str = "delivery-e2e-host",
    publish: tuple[int, ...] = (),
    hostname: str = "delivery-e2e-host",
) -> DisposableHost:
    """Run one disposable host; the caller must call ``stop_host``. Ports 22 and 2376, and
    every port of ``publish``, are published on 127.0.0.1 (``host.published``)."""
    suffix = uuid.uuid4().hex[:8]
    container, volume = f"{name_prefix}-{suffix}", f"{name_prefix}-{suffix}-docker"
    timings: dict[str, float] = {}
    t0 = time.monotonic()

    key = ed25519.Ed25519PrivateKey.generate()
    private_pem = key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.OpenSSH, serialization.NoEncryption()
    ).decode()
    public = key.public_key().public_bytes(serialization.Encoding.OpenSSH, serialization.PublicFormat.OpenSSH).decode()

    daemon.docker("volume", "create", volume)
    daemon.docker(
        "run", "--detach", "--name", container, "--hostname", hostname,
        "--cap-add", "ALL", "--cap-drop", "SYS_RESOURCE",
        # nested dockerd needs keyctl/unshare etc. that the default seccomp profile refuses
        "--security-opt", "seccomp=unconfined", "--security-opt", "apparmor=unconfined",
        # /proc/sys writable as on a server: with "userland-proxy": false the nested dockerd
        # sets net.ipv4.conf.docker0.route_localnet
        "--security-opt", "systempaths=unconfined",
        "--cgroupns", "host", "--volume", "/sys/fs/cgroup:/sys/fs/cgroup:rw",
        "--tmpfs", "/run", "--tmpfs", "/run/lock",
        "--volume", f"{volume}:/var/lib/docker",
        "--stop-signal", "SIGRTMIN+3", "--stop-timeout", "20",
        *(a for p in (22, 2376, *publish) for a in ("--publish", f"127.0.0.1::{p}")),
        "--label", "delivery-e2e=host", "--label", f"{OWNER_LABEL}={os.getpid()}",
        image,
    )  # fmt: skip
    host = None
    try:
        published = {p: _published_port(daemon, container, p) for p in (22, 2376, *publish)}
        ssh_port, docker_port = published[22], published[2376]
        ip = daemon.docker("inspect", "-f", "{{range .NetworkSettings.Networks}}{{.IPAddress}}{{end}}", container).stdout.strip()

        def systemd_up() -> bool:
            p = daemon.docker("exec", container, "systemctl", "is-system-running", check=False, timeout=30)
            return p.stdout.strip() in ("running", "degraded")

        timings["systemd"] = _wait("systemd", systemd_up, timeout=120)
        daemon.docker(
            "exec", "-i", container, "bash", "-c",
            "install -d -m 0700 /root/.ssh && umask 077 && cat > /root/.ssh/authorized_keys",
            input=public + "\n",
        )  # fmt: skip
        host_keys = {}
        for path in ("ssh_host_ed25519_key.pub", "ssh_host_ecdsa_key.pub", "ssh_host_rsa_key.pub"):
            _wait(path, lambda: daemon.docker("exec", container, "test", "-s", f"/etc/ssh/{path}", check=False).returncode == 0, 60)
            fields = daemon.docker("exec", container, "cat", f"/etc/ssh/{path}").stdout.split()
            host_keys[fields[0]] = f"{fields[0]} {fields[1]}"
        host = DisposableHost(
            container=container,
            volume=volume,
            image=image,
            ssh_port=ssh_port,
            docker_port=docker_port,
            private_key_pem=private_pem,
            public_key=public,
            host_key=host_keys["ssh-ed25519"],
            host_keys=host_keys,
            daemon=daemon,
            ip=ip,
            published=published,
            timings=timings,
        )

        def ssh_up() -> bool:
            try:
                code, out, _ = host.ssh("true", timeout=15)
            except (RemoteCommandError, OSError, paramiko.SSHException):  # not up yet
                return False
            return code == 0

        timings["sshd"] = _wait("sshd", ssh_up, timeout=60, interval=1.0)
        timings["total"] = time.monotonic() - t0
        return host
    except BaseException:
        logs = daemon.docker("logs", "--tail", "50", container, check=False).stdout
        _log(f"host {container} failed to come up; last log lines:\n{logs}")
        stop_host(daemon, container, volume)
        raise


def stop_host(daemon: PrivateDockerd, container: str, volume: str) -> None:
    daemon.docker("rm", "--force", "--volumes", container, check=False, timeout=120)
    daemon.docker("volume", "rm", "--force", volume, check=False, timeout=60)


def own_host(daemon, image: str, name_prefix: str, log) -> Iterator["DisposableHost"]:
    """A module's own disposable host, for a module-scoped fixture to `yield from`: stopped
    afterwards unless DELIVERY_E2E_KEEP=1 (then left running, and `log` says where)."""
    host = start_host(daemon, image, name_prefix=name_prefix)
    yield host
    if os.environ.get("DELIVERY_E2E_KEEP") == "1":
        log(f"DELIVERY_E2E_KEEP=1: leaving {host.container} running (ssh 127.0.0.1:{host.ssh_port})")
        return
    stop_host(daemon, host.container, host.volume)


@pytest.fixture(scope="session")
def disposable_host(e2e_dockerd: PrivateDockerd, e2e_image: str) -> DisposableHost:
    """One bookworm server for the whole session (systemd PID 1, sshd, no Docker yet)."""
    try:
        host = start_host(e2e_dockerd, e2e_image)
    except (DockerdError, TimeoutError, subprocess.SubprocessError) as e:
        pytest.fail(f"disposable host did not come up: {e}", pytrace=False)
    _log(
        f"disposable host {host.container} up in {host.timings['total']:.1f}s "
        f"(systemd {host.timings['systemd']:.1f}s, sshd {host.timings['sshd']:.1f}s): "
        f"ssh 127.0.0.1:{host.ssh_port}, docker 127.0.0.1:{host.docker_port}"
    )
    yield host
    if os.environ.get("DELIVERY_E2E_KEEP") == "1":
        _log(f"DELIVERY_E2E_KEEP=1: leaving {host.container} running")
        return
    stop_host(e2e_dockerd, host.container, host.volume)
