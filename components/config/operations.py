"""Day-two operations at the edge: the Docker API firewall, fail2ban, log rotation.

Keys (docs/operations.md, "Edge protection"):

* `dockerApiAllowedSources`: addresses or networks allowed to open the Docker API (TCP
  2376) on every host, added to the platform's trusted hosts (always allowed).
* `fail2banIgnoreIps`: addresses or networks fail2ban never bans (office, CI), added to
  loopback and the platform's hosts.
* `fail2banJails`: per jail (`traefik-dashboard`, `gitlab-auth`, `http-scanner`),
  `{maxRetry, findTime, banTime}` overrides (times in seconds).
* `logRotationKeep`, `logRotationMaxSize`: rotated files kept, size that forces a rotation.
* `traefikRateLimits`: per limited route (`gitlabSignIn`, `gitlabApi`, `registry`),
  `{average, period, burst}` overrides of the edge's `rateLimit` middlewares (per client
  address: `average` requests per `period` seconds, bursts of `burst`).
* `traefikInFlightRequests`: requests one client address may have in flight at once on the
  public entrypoints (`inFlightReq`).
"""

from __future__ import annotations

import ipaddress
import re
from dataclasses import dataclass, field
from typing import Any, Optional

from .reader import ConfigReader, check_int, check_list, check_object, type_name


@dataclass(frozen=True)
class JailSettings:
    """When fail2ban bans: `max_retry` failures within `find_time` seconds ban for `ban_time`."""

    max_retry: int
    find_time: int
    ban_time: int


#: The jails on Traefik's access log and their defaults (docs/operations.md).
DEFAULT_JAILS: dict[str, JailSettings] = {
    # basic auth of the dashboard: a browser shows one 401 per visit before it asks
    "traefik-dashboard": JailSettings(max_retry=5, find_time=600, ban_time=3600),
    # GitLab's sign-in form, OAuth password grant, API tokens, registry logins (/jwt/auth)
    "gitlab-auth": JailSettings(max_retry=10, find_time=600, ban_time=3600),
    # bursts of 404/400: path scanners
    "http-scanner": JailSettings(max_retry=30, find_time=60, ban_time=3600),
}
JAIL_KEYS = ("maxRetry", "findTime", "banTime")

@dataclass(frozen=True)
class RateLimit:
    """Traefik's rateLimit per client address: `average` requests per `period` seconds, `burst` at once."""

    average: int
    period: int
    burst: int


#: The routes the edge rate-limits and their defaults (docs/operations.md, "Rate limits").
DEFAULT_RATE_LIMITS: dict[str, RateLimit] = {
    # GitLab's sign-in form and OAuth password grant: people, a few tries a minute
    "gitlabSignIn": RateLimit(average=10, period=60, burst=10),
    # /api/: every runner of a host and its jobs share one address
    "gitlabApi": RateLimit(average=50, period=1, burst=200),
    # the registry: a push or pull is many requests (layers, chunks)
    "registry": RateLimit(average=100, period=1, burst=400),
}
RATE_LIMIT_KEYS = ("average", "period", "burst")
DEFAULT_IN_FLIGHT_REQUESTS = 200

DEFAULT_LOG_KEEP = 14
DEFAULT_LOG_MAX_SIZE = "100M"
LOG_SIZE = re.compile(r"^[1-9][0-9]{0,5}[kMG]$")


@dataclass(frozen=True)
class OperationsConfig:
    docker_api_allowed_sources: tuple[str, ...] = ()
    """Extra sources of the Docker API (normalised networks, e.g. 203.0.113.7/32)."""
    fail2ban_ignore_ips: tuple[str, ...] = ()
    """Extra addresses fail2ban never bans (normalised networks)."""
    jails: dict[str, JailSettings] = field(default_factory=lambda: dict(DEFAULT_JAILS))
    log_keep: int = DEFAULT_LOG_KEEP
    """Rotated files kept per log."""
    log_max_size: str = DEFAULT_LOG_MAX_SIZE
    """logrotate size (100k, 100M, 1G): a log larger than this is rotated at the next hourly check."""
    rate_limits: dict[str, RateLimit] = field(default_factory=lambda: dict(DEFAULT_RATE_LIMITS))
    """The edge's rateLimit middlewares by route (gitlabSignIn, gitlabApi, registry)."""
    in_flight_requests: int = DEFAULT_IN_FLIGHT_REQUESTS
    """inFlightReq amount per client address on the public entrypoints."""


def check_network(r: ConfigReader, path: str, value: Any) -> Optional[str]:
    """An IPv4/IPv6 address or network (CIDR), normalised (`10.0.0.5` -> `10.0.0.5/32`)."""
    if not isinstance(value, str):
        r.error(path, f"expected an IP address or network such as 203.0.113.7 or 10.0.0.0/8, got {type_name(value)}")
        return None
    try:
        return str(ipaddress.ip_network(value, strict=False))
    except ValueError:
        r.error(path, f"expected an IP address or network such as 203.0.113.7 or 10.0.0.0/8, got {value!r}")
        return None


def _networks(r: ConfigReader, key: str) -> tuple[str, ...]:
    raw = r.structured(key, expected="a list of IP addresses or networks")
    if raw is None:
        return ()
    parsed = check_list(r, key, raw, lambda p, v: check_network(r, p, v))
    return tuple(dict.fromkeys(parsed)) if parsed is not None else ()


def _jails(r: ConfigReader) -> dict[str, JailSettings]:
    jails = dict(DEFAULT_JAILS)
    raw = r.structured("fail2banJails", expected="an object of jail settings by jail name")
    if raw is None:
        return jails
    obj = check_object(r, "fail2banJails", raw, DEFAULT_JAILS)
    for name, value in (obj or {}).items():
        if name not in DEFAULT_JAILS:
            continue
        path = f"fail2banJails.{name}"
        settings = check_object(r, path, value, JAIL_KEYS)
        if settings is None:
            continue
        base = DEFAULT_JAILS[name]
        max_retry = check_int(r, f"{path}.maxRetry", settings.get("maxRetry", base.max_retry), minimum=1, maximum=10000)
        find_time = check_int(r, f"{path}.findTime", settings.get("findTime", base.find_time), minimum=1, maximum=7 * 86400)
        ban_time = check_int(r, f"{path}.banTime", settings.get("banTime", base.ban_time), minimum=1, maximum=365 * 86400)
        if max_retry is not None and find_time is not None and ban_time is not None:
            jails[name] = JailSettings(max_retry=max_retry, find_time=find_time, ban_time=ban_time)
    return jails


def _rate_limits(r: ConfigReader) -> dict[str, RateLimit]:
    limits = dict(DEFAULT_RATE_LIMITS)
    raw = r.structured("traefikRateLimits", expected="an object of rate limits by route")
    if raw is None:
        return limits
    obj = check_object(r, "traefikRateLimits", raw, DEFAULT_RATE_LIMITS)
    for name, value in (obj or {}).items():
        if name not in DEFAULT_RATE_LIMITS:
            continue
        path = f"traefikRateLimits.{name}"
        settings = check_object(r, path, value, RATE_LIMIT_KEYS)
        if settings is None:
            continue
        base = DEFAULT_RATE_LIMITS[name]
        average = check_int(r, f"{path}.average", settings.get("average", base.average), minimum=1, maximum=1_000_000)
        period = check_int(r, f"{path}.period", settings.get("period", base.period), minimum=1, maximum=86400)
        burst = check_int(r, f"{path}.burst", settings.get("burst", base.burst), minimum=1, maximum=1_000_000)
        if average is not None and period is not None and burst is not None:
            limits[name] = RateLimit(average=average, period=period, burst=burst)
    return limits


def parse_operations(r: ConfigReader) -> OperationsConfig:
    """The edge-protection keys; errors are collected in `r`."""
    keep = r.integer("logRotationKeep", default=DEFAULT_LOG_KEEP, minimum=1, maximum=3650)
    size = r.string(
        "logRotationMaxSize", default=DEFAULT_LOG_MAX_SIZE, pattern=LOG_SIZE,
        expected="a logrotate size such as 100M (a number and k, M or G)",
    )  # fmt: skip
    return OperationsConfig(
        docker_api_allowed_sources=_networks(r, "dockerApiAllowedSources"),
        fail2ban_ignore_ips=_networks(r, "fail2banIgnoreIps"),
        jails=_jails(r),
        log_keep=keep if keep is not None else DEFAULT_LOG_KEEP,
        log_max_size=size or DEFAULT_LOG_MAX_SIZE,
        rate_limits=_rate_limits(r),
        in_flight_requests=r.integer(
            "traefikInFlightRequests", default=DEFAULT_IN_FLIGHT_REQUESTS, minimum=1, maximum=1_000_000
        ) or DEFAULT_IN_FLIGHT_REQUESTS,
    )
