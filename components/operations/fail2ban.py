"""Fail2ban: Debian's fail2ban on the Traefik host, with jails on Traefik's access log whose
bans also block what Docker publishes (pulumi-command).

Traefik writes /srv/traefik/logs/access.log in its `common` format: CLF plus the request
count, the router, the service URL and the duration:

    203.0.113.9 - admin [02/Dec/2026:18:38:14 +0000] "GET /dashboard/ HTTP/1.1" 401 17 "-" "-" 1 "dashboard@file" "-" 0ms

Jails (thresholds from `fail2banJails`):

* `traefik-dashboard`: 401 on the dashboard router (basic auth). Traefik logs requests of
  its internal services (api@internal) only with `accessLog.addInternals`.
* `gitlab-auth`: on the GitLab router, a POST to /users/sign_in that is not a redirect
  (GitLab re-renders the form on a wrong password; a sign-in redirects), 400/401 from
  /oauth/token, 401 from /api/v4/ and from /jwt/auth (registry logins).
* `http-scanner`: 400 and 404 of any router or none (path scanners).

A ban adds the address to a set of fail2ban's stock `nftables-allports` action twice: in a
chain on the input hook (the host's own services) and one on the forward hook (what Docker
publishes: Traefik's 80/443/1023 are DNATed to the container, so they never pass input),
both at priority -1, before Docker's iptables-nft chains. Never banned: loopback, the
platform's hosts, `fail2banIgnoreIps`. Debian's own sshd jail stays, reading the journal
(Debian 12 has no /var/log/auth.log without rsyslog, and fail2ban would not start).

The client address is the TCP peer Traefik sees: Docker publishes with `userland-proxy:
false`, so it is the real client's, not a proxy's.
"""

from __future__ import annotations

import configparser
import io
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Mapping, Optional, Sequence

import pulumi
import pulumi_command as command

from ..config import HostConfig
from ..config.operations import JailSettings
from ..host.remote_script import FileSpec, run_script, tar_base64

SCRIPT = Path(__file__).parent / "scripts" / "install-fail2ban.sh"

ACCESS_LOG = "/srv/traefik/logs/access.log"
"""Traefik's access log on the host (components/services/traefik.py LOGS_DIR)."""
FAIL2BAN_LOG = "/var/log/fail2ban.log"
JAIL_FILE = "/etc/fail2ban/jail.d/delivery.local"
FILTER_DIR = "/etc/fail2ban/filter.d"
#: Debian's packages the step installs (fail2ban's Recommends that it uses, nothing else).
PACKAGES = ("fail2ban", "nftables", "python3-systemd", "python3-pyinotify")

#: Routers of the edge Traefik's dynamic config the jails match (a contract, checked by
#: tests/test_fail2ban.py against components/services/traefik.py).
DASHBOARD_ROUTER = "dashboard@file"
GITLAB_ROUTER = "gitlab@file"
#: GitLab's routers: the catch-all and the rate-limited sign-in and API ones.
GITLAB_ROUTERS = (GITLAB_ROUTER, "gitlab-sign-in@file", "gitlab-api@file")
_GITLAB_ROUTERS = "(?:" + "|".join(GITLAB_ROUTERS) + ")"

#: nftables table and chains of the ban actions (fail2ban's stock nftables action).
BAN_TABLE = "f2b-table"
BAN_CHAINS = {"input": "f2b-input", "forward": "f2b-forward"}

HEADER = "# Managed by Pulumi (delivery platform, components/operations/fail2ban.py); do not edit.\n"

# -- Traefik's `common` line, once fail2ban has cut out the date (what stays is `[]`) -------
# The user name is the client's (basic auth) and may hold spaces and quotes, never a colon
# (so it cannot forge a date); the request target holds no space. Everything after the
# status is Traefik's own, so the line is anchored at both ends.
_USER = r"- .*?"
_REQUEST = r'"(?P<method>[A-Z]+) (?P<path>\S+) HTTP/[0-9.]+"'
_TAIL = r'\S+ ".*" ".*" \d+ "{router}" "[^"]*" \d+ms$'


def _line(request: str, status: str, router: str) -> str:
    return rf"^<ADDR> {_USER} \[\] {request} {status} " + _TAIL.format(router=router)


def _any_request(path: str = r"\S+", method: str = "[A-Z]+") -> str:
    return rf'"{method} {path} HTTP/[0-9.]+"'


FAILREGEX: dict[str, list[str]] = {
    "traefik-dashboard": [_line(_any_request(), "401", DASHBOARD_ROUTER.replace(".", r"\."))],
    "gitlab-auth": [
        _line(_any_request(r"/users/sign_in(?:\?\S*)?", "POST"), "(?:200|401|422)", _GITLAB_ROUTERS),
        _line(_any_request(r"/oauth/token(?:\?\S*)?", "POST"), "(?:400|401)", _GITLAB_ROUTERS),
        _line(_any_request(r"/api/v4/\S*"), "401", _GITLAB_ROUTERS),
        _line(_any_request(r"/jwt/auth(?:\?\S*)?"), "401", _GITLAB_ROUTERS),
    ],
    "http-scanner": [_line(_any_request(r"\S+", r"\S+"), "(?:400|404)", r"[^\"]*")],
}
#: Traefik's CLF date, always UTC: [02/Dec/2026:18:38:14 +0000]. The time holds colons,
#: which a user name cannot, so the first match is Traefik's own; fail2ban cuts the group
#: out of the line (leaving `[]`). `%%` is fail2ban's escape of `%`.
DATEPATTERN = r"\[(%%d/%%b/%%Y:%%H:%%M:%%S %%z)\]"


def filter_name(jail: str) -> str:
    return f"delivery-{jail}"


def _ini(sections: Mapping[str, Mapping[str, str]]) -> str:
    parser = configparser.RawConfigParser(delimiters=("=",))
    parser.optionxform = str  # type: ignore[assignment,method-assign]  # keep keys as written
    for section, values in sections.items():
        parser[section] = dict(values)
    out = io.StringIO()
    parser.write(out)
    return HEADER + out.getvalue()


def filter_config(jail: str) -> str:
    """filter.d/delivery-<jail>.conf (pure)."""
    return _ini(
        {
            "Definition": {
                "failregex": "\n".join(FAILREGEX[jail]),
                "ignoreregex": "",
                "datepattern": DATEPATTERN,
            },
            "Init": {"maxlines": "1"},
        }
    )


def ban_actions(jail: str) -> str:
    """Two instances of the stock `nftables-allports` action: input and forward hooks, each
    with its own sets (`addr-set-<jail>-<hook>`, `addr6-set-...`), TCP and UDP dropped."""
    return "\n".join(
        f"nftables-allports[name={jail}-{hook}, actname=ban-{hook}, table={BAN_TABLE}, chain={chain}, "
        f'chain_hook={hook}, chain_priority=-1, protocol="tcp,udp", blocktype=drop]'
        for hook, chain in BAN_CHAINS.items()
    )


def jail_config(jails: Mapping[str, JailSettings], ignore: Sequence[str], logpath: str = ACCESS_LOG) -> str:
    """jail.d/delivery.local (pure)."""
    sections: dict[str, dict[str, str]] = {
        "DEFAULT": {
            "ignoreip": " ".join(ignore),
            "banaction": "nftables-multiport",
            "banaction_allports": "nftables-allports",
        },
        # Debian's sshd jail (jail.d/defaults-debian.conf) reads /var/log/auth.log, which
        # Debian 12 only has with rsyslog: read the journal instead.
        "sshd": {"backend": "systemd"},
    }
    for name, s in jails.items():
        sections[name] = {
            "enabled": "true",
            "filter": filter_name(name),
            "logpath": logpath,
            "backend": "pyinotify",
            "usedns": "no",
            "maxretry": str(s.max_retry),
            "findtime": str(s.find_time),
            "bantime": str(s.ban_time),
            "action": ban_actions(name),
        }
    return _ini(sections)


def config_files(jails: Mapping[str, JailSettings], ignore: Sequence[str]) -> list[FileSpec]:
    return [
        FileSpec(JAIL_FILE, 0o644, jail_config(jails, ignore)),
        *(FileSpec(f"{FILTER_DIR}/{filter_name(j)}.conf", 0o644, filter_config(j)) for j in jails),
    ]


@dataclass(frozen=True)
class Fail2banArgs:
    host: HostConfig
    """The host with the traefik role."""
    ssh_private_key: pulumi.Input[str]
    jails: Mapping[str, JailSettings]
    ignore_ips: Sequence[str]
    """Never banned: loopback, the platform's hosts, fail2banIgnoreIps."""
    after: Sequence[pulumi.Resource] = ()
    """Steps that must finish first (the host's /srv layout)."""


class Fail2ban(pulumi.ComponentResource):
    """fail2ban and its Traefik jails on the host with the traefik role."""

    install: command.remote.Command
    files: list[FileSpec]

    def __init__(self, name: str, args: Fail2banArgs, opts: Optional[pulumi.ResourceOptions] = None) -> None:
        super().__init__("delivery:operations:Fail2ban", name, None, opts)
        self.files = config_files(args.jails, args.ignore_ips)
        self.install = run_script(
            f"{name}-install",
            host=args.host,
            private_key=args.ssh_private_key,
            script=SCRIPT,
            args=(ACCESS_LOG, *(f"jail={j}" for j in args.jails)),
            stdin=tar_base64(self.files),
            parent=self,
            depends_on=list(args.after),
        )
        outputs: dict[str, Any] = {"jails": list(args.jails)}
        self.register_outputs(outputs)
