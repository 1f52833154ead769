"""A real authoritative DNS server with RFC 2136 dynamic updates for the e2e tier: Debian's
`bind9` (`named`), run on this machine and bound to the harness bridge's address, port 53 only
(Lexicon's `ddns` provider sends its updates to port 53 of `ddns_server` and has no port option).

* authoritative for one zone (`dev.<domain>`), updatable with one TSIG key, for TXT records only
  (`update-policy { grant <key> zonesub TXT; }`: what DNS-01 needs, nothing more);
* the rest of the platform's domain is forwarded to pebble-challtestsrv (tests/e2e/acme.py),
  which answers every A query with Production's address, as the public DNS of the platform would;
* every other name is forwarded to `upstream` (the resolvers the hosts used before: this
  machine's, e.g. for the Debian mirror Docker is installed from), so a host that resolves
  through BIND resolves what it resolved before, plus the zone;
* its log (category `update`) records each dynamic update with the key that signed it.

One `named` at a time can own the bridge's port 53: `start()` takes a lock file (bounded wait)
that `stop()` releases. Every wait is bounded; `stop()` ends the process it started.
"""

from __future__ import annotations

import base64
import fcntl
import os
import secrets
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Optional

NAMED = "/usr/sbin/named"
KEY_NAME = "delivery-e2e-acme"
ALGORITHM = "hmac-sha256"
LOCK = Path(os.environ.get("DELIVERY_E2E_STATE", "/var/lib/delivery-e2e")) / "bind-port53.lock"


@dataclass
class BindServer:
    ip: str
    """Address to bind, port 53 (the harness bridge's gateway)."""
    zone: str
    """The zone it is authoritative for (dev.<domain>)."""
    zone_ip: str
    """A record of the zone's apex and of every name under it (Production)."""
    domain: str
    """The platform's domain: forwarded to challtestsrv."""
    upstream: tuple[str, ...] = ()
    """Resolvers for every other name (none: they fail)."""
    work: Path = field(default_factory=lambda: Path(tempfile.mkdtemp(prefix="delivery-e2e-bind-")))
    secret: str = field(default_factory=lambda: base64.b64encode(secrets.token_bytes(32)).decode())
    _proc: Optional[subprocess.Popen] = None
    _lock: Optional[IO[str]] = None

    @property
    def address(self) -> str:
        return f"{self.ip}:53"

    @property
    def auth_token(self) -> str:
        """Lexicon ddns's `auth_token`: <algorithm>:<key name>:<secret>."""
        return f"{ALGORITHM}:{KEY_NAME}:{self.secret}"

    @staticmethod
    def machine_resolvers(path: str = "/etc/resolv.conf") -> tuple[str, ...]:
        """The IPv4 nameservers of this machine's resolv.conf (loopback ones are skipped: BIND
        listens on the bridge only and could not reach a local stub the hosts do not use)."""
        found = []
        for line in Path(path).read_text().splitlines():
            parts = line.split()
            if len(parts) >= 2 and parts[0] == "nameserver" and "." in parts[1] and not parts[1].startswith("127."):
                found.append(parts[1])
        return tuple(found)

    def _config(self, forward_ip: str, forward_port: int) -> str:
        w = self.work
        return f"""
key "{KEY_NAME}" {{ algorithm {ALGORITHM}; secret "{self.secret}"; }};
controls {{ }};
options {{
  directory "{w}";
  pid-file "{w}/named.pid";
  session-keyfile "{w}/session.key";
  managed-keys-directory "{w}";
  listen-on port 53 {{ {self.ip}; }};
  listen-on-v6 {{ none; }};
  recursion yes;
  allow-query {{ any; }};
  allow-recursion {{ any; }};
  forward only;
  forwarders {{ {"".join(f"{u}; " for u in self.upstream)}}};
  dnssec-validation no;
  notify no;
}};
logging {{
  channel main {{ file "{w}/named.log"; severity info; print-time yes; print-category yes; }};
  category default {{ main; }};
  category update {{ main; }};
  category update-security {{ main; }};
  category lame-servers {{ null; }};
}};
zone "{self.domain}" {{
  type forward;
  forward only;
  forwarders {{ {forward_ip} port {forward_port}; }};
}};
zone "{self.zone}" {{
  type primary;
  file "{w}/{self.zone}.zone";
  update-policy {{ grant {KEY_NAME} zonesub TXT; }};
}};
"""

    def _zone_file(self) -> str:
        z = self.zone
        return (
            "$TTL 60\n"
            f"@ IN SOA ns.{z}. hostmaster.{z}. 1 60 60 600 60\n"
            f"@ IN NS ns.{z}.\n"
            f"ns IN A {self.ip}\n"
            f"@ IN A {self.zone_ip}\n"
            f"* IN A {self.zone_ip}\n"
        )

    def start(self, forward_ip: str, forward_port: int, timeout: float = 30, lock_timeout: float = 600) -> "BindServer":
        if not Path(NAMED).exists():
            raise RuntimeError(f"{NAMED} is missing (apt-get install bind9)")
        LOCK.parent.mkdir(parents=True, exist_ok=True)
        self._lock = open(LOCK, "a")  # noqa: SIM115 - held until stop()
        deadline = time.monotonic() + lock_timeout
        while True:
            try:
                fcntl.flock(self._lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                if time.monotonic() > deadline:
                    raise RuntimeError(f"{LOCK}: another e2e run holds port 53 of {self.ip} for {lock_timeout:.0f}s")
                time.sleep(1)
        (self.work / "named.conf").write_text(self._config(forward_ip, forward_port))
        (self.work / f"{self.zone}.zone").write_text(self._zone_file())
        log = open(self.work / "named.out", "ab")  # noqa: SIM115 - handed to the child
        try:
            self._proc = subprocess.Popen([NAMED, "-f", "-4", "-c", str(self.work / "named.conf")], stdout=log,
                                          stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, start_new_session=True)
        finally:
            log.close()
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self._proc.poll() is not None:
                raise RuntimeError(f"named exited {self._proc.returncode}: {self.log_text()[-2000:]}{self._out()[-2000:]}")
            if "running" in self.log_text():
                try:
                    socket.create_connection((self.ip, 53), timeout=2).close()
                    return self
                except OSError:
                    pass
            time.sleep(0.2)
        raise RuntimeError(f"named did not start within {timeout:.0f}s: {self.log_text()[-2000:]}{self._out()[-2000:]}")

    def _out(self) -> str:
        try:
            return (self.work / "named.out").read_text(errors="replace")
        except OSError:
            return ""

    def log_text(self) -> str:
        try:
            return (self.work / "named.log").read_text(errors="replace")
        except OSError:
            return ""

    def stop(self) -> None:
        if self._proc is not None and self._proc.poll() is None:
            self._proc.send_signal(signal.SIGTERM)
            try:
                self._proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self._proc.kill()
                self._proc.wait(timeout=10)
        self._proc = None
        if self._lock is not None:
            self._lock.close()  # releases the flock
            self._lock = None
        if os.environ.get("DELIVERY_E2E_KEEP") != "1":
            shutil.rmtree(self.work, ignore_errors=True)
