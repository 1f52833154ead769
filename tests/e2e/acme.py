"""A real ACME CA and DNS for the e2e tier: Debian's `pebble` (an RFC 8555 test CA) and
`pebble-challtestsrv` (a DNS server with an HTTP API to set A and TXT records), run on this
machine and bound to the harness bridge's address, so that the disposable hosts (and the
containers in them) reach them and nothing else does.

* pebble's own HTTPS listener gets a certificate from a throw-away CA made here
  (`listener_ca_pem`); the certificates pebble issues chain to a root it makes at start
  (`issuer_roots_pem`, read from its management API). `ca_bundle_pem` is both: what a client
  must trust to talk to this ACME server and to the services whose certificates it issued
  (the stack's `acmeCaCertificate`).
* challtestsrv answers every A query with `default_ip` (Production's address: GitLab, the
  registry, the apps, the review apps all point there, as in real DNS) and serves the TXT
  records that `set_txt` / the exec DNS provider set (DNS-01). pebble validates through it,
  unless `dns_server` names another DNS server (tests/e2e/bind.py: BIND, authoritative for the
  review apps' zone and forwarding the rest here; `dns_port` is then chosen before `start()`,
  so that BIND can forward to it).

Ports are free ports picked at start; every wait is bounded; `stop()` ends both processes.
"""

from __future__ import annotations

import datetime as dt
import ipaddress
import json
import os
import shutil
import signal
import socket
import ssl
import subprocess
import tempfile
import time
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path
from typing import Optional

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

PEBBLE = "/usr/bin/pebble"
CHALLTESTSRV = "/usr/bin/pebble-challtestsrv"


def free_port(ip: str) -> int:
    with socket.socket() as s:
        s.bind((ip, 0))
        return s.getsockname()[1]


def _make_listener_pki(ip: str) -> tuple[str, str, str]:
    """(CA pem, server cert pem, server key pem) for pebble's HTTPS listener on `ip`."""
    now = dt.datetime.now(dt.timezone.utc)
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "delivery e2e ACME listener CA")])
    ca = (
        x509.CertificateBuilder().subject_name(ca_name).issuer_name(ca_name).public_key(ca_key.public_key())
        .serial_number(x509.random_serial_number()).not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + dt.timedelta(days=2))
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(x509.KeyUsage(digital_signature=True, content_commitment=False, key_encipherment=False,
                                     data_encipherment=False, key_agreement=False, key_cert_sign=True,
                                     crl_sign=True, encipher_only=False, decipher_only=False), critical=True)
        .sign(ca_key, hashes.SHA256())
    )
    key = ec.generate_private_key(ec.SECP256R1())
    cert = (
        x509.CertificateBuilder().subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "pebble")]))
        .issuer_name(ca_name).public_key(key.public_key()).serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5)).not_valid_after(now + dt.timedelta(days=2))
        .add_extension(x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address(ip)),
                                                    x509.DNSName("localhost")]), critical=False)
        .add_extension(x509.ExtendedKeyUsage([x509.oid.ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
        .sign(ca_key, hashes.SHA256())
    )
    pem = lambda c: c.public_bytes(serialization.Encoding.PEM).decode()  # noqa: E731
    key_pem = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                serialization.NoEncryption()).decode()
    return pem(ca), pem(cert), key_pem


@dataclass
class AcmeServer:
    ip: str
    """Address to bind (the harness bridge's gateway, 172.29.213.1)."""
    default_ip: str
    """Answer of every A query (Production's address)."""
    work: Path = field(default_factory=lambda: Path(tempfile.mkdtemp(prefix="delivery-e2e-acme-")))
    acme_port: int = 0
    management_port: int = 0
    dns_port: int = 0
    api_port: int = 0
    dns_server: Optional[str] = None
    """host:port pebble resolves through (default: challtestsrv)."""
    listener_ca_pem: str = ""
    issuer_roots_pem: str = ""
    _procs: list[subprocess.Popen] = field(default_factory=list)

    @property
    def directory_url(self) -> str:
        return f"https://{self.ip}:{self.acme_port}/dir"

    @property
    def dns_address(self) -> str:
        return f"{self.ip}:{self.dns_port}"

    @property
    def api_url(self) -> str:
        """challtestsrv's management API (set-txt, clear-txt, add-a ...)."""
        return f"http://{self.ip}:{self.api_port}"

    @property
    def ca_bundle_pem(self) -> str:
        return self.listener_ca_pem + self.issuer_roots_pem

    def start(self, timeout: float = 30) -> "AcmeServer":
        for binary in (PEBBLE, CHALLTESTSRV):
            if not Path(binary).exists():
                raise RuntimeError(f"{binary} is missing (apt-get install pebble)")
        self.acme_port, self.management_port = free_port(self.ip), free_port(self.ip)
        self.dns_port, self.api_port = self.dns_port or free_port(self.ip), free_port(self.ip)
        self.listener_ca_pem, cert, key = _make_listener_pki(self.ip)
        (self.work / "cert.pem").write_text(cert)
        (self.work / "key.pem").write_text(key)
        os.chmod(self.work / "key.pem", 0o600)
        (self.work / "pebble.json").write_text(json.dumps({"pebble": {
            "listenAddress": f"{self.ip}:{self.acme_port}",
            "managementListenAddress": f"{self.ip}:{self.management_port}",
            "certificate": str(self.work / "cert.pem"),
            "privateKey": str(self.work / "key.pem"),
            "httpPort": 80,
            "tlsPort": 443,
            "ocspResponderURL": "",
            "externalAccountBindingRequired": False,
        }}))
        self._spawn("challtestsrv", [CHALLTESTSRV, "-defaultIPv4", self.default_ip, "-defaultIPv6", "",
                                     "-dns01", f"{self.ip}:{self.dns_port}", "-http01", "", "-https01", "",
                                     "-tlsalpn01", "", "-management", f"{self.ip}:{self.api_port}"], {})
        # No sleeps between validation attempts, no nonce rejections: a deterministic CA.
        self._spawn("pebble", [PEBBLE, "-config", str(self.work / "pebble.json"), "-dnsserver", self.dns_server or self.dns_address],
                    {"PEBBLE_VA_NOSLEEP": "1", "PEBBLE_WFE_NONCEREJECT": "0"})
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                self.issuer_roots_pem = self._management("/roots/0")
                if "BEGIN CERTIFICATE" in self.issuer_roots_pem and self._directory_ok():
                    return self
            except OSError:
                pass
            for p in self._procs:
                if p.poll() is not None:
                    raise RuntimeError(f"{p.args[0]} exited {p.returncode}; see {self.work}")
            time.sleep(0.3)
        raise RuntimeError(f"pebble did not answer within {timeout:.0f}s; see {self.work}")

    def _spawn(self, name: str, argv: list[str], env: dict[str, str]) -> None:
        log = open(self.work / f"{name}.log", "ab")  # noqa: SIM115 - handed to the child
        try:
            self._procs.append(subprocess.Popen(argv, stdout=log, stderr=subprocess.STDOUT,
                                                stdin=subprocess.DEVNULL, env={**os.environ, **env},
                                                start_new_session=True))
        finally:
            log.close()

    def _context(self) -> ssl.SSLContext:
        return ssl.create_default_context(cadata=self.listener_ca_pem)

    def _management(self, path: str) -> str:
        url = f"https://{self.ip}:{self.management_port}{path}"
        with urllib.request.urlopen(url, context=self._context(), timeout=5) as r:
            return r.read().decode()

    def _directory_ok(self) -> bool:
        with urllib.request.urlopen(self.directory_url, context=self._context(), timeout=5) as r:
            return "newOrder" in json.loads(r.read())

    def api(self, path: str, payload: dict) -> None:
        req = urllib.request.Request(self.api_url + path, data=json.dumps(payload).encode(), method="POST")
        with urllib.request.urlopen(req, timeout=5) as r:
            r.read()

    def set_a(self, host: str, ip: str) -> None:
        self.api("/add-a", {"host": host.rstrip(".") + ".", "addresses": [ip]})

    def log_text(self, name: str) -> str:
        try:
            return (self.work / f"{name}.log").read_text(errors="replace")
        except OSError:
            return ""

    def stop(self) -> None:
        for p in self._procs:
            if p.poll() is None:
                p.send_signal(signal.SIGTERM)
        for p in self._procs:
            try:
                p.wait(timeout=10)
            except subprocess.TimeoutExpired:
                p.kill()
                p.wait(timeout=10)
        self._procs.clear()
        if os.environ.get("DELIVERY_E2E_KEEP") != "1":
            shutil.rmtree(self.work, ignore_errors=True)


def issuer_of(pem_chain: str) -> Optional[str]:
    """The issuer CN of the first certificate of a PEM chain."""
    cert = x509.load_pem_x509_certificate(pem_chain.encode())
    cns = cert.issuer.get_attributes_for_oid(NameOID.COMMON_NAME)
    return cns[0].value if cns else None
