"""A private Docker daemon for the disposable-host harness.

Runs Debian's ``dockerd`` (package ``docker.io``) with its own ``containerd``, data root, exec
root, unix socket, pidfiles and bridge, so it neither needs nor disturbs a system
``docker.service``. State lives under ``/var/lib/delivery-e2e`` (kept between runs, so the
host image stays imported) and runtime files under ``/run/delivery-e2e``.

Use from Python (``PrivateDockerd().start()`` / ``.stop()``) or from a shell::

    python tests/e2e/dockerd.py start     # idempotent; prints DOCKER_HOST=...
    python tests/e2e/dockerd.py status
    python tests/e2e/dockerd.py stop

A daemon that is already answering on the socket when ``start`` is called is reused and left
running by ``stop(only_if_started=True)``: .ci/run may start it once for several test runs.
"""

from __future__ import annotations

import argparse
import ipaddress
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

STATE_DIR = Path(os.environ.get("DELIVERY_E2E_STATE", "/var/lib/delivery-e2e"))
RUN_DIR = Path(os.environ.get("DELIVERY_E2E_RUN", "/run/delivery-e2e"))
BRIDGE = os.environ.get("DELIVERY_E2E_BRIDGE", "de2e0")
BRIDGE_CIDR = os.environ.get("DELIVERY_E2E_BRIDGE_CIDR", "172.29.213.1/24")
DOCKER_BIN = os.environ.get("DELIVERY_E2E_DOCKER", "/usr/bin/docker")
DOCKERD_BIN = os.environ.get("DELIVERY_E2E_DOCKERD", "/usr/sbin/dockerd")
CONTAINERD_BIN = os.environ.get("DELIVERY_E2E_CONTAINERD", "/usr/bin/containerd")

# Debian packages that provide what this module runs.
APT_PACKAGES = ("docker.io", "containerd", "runc", "iptables", "iproute2")


class DockerdError(RuntimeError):
    """The private daemon could not be started or stopped."""


def _ping(sock_path: Path, timeout: float = 2.0) -> bool:
    """True when the Docker API on the unix socket answers GET /_ping with OK."""
    if not sock_path.exists():
        return False
    try:
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as s:
            s.settimeout(timeout)
            s.connect(str(sock_path))
            s.sendall(b"GET /_ping HTTP/1.0\r\nHost: docker\r\n\r\n")
            data = b""
            while len(data) < 4096:
                chunk = s.recv(4096)
                if not chunk:
                    break
                data += chunk
    except OSError:
        return False
    head, _, body = data.partition(b"\r\n\r\n")
    return head.startswith(b"HTTP/1.") and b" 200 " in head.split(b"\r\n")[0] and body.strip() == b"OK"


def pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _read_pid(path: Path) -> int | None:
    try:
        return int(path.read_text().strip())
    except (OSError, ValueError):
        return None


def _uplink_mtu() -> int:
    """MTU of the interface that carries the default route (containers must not exceed it)."""
    try:
        out = subprocess.run(
            ["ip", "-o", "route", "show", "default"], capture_output=True, text=True, timeout=10, check=True
        ).stdout.split()
        dev = out[out.index("dev") + 1]
        return min(int(Path(f"/sys/class/net/{dev}/mtu").read_text()), 1500)
    except (OSError, ValueError, IndexError, subprocess.SubprocessError):
        return 1500


def missing_prerequisites() -> list[str]:
    """Human-readable list of what this machine lacks to run the private daemon."""
    missing = []
    if os.geteuid() != 0:
        missing.append("must run as root (dockerd, bridges and iptables need it)")
    for binary, pkg in (
        (DOCKERD_BIN, "docker.io"),
        (DOCKER_BIN, "docker.io"),
        (CONTAINERD_BIN, "containerd"),
        ("/usr/sbin/iptables", "iptables"),
    ):
        if not (Path(binary).exists() or shutil.which(binary)):
            missing.append(f"{binary} not found (apt-get install {pkg})")
    if not shutil.which("ip"):
        missing.append("ip not found (apt-get install iproute2)")
    if not shutil.which("runc"):
        missing.append("runc not found (apt-get install runc)")
    return missing


@dataclass
class PrivateDockerd:
    """A dockerd + containerd pair owned by the harness."""

    state_dir: Path = STATE_DIR
    run_dir: Path = RUN_DIR
    bridge: str = BRIDGE
    bridge_cidr: str = BRIDGE_CIDR
    started_here: bool = field(default=False, init=False)

    # --- paths -------------------------------------------------------------------------------
    @property
    def sock(self) -> Path:
        return self.run_dir / "docker.sock"

    @property
    def host(self) -> str:
        """Value for DOCKER_HOST."""
        return f"unix://{self.sock}"

    @property
    def dockerd_pidfile(self) -> Path:
        return self.run_dir / "docker.pid"

    @property
    def containerd_pidfile(self) -> Path:
        return self.run_dir / "containerd.pid"

    @property
    def containerd_sock(self) -> Path:
        return self.run_dir / "containerd" / "containerd.sock"

    @property
    def log_dir(self) -> Path:
        return self.run_dir / "logs"

    def env(self) -> dict[str, str]:
        """os.environ with DOCKER_HOST pointing at this daemon."""
        env = dict(os.environ)
        env["DOCKER_HOST"] = self.host
        env.pop("DOCKER_CONTEXT", None)
        return env

    # --- docker client -----------------------------------------------------------------------
    def docker(
        self, *args: str, check: bool = True, timeout: float = 120, input: str | bytes | None = None
    ) -> subprocess.CompletedProcess:
        """Run Debian's docker client against this daemon; text output."""
        proc = subprocess.run(
            [DOCKER_BIN, *args],
            env=self.env(),
            capture_output=True,
            text=not isinstance(input, bytes),
            input=input,
            timeout=timeout,
        )
        if check and proc.returncode != 0:
            raise DockerdError(f"docker {' '.join(args)} exited {proc.returncode}: {proc.stderr}")
        return proc

    def running(self) -> bool:
        return _ping(self.sock)

    # --- lifecycle ---------------------------------------------------------------------------
    # --- leases: several test sessions (checkouts) may share the daemon ---------------------
    @property
    def lease_dir(self) -> Path:
        return self.run_dir / "leases"

    def _take_lease(self) -> None:
        self.lease_dir.mkdir(parents=True, exist_ok=True)
        (self.lease_dir / str(os.getpid())).write_text(f"{os.getpid()}\n")

    def other_leases(self) -> list[int]:
        """Pids of other live sessions using this daemon (stale leases are removed)."""
        live = []
        for lease in self.lease_dir.glob("*") if self.lease_dir.exists() else []:
            pid = int(lease.name) if lease.name.isdigit() else None
            if pid is None or not pid_alive(pid):
                lease.unlink(missing_ok=True)
            elif pid != os.getpid():
                live.append(pid)
        return live

    def start(self, timeout: float = 90) -> "PrivateDockerd":
        """Start containerd and dockerd unless the daemon already answers; wait (bounded).
        Either way this session takes a lease, so that no other session stops the daemon under it."""
        if self.running():
            self._take_lease()
            return self
        missing = missing_prerequisites()
        if missing:
            raise DockerdError("cannot start the private dockerd: " + "; ".join(missing))
        for d in (self.state_dir, self.run_dir, self.log_dir, self.state_dir / "containerd"):
            d.mkdir(parents=True, exist_ok=True)
        self._ensure_bridge()
        self._start_containerd(deadline=time.monotonic() + timeout / 2)
        self._start_dockerd(deadline=time.monotonic() + timeout / 2)
        self.started_here = True
        self._take_lease()
        return self

    def _ensure_bridge(self) -> None:
        iface = ipaddress.ip_interface(self.bridge_cidr)
        if not Path(f"/sys/class/net/{self.bridge}").exists():
            # Refuse a subnet that some other interface already routes.
            routes = subprocess.run(
                ["ip", "-4", "-o", "route", "show"], capture_output=True, text=True, timeout=10, check=True
            ).stdout
            for line in routes.splitlines():
                dst = line.split()[0]
                if dst == "default":
                    continue
                try:
                    if ipaddress.ip_network(dst, strict=False).overlaps(iface.network):
                        raise DockerdError(
                            f"bridge subnet {iface.network} overlaps route {line!r}; "
                            "set DELIVERY_E2E_BRIDGE_CIDR"
                        )
                except ValueError:
                    continue
            subprocess.run(["ip", "link", "add", self.bridge, "type", "bridge"], check=True, timeout=10)
            subprocess.run(["ip", "addr", "add", self.bridge_cidr, "dev", self.bridge], check=True, timeout=10)
        subprocess.run(
            ["ip", "link", "set", self.bridge, "mtu", str(_uplink_mtu()), "up"], check=True, timeout=10
        )

    def _spawn(self, argv: list[str], log_name: str, pidfile: Path) -> subprocess.Popen:
        log = open(self.log_dir / log_name, "ab")  # noqa: SIM115 - handed to the child
        try:
            proc = subprocess.Popen(
                argv, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, start_new_session=True
            )
        finally:
            log.close()
        pidfile.write_text(f"{proc.pid}\n")
        return proc

    def _start_containerd(self, deadline: float) -> None:
        pid = _read_pid(self.containerd_pidfile)
        if pid and pid_alive(pid) and self.containerd_sock.exists():
            return
        config = self.run_dir / "containerd.toml"
        config.write_text(
            "\n".join(
                [
                    "version = 2",
                    f'root = "{self.state_dir / "containerd"}"',
                    f'state = "{self.run_dir / "containerd"}"',
                    'disabled_plugins = ["io.containerd.grpc.v1.cri"]',
                    "[grpc]",
                    f'  address = "{self.containerd_sock}"',
                    "[ttrpc]",
                    f'  address = "{self.containerd_sock}.ttrpc"',
                    "[debug]",
                    '  address = ""',
                    "",
                ]
            )
        )
        proc = self._spawn([CONTAINERD_BIN, "--config", str(config)], "containerd.log", self.containerd_pidfile)
        while time.monotonic() < deadline:
            if proc.poll() is not None:
                raise DockerdError(f"containerd exited {proc.returncode}; see {self.log_dir / 'containerd.log'}")
            if self.containerd_sock.exists():
                return
            time.sleep(0.2)
        raise DockerdError(f"containerd did not create {self.containerd_sock} in time")

    def _start_dockerd(self, deadline: float) -> None:
        argv = [
            DOCKERD_BIN,
            "--host", self.host,
            "--data-root", str(self.state_dir / "docker"),
            "--exec-root", str(self.run_dir / "exec"),
            "--pidfile", str(self.dockerd_pidfile),
            "--containerd", str(self.containerd_sock),
            "--bridge", self.bridge,
            "--mtu", str(_uplink_mtu()),
            "--storage-driver", "overlay2",
            "--iptables=true",
            "--ip-forward=true",
            "--log-level", "warn",
        ]  # fmt: skip
        proc = self._spawn(argv, "dockerd.log", self.run_dir / "dockerd.spawn.pid")
        while time.monotonic() < deadline:
            if proc.poll() is not None:
                raise DockerdError(f"dockerd exited {proc.returncode}; see {self.log_dir / 'dockerd.log'}")
            if _ping(self.sock):
                return
            time.sleep(0.25)
        raise DockerdError(f"dockerd did not answer on {self.sock} in time; see {self.log_dir / 'dockerd.log'}")

    def stop(self, timeout: float = 60, only_if_started: bool = False) -> None:
        """Stop dockerd then containerd (TERM, then KILL after the timeout); remove the bridge.
        With ``only_if_started``, this session's lease is released, and the daemon is stopped only
        when this session started it and no other live session holds a lease."""
        if only_if_started:
            (self.lease_dir / str(os.getpid())).unlink(missing_ok=True)
            if not self.started_here or self.other_leases():
                return
        for pidfile in (self.dockerd_pidfile, self.run_dir / "dockerd.spawn.pid", self.containerd_pidfile):
            pid = _read_pid(pidfile)
            if pid and pid_alive(pid):
                os.kill(pid, signal.SIGTERM)
                end = time.monotonic() + timeout / 2
                while pid_alive(pid) and time.monotonic() < end:
                    try:  # reap it if it is our child
                        os.waitpid(pid, os.WNOHANG)
                    except ChildProcessError:
                        pass
                    time.sleep(0.2)
                if pid_alive(pid):
                    os.kill(pid, signal.SIGKILL)
            pidfile.unlink(missing_ok=True)
        if Path(f"/sys/class/net/{self.bridge}").exists():
            subprocess.run(["ip", "link", "delete", self.bridge], check=False, timeout=10)
        self.started_here = False


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("action", choices=["start", "stop", "status", "env"])
    parser.add_argument("--timeout", type=float, default=90)
    args = parser.parse_args(argv)
    daemon = PrivateDockerd()
    if args.action == "start":
        t0 = time.monotonic()
        daemon.start(timeout=args.timeout)
        print(f"DOCKER_HOST={daemon.host}  # ready in {time.monotonic() - t0:.1f}s", flush=True)
    elif args.action == "stop":
        daemon.stop(timeout=args.timeout)
        print("stopped")
    elif args.action == "status":
        up = daemon.running()
        print("running" if up else "not running")
        return 0 if up else 3
    else:
        print(f"DOCKER_HOST={daemon.host}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
