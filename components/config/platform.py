"""The platform's topology: hosts and their roles, Docker Engine, the Docker CA."""

from __future__ import annotations

import base64
import re
from dataclasses import dataclass, field
from typing import Any, Optional

import pulumi

from .reader import (
    DNS_LABEL,
    ConfigReader,
    check_bool,
    check_domain,
    check_int,
    check_ip,
    check_list,
    check_object,
    check_string,
)

#: What a host can run. `review-apps` exposes the host's Docker daemon to Traefik.
ROLES = ("gitlab", "traefik", "review-apps", "production-runner", "staging-runner")
#: Roles that run on at most one host of a stack (and exactly one in a stack that owns the CA).
SINGLE_ROLES = ("gitlab", "traefik")

DOCKER_PACKAGES = ("docker-ce", "docker.io")
DEFAULT_DOCKER_VERSION = "29.2.0"
DOCKER_VERSION = re.compile(r"^[0-9]+(\.[0-9]+){1,2}$")
HOST_KEY = re.compile(r"^(ssh-ed25519|ssh-rsa|ecdsa-sha2-nistp(256|384|521)) [A-Za-z0-9+/]+={0,3}$")
TIMEZONE = re.compile(r"^[A-Za-z][A-Za-z0-9_+-]*(/[A-Za-z0-9_+-]+){0,2}$")
STACK_NAME = re.compile(r"^[A-Za-z0-9_.-]+(/[A-Za-z0-9_.-]+){0,2}$")
DOCKER_CLIENT = re.compile(r"^[a-z][a-z0-9-]{0,62}$")


@dataclass(frozen=True)
class HostConfig:
    """One server this stack manages over SSH."""

    name: str
    address: str
    """IP address the operator and other hosts use to reach it (SSH and Docker)."""
    user: str = "root"
    port: int = 22
    host_key: Optional[str] = None
    """Pinned SSH host key, `<type> <base64>`; required unless `insecure_skip_host_key_check`."""
    insecure_skip_host_key_check: bool = False
    """The explicit opt-out of host key verification (a warning says so on every run)."""
    roles: tuple[str, ...] = ()
    dns_names: tuple[str, ...] = ()
    """Extra DNS names clients use for the Docker daemon (SANs of its certificate)."""
    docker_listen_address: Optional[str] = None
    """Address dockerd binds port 2376 to; defaults to `address` (behind NAT, 0.0.0.0)."""
    docker_port: int = 2376
    """Port clients dial for the Docker API (differs from 2376 only behind port forwarding)."""
    adopt: bool = False
    """The host was set up by hand with the procedure this program replaces: the first run takes
    it over (docs/adopt.md, components/host/adoption.py)."""

    def has(self, role: str) -> bool:
        return role in self.roles

    @property
    def listen_address(self) -> str:
        return self.docker_listen_address or self.address

    @property
    def docker_endpoint(self) -> str:
        host = f"[{self.address}]" if ":" in self.address else self.address
        return f"tcp://{host}:{self.docker_port}"


@dataclass(frozen=True)
class DaemonIdentity:
    """A Docker daemon managed by another stack whose server certificate this stack issues."""

    name: str
    address: str
    dns_names: tuple[str, ...] = ()
    port: int = 2376
    """The port clients dial for its Docker API (`dockerPort` of that host)."""

    @property
    def docker_endpoint(self) -> str:
        host = f"[{self.address}]" if ":" in self.address else self.address
        return f"tcp://{host}:{self.port}"


@dataclass(frozen=True)
class DockerEngineConfig:
    package: str = "docker-ce"
    """`docker-ce` from Docker's apt repository, or the distribution's `docker.io`."""
    version: Optional[str] = DEFAULT_DOCKER_VERSION
    """Upstream version (e.g. 29.2.0); required for docker-ce, optional for docker.io."""


@dataclass(frozen=True)
class DockerTlsConfig:
    ca_validity_hours: int = 10 * 365 * 24
    cert_validity_hours: int = 365 * 24
    early_renewal_hours: int = 30 * 24
    clients: tuple[str, ...] = ("operator",)


@dataclass(frozen=True)
class PlatformConfig:
    project: str
    stack: str
    domain: str
    timezone: str
    hosts: tuple[HostConfig, ...]
    ssh_private_key: Optional[pulumi.Output[str]]
    docker: DockerEngineConfig
    tls: DockerTlsConfig
    production_stack: Optional[str] = None
    """Name of the stack that owns the CA (set in satellite stacks such as `staging`)."""
    review_apps_daemon: Optional[DaemonIdentity] = None
    """The review-app daemon when it lives in another stack (set in `production`)."""
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def owns_ca(self) -> bool:
        return self.production_stack is None

    def host_with(self, role: str) -> Optional[HostConfig]:
        return next((h for h in self.hosts if h.has(role)), None)

    def hosts_with(self, role: str) -> tuple[HostConfig, ...]:
        return tuple(h for h in self.hosts if h.has(role))

    @property
    def review_daemon(self) -> Optional[DaemonIdentity]:
        """The Docker daemon Traefik watches for review apps, wherever it is managed."""
        host = self.host_with("review-apps")
        if host is not None:
            return DaemonIdentity(host.name, host.address, host.dns_names, host.docker_port)
        return self.review_apps_daemon


HOST_KEYS = (
    "name", "address", "user", "port", "hostKey", "insecureSkipHostKeyCheck", "roles", "dnsNames",
    "dockerListenAddress", "dockerPort", "adopt",
)
DAEMON_KEYS = ("name", "address", "dnsNames", "dockerPort")


KEYSCAN_HINT = "`ssh-keyscan -t ecdsa <address>` prints it: give '<type> <base64>' without the host name"


def _host_key(r: ConfigReader, path: str, obj: dict[str, Any]) -> tuple[Optional[str], bool]:
    """hostKey, required: without it an interceptor on the network gets every key and password
    the program sends. insecureSkipHostKeyCheck: true is the explicit, warned-about opt-out."""
    skip = check_bool(r, f"{path}.insecureSkipHostKeyCheck", obj.get("insecureSkipHostKeyCheck", False))
    raw = obj.get("hostKey")
    if raw is None:
        if skip:
            name = obj.get("name", path)
            r.warn(
                f"{path}.insecureSkipHostKeyCheck",
                f"the SSH host key of host {name!r} is NOT verified: anyone who can intercept the connection "
                "gets the secrets this program sends over it. Pin it with hostKey (" + KEYSCAN_HINT + ").",
            )
        elif skip is not None:
            r.error(f"{path}.hostKey", f"missing; pin the host's SSH host key ({KEYSCAN_HINT}), or set insecureSkipHostKeyCheck: true to connect without verifying it")
        return None, bool(skip)
    key = check_string(r, f"{path}.hostKey", raw, pattern=HOST_KEY, expected="an SSH host key such as 'ecdsa-sha2-nistp256 AAAA...'")
    if key is not None and _embedded_key_type(key) != key.split(" ", 1)[0]:
        r.error(f"{path}.hostKey", f"the base64 part is not a {key.split(' ', 1)[0]} key; copy the key as `ssh-keyscan -t ecdsa <address>` prints it")
        key = None
    if skip:
        r.error(f"{path}.insecureSkipHostKeyCheck", "is true but hostKey is set: remove insecureSkipHostKeyCheck, the pinned key is verified")
    return key, False


def _embedded_key_type(key: str) -> Optional[str]:
    """The key type written inside an OpenSSH public key blob (its first length-prefixed string)."""
    try:
        blob = base64.b64decode(key.split(" ", 1)[1], validate=True)
    except (ValueError, IndexError):
        return None
    size = int.from_bytes(blob[:4], "big")
    return blob[4 : 4 + size].decode("ascii", errors="replace") if len(blob) >= 4 + size else None


def _parse_host(r: ConfigReader, path: str, value: Any) -> Optional[HostConfig]:
    obj = check_object(r, path, value, HOST_KEYS)
    if obj is None:
        return None
    errors_before = len(r.errors)
    name = address = None
    if "name" not in obj:
        r.error(f"{path}.name", "missing; expected a host name such as production")
    else:
        name = check_string(r, f"{path}.name", obj["name"], pattern=DNS_LABEL, expected="a lower-case DNS label such as production")
    if "address" not in obj:
        r.error(f"{path}.address", "missing; expected an IPv4 or IPv6 address")
    else:
        address = check_ip(r, f"{path}.address", obj["address"])
    user = check_string(r, f"{path}.user", obj.get("user", "root"), pattern=re.compile(r"^[a-z_][a-z0-9_-]*$"), expected="a Unix user name")
    port = check_int(r, f"{path}.port", obj.get("port", 22), minimum=1, maximum=65535)
    host_key, skip_check = _host_key(r, path, obj)
    roles = check_list(r, f"{path}.roles", obj.get("roles", []), lambda p, v: check_string(r, p, v, choices=ROLES))
    dns_names = check_list(r, f"{path}.dnsNames", obj.get("dnsNames", []), lambda p, v: check_domain(r, p, v))
    listen = None
    if obj.get("dockerListenAddress") is not None:
        listen = check_ip(r, f"{path}.dockerListenAddress", obj["dockerListenAddress"])
    docker_port = check_int(r, f"{path}.dockerPort", obj.get("dockerPort", 2376), minimum=1, maximum=65535)
    adopt = check_bool(r, f"{path}.adopt", obj.get("adopt", False))
    if roles is not None and len(set(roles)) != len(roles):
        r.error(f"{path}.roles", "lists a role twice")
    if len(r.errors) != errors_before:
        return None
    assert name and address and user and port and roles is not None and dns_names is not None and docker_port
    return HostConfig(
        name=name,
        address=address,
        user=user,
        port=port,
        host_key=host_key,
        insecure_skip_host_key_check=skip_check,
        roles=tuple(roles),
        dns_names=tuple(dns_names),
        docker_listen_address=listen,
        docker_port=docker_port,
        adopt=bool(adopt),
    )


def _parse_daemon(r: ConfigReader, key: str, value: Any) -> Optional[DaemonIdentity]:
    obj = check_object(r, key, value, DAEMON_KEYS)
    if obj is None:
        return None
    before = len(r.errors)
    name = check_string(r, f"{key}.name", obj.get("name", "staging"), pattern=DNS_LABEL, expected="a lower-case DNS label")
    address = check_ip(r, f"{key}.address", obj.get("address"))
    dns_names = check_list(r, f"{key}.dnsNames", obj.get("dnsNames", []), lambda p, v: check_domain(r, p, v))
    port = check_int(r, f"{key}.dockerPort", obj.get("dockerPort", 2376), minimum=1, maximum=65535)
    if len(r.errors) != before:
        return None
    assert name and address and dns_names is not None and port
    return DaemonIdentity(name=name, address=address, dns_names=tuple(dns_names), port=port)


def parse_platform(r: ConfigReader, stack: str) -> Optional[PlatformConfig]:
    domain = r.string("domain", required=True, expected="a lower-case DNS domain name such as company.ru")
    if domain is not None:
        domain = check_domain(r, "domain", domain)
    timezone = r.string("timezone", default="Etc/UTC", pattern=TIMEZONE, expected="an IANA time zone such as Europe/Volgograd")

    production_stack = r.string("productionStack", pattern=STACK_NAME, expected="a stack name such as organization/delivery/production")

    raw_hosts = r.structured("hosts", required=True, expected="a list of host objects")
    hosts: Optional[list[HostConfig]] = None
    if raw_hosts is not None:
        hosts = check_list(r, "hosts", raw_hosts, lambda p, v: _parse_host(r, p, v))
        if isinstance(raw_hosts, list) and not raw_hosts:
            r.error("hosts", "is empty; expected at least one host")
    if hosts:
        _check_unique(r, hosts)

    ssh_key = r.secret_string("sshPrivateKey", required=True)

    package = r.string("dockerPackage", default="docker-ce", choices=DOCKER_PACKAGES)
    version = r.string("dockerVersion", default=DEFAULT_DOCKER_VERSION if package == "docker-ce" else None, pattern=DOCKER_VERSION, expected="an upstream Docker version such as 29.2.0")

    tls = DockerTlsConfig(
        ca_validity_hours=r.integer("dockerCaValidityHours", default=DockerTlsConfig.ca_validity_hours, minimum=24),
        cert_validity_hours=r.integer("dockerCertValidityHours", default=DockerTlsConfig.cert_validity_hours, minimum=24),
        early_renewal_hours=r.integer("dockerCertEarlyRenewalHours", default=DockerTlsConfig.early_renewal_hours, minimum=0),
        clients=DockerTlsConfig.clients,
    )
    raw_clients = r.structured("dockerClients", expected="a list of client names")
    if raw_clients is not None:
        clients = check_list(r, "dockerClients", raw_clients, lambda p, v: check_string(r, p, v, pattern=DOCKER_CLIENT, expected="a lower-case client name"))
        if clients is not None:
            if "operator" not in clients:
                r.error("dockerClients", "must include 'operator': the program's own Docker providers use its certificate")
            tls = DockerTlsConfig(tls.ca_validity_hours, tls.cert_validity_hours, tls.early_renewal_hours, tuple(dict.fromkeys(clients)))
    if None not in (tls.cert_validity_hours, tls.early_renewal_hours, tls.ca_validity_hours):
        if tls.early_renewal_hours >= tls.cert_validity_hours:
            r.error("dockerCertEarlyRenewalHours", f"must be less than dockerCertValidityHours ({tls.cert_validity_hours})")
        if tls.cert_validity_hours > tls.ca_validity_hours:
            r.error("dockerCertValidityHours", f"must not exceed dockerCaValidityHours ({tls.ca_validity_hours})")

    raw_daemon = r.structured("reviewAppsDaemon", expected="an object {name, address, dnsNames, dockerPort}")
    review_daemon = _parse_daemon(r, "reviewAppsDaemon", raw_daemon) if raw_daemon is not None else None

    if hosts is not None:
        _check_roles(r, hosts, production_stack, review_daemon is not None or raw_daemon is not None)

    if None in (domain, timezone, hosts, ssh_key, package) or r.errors:
        return None
    assert domain and timezone and hosts is not None and package
    return PlatformConfig(
        project=r.project,
        stack=stack,
        domain=domain,
        timezone=timezone,
        hosts=tuple(hosts),
        ssh_private_key=ssh_key,
        docker=DockerEngineConfig(package=package, version=version),
        tls=tls,
        production_stack=production_stack,
        review_apps_daemon=review_daemon,
    )


def _check_unique(r: ConfigReader, hosts: list[HostConfig]) -> None:
    seen_names: dict[str, int] = {}
    seen_addresses: dict[tuple[str, int], int] = {}
    for i, h in enumerate(hosts):
        if h.name in seen_names:
            r.error(f"hosts[{i}].name", f"duplicate host name {h.name!r} (also hosts[{seen_names[h.name]}])")
        seen_names.setdefault(h.name, i)
        key = (h.address, h.port)
        if key in seen_addresses:
            r.error(f"hosts[{i}].address", f"duplicate address {h.address} port {h.port} (also hosts[{seen_addresses[key]}])")
        seen_addresses.setdefault(key, i)


def _check_roles(r: ConfigReader, hosts: list[HostConfig], production_stack: Optional[str], has_external_daemon: bool) -> None:
    owns_ca = production_stack is None
    for role in SINGLE_ROLES + ("review-apps",):
        placed = [h.name for h in hosts if h.has(role)]
        if len(placed) > 1:
            r.error("hosts", f"role {role!r} must run on exactly one host, found it on {', '.join(placed)}")
        elif not placed and owns_ca and role in SINGLE_ROLES:
            r.error("hosts", f"role {role!r} must run on exactly one host of the stack that owns the Docker CA, found it on none")
        elif placed and not owns_ca and role in SINGLE_ROLES:
            r.error("hosts", f"role {role!r} runs in the stack that owns the Docker CA, not in a stack with productionStack set (found on {placed[0]})")
    review_hosts = [h for h in hosts if h.has("review-apps")]
    if has_external_daemon:
        if not owns_ca:
            r.error("reviewAppsDaemon", "is set by the stack that owns the Docker CA (production), not by a stack with productionStack set")
        elif review_hosts:
            r.error("reviewAppsDaemon", f"conflicts with host {review_hosts[0].name!r} that has role 'review-apps': declare the review-app daemon once")
    elif owns_ca and not review_hosts:
        r.error("hosts", "no review-app Docker daemon: give one host the role 'review-apps' or set reviewAppsDaemon to the Staging host of the staging stack")
