"""The wildcard certificate by `wildcardMethod: dnsrobocert`, for real (issue "Services end to
end", Deliver 4): the program's dnsrobocert container (the REAL dnsrobocert 3.26.1, certbot and
Lexicon, from PyPI: tests/e2e/images.py) gets `*.dev.<domain>` from pebble by DNS-01, setting the
TXT records with Lexicon's `ddns` provider (RFC 2136, TSIG) on a real BIND (tests/e2e/bind.py)
that is authoritative for `dev.<domain>`; its deploy hook hands the certificate to the edge
Traefik, which serves it from its file provider without a restart.

One bring-up of the production stack only (tests/e2e/services_platform.py with a
`WildcardVariant`): Staging is not needed for the certificate; the staging host is started (the
production stack names it) but its stack is not run.
"""

from __future__ import annotations

import sys
import time
from typing import Any, Optional

import pytest
from cryptography import x509

from .bind import BindServer
from .images import dnsrobocert_image
from .services_platform import DOMAIN, Services, bring_up
from .test_services_e2e import eventually, https, issuer_cn, sans

pytestmark = pytest.mark.e2e

ZONE = f"dev.{DOMAIN}"
WILDCARD = f"*.{ZONE}"
REVIEW_HOST = f"some-review.{ZONE}"
DNSROBOCERT_VERSION = "3.26.1"  # components/config/services.py DEFAULT_DNSROBOCERT_VERSION (the program's default)
DELIVERED = "/srv/traefik/certs/wildcard"
STATE = "/srv/letsencrypt-dns/letsencrypt"


def _log(msg: str) -> None:
    sys.stderr.write(f"[e2e-dnsrobocert] {msg}\n")
    sys.stderr.flush()


class DnsrobocertDdns:
    """`wildcardMethod: dnsrobocert`, `dnsProvider: ddns`: BIND is the zone's primary server,
    Lexicon updates it with a TSIG key; pebble validates through BIND; Production's resolver is
    BIND (dnsrobocert finds the zone with the container's resolver, which Docker copies from
    the host's /etc/resolv.conf)."""

    images = (dnsrobocert_image(DNSROBOCERT_VERSION),)

    def __init__(self) -> None:
        self.bind: Optional[BindServer] = None

    def start_dns(self, bridge_ip: str, forward_port: int, production_ip: str) -> str:
        # Names outside the platform's domain go where the hosts sent them before (this machine's
        # resolvers: the Debian mirror Docker is installed from).
        self.bind = BindServer(bridge_ip, ZONE, production_ip, DOMAIN, BindServer.machine_resolvers())
        self.bind.start(bridge_ip, forward_port)
        return self.bind.address

    def config(self) -> dict[str, Any]:
        assert self.bind is not None
        return {
            "wildcardMethod": "dnsrobocert",
            "dnsProvider": "ddns",
            "dnsCredentials": {"auth_token": self.bind.auth_token, "ddns_server": self.bind.ip, "domain": ZONE},
            "dnsPropagationSeconds": 2,
        }

    def resolver(self) -> Optional[str]:
        assert self.bind is not None
        return self.bind.ip

    def stop(self) -> None:
        if self.bind is not None:
            self.bind.stop()


@pytest.fixture(scope="module")
def platform(e2e_dockerd, e2e_image) -> Services:
    t0 = time.monotonic()
    variant = DnsrobocertDdns()
    svc = bring_up(e2e_dockerd, e2e_image, _log, gate_delay=None, variant=variant, stacks=("production",))
    svc.timings["module_setup"] = time.monotonic() - t0
    _log(f"timings: { {k: round(v, 1) for k, v in svc.timings.items()} }")
    yield svc
    svc.stop()
    _log(f"module wall time {time.monotonic() - t0:.1f}s")


def container(svc: Services, name: str) -> tuple[str, str, int]:
    """(ID, StartedAt, RestartCount) of a container on Production."""
    out = svc.production.exec(f"docker inspect -f '{{{{.Id}}}} {{{{.State.StartedAt}}}} {{{{.RestartCount}}}}' {name}").stdout.split()
    return out[0], out[1], int(out[2])


def served(svc: Services, host: str = REVIEW_HOST) -> x509.Certificate:
    """The certificate the edge serves for `host`, verified against pebble's root."""
    return https(svc, host, "/")[3]


def leaf_of(pem: str) -> x509.Certificate:
    return x509.load_pem_x509_certificates(pem.encode())[0]


def wildcard_served(svc: Services, timeout: float = 240) -> x509.Certificate:
    return eventually(f"{REVIEW_HOST} served with the wildcard certificate",
                      lambda: (lambda c: c if WILDCARD in sans(c) else None)(served(svc)), timeout=timeout)


def test_dnsrobocert_issues_the_wildcard_by_ddns_and_traefik_serves_it(platform):
    svc = platform
    edge_before = container(svc, "traefik")
    cert = wildcard_served(svc)
    # The names dnsrobocert's config.yml asks for, issued by pebble (the chain verified against its root).
    assert sorted(sans(cert)) == sorted([WILDCARD, ZONE])
    assert "Pebble" in issuer_cn(cert)
    # Lexicon's ddns provider added the TXT records by TSIG-signed RFC 2136 updates (one per name), and
    # the cleanup hook removed them.
    log = svc.variant.bind.log_text()
    added = f"key delivery-e2e-acme: updating zone '{ZONE}/IN': adding an RR at '_acme-challenge.{ZONE}' TXT"
    assert log.count(added) >= 2, log[-3000:]
    assert f"updating zone '{ZONE}/IN': deleting an RR at _acme-challenge.{ZONE} TXT" in log
    # The deploy hook's copy is what Traefik serves; certbot's lineage has the same certificate.
    delivered = svc.production.exec(f"cat {DELIVERED}/fullchain.pem").stdout
    assert leaf_of(delivered) == cert
    lineage = svc.production.exec(f"ls {STATE}/live | grep -v README").stdout.split()
    assert len(lineage) == 1 and lineage[0].startswith(f"{ZONE}-"), lineage
    assert leaf_of(svc.production.exec(f"cat {STATE}/live/{lineage[0]}/fullchain.pem").stdout) == cert
    mode = svc.production.exec(f"stat -c '%a' {DELIVERED}/privkey.pem").stdout.strip()
    assert mode == "600", mode
    # dnsrobocert's log: the real program ran its hooks (auth through Lexicon, then the deploy hook).
    logs = svc.production.exec("docker logs dnsrobocert 2>&1").stdout
    assert "deploy hook: delivered" in logs, logs[-3000:]
    # The edge was not restarted for it.
    assert container(svc, "traefik") == edge_before
    _log(f"edge {edge_before[0][:12]} started {edge_before[1]}, restarts {edge_before[2]}")


def test_a_renewed_wildcard_is_served_without_restarting_the_edge(platform):
    """certbot's renewal (forced, as dnsrobocert's renew job would do it when due) runs the same
    ddns hooks and the deploy hook; Traefik picks the new certificate up from its file provider."""
    svc = platform
    first = wildcard_served(svc)
    edge_before = container(svc, "traefik")
    lineage = svc.production.exec(f"ls {STATE}/live | grep -v README").stdout.split()[0]
    renew = svc.production.exec(
        # certbot sleeps up to 8 minutes before a non-interactive renewal unless told not to.
        "docker exec dnsrobocert python3 -m dnsrobocert.core.certbot renew -n --force-renewal --no-random-sleep-on-renew "
        f"--cert-name {lineage} --config-dir /etc/letsencrypt --work-dir /etc/letsencrypt/workdir "
        "--logs-dir /etc/letsencrypt/logs", check=False, timeout=180)
    assert renew.returncode == 0, renew.stdout + renew.stderr + svc.production.exec(
        f"tail -n 60 {STATE}/logs/letsencrypt.log", check=False).stdout
    renewed = eventually("the renewed certificate served",
                         lambda: (lambda c: c if c.serial_number != first.serial_number else None)(served(svc)), timeout=60)
    assert sorted(sans(renewed)) == sorted([WILDCARD, ZONE]) and "Pebble" in issuer_cn(renewed)
    assert container(svc, "traefik") == edge_before
