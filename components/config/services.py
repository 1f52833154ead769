"""The platform's services: GitLab, Traefik, the wildcard certificate, production apps.

Keys are read with the project's `ConfigReader`, so every problem names its key
(`delivery:<key>`) and no secret value is ever echoed. Keys that only matter where a
role runs (the GitLab root password on the stack with the `gitlab` role, ACME and DNS
settings on the stack with the `traefik` role) are required there and nowhere else.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any, Optional

import pulumi
from cryptography import x509

from .platform import PlatformConfig
from .reader import (
    DNS_LABEL,
    EMAIL,
    ConfigReader,
    check_domain,
    check_list,
    check_object,
    check_string,
)

GITLAB_VERSION = re.compile(r"^\d+\.\d+\.\d+-ce\.0$")
DEFAULT_GITLAB_VERSION = "18.5.1-ce.0"
GITLAB_MIN_ROOT_PASSWORD = 8

TRAEFIK_VERSION = re.compile(r"^v?(\d+)\.(\d+)\.(\d+)$")
#: Docker Engine 29 needs API 1.44; Traefik talks to it from 3.6.1 on.
MIN_TRAEFIK_VERSION = (3, 6, 1)
DEFAULT_TRAEFIK_VERSION = "v3.6.15"

DNSROBOCERT_VERSION = re.compile(r"^\d+\.\d+\.\d+$")
DEFAULT_DNSROBOCERT_VERSION = "3.26.1"

WILDCARD_METHODS = ("traefik", "dnsrobocert")
DNS_PROVIDER = re.compile(r"^[a-z0-9][a-z0-9_.-]{0,62}$")
#: Traefik (lego) reads provider credentials from environment variables (or their *_FILE).
LEGO_VARIABLE = re.compile(r"^[A-Z][A-Z0-9_]{0,127}$")
#: dnsrobocert passes provider_options to Lexicon (auth_token, auth_username, ...).
LEXICON_OPTION = re.compile(r"^[a-z][a-z0-9_]{0,63}$")
#: Provider options a Lexicon provider cannot work without (method dnsrobocert), each with why.
#: ddns (RFC 2136) reads its zone from its own option `domain`, not from the zone Lexicon resolved
#: (Lexicon 3.21-3.25: it fails with "input to from_text() must be a string" without it,
#: adferrand/dnsrobocert#887); it sends the update to port 53 of `ddns_server`, an IP address.
LEXICON_REQUIRED_OPTIONS = {
    "ddns": {
        "auth_token": "the TSIG key as <algorithm>:<key name>:<base64 secret>",
        "ddns_server": "the IP address of the primary server that accepts the updates (port 53)",
        "domain": "the DNS zone that holds _acme-challenge.dev.<domain> (Lexicon's ddns provider does not find it itself)",
    },
}
#: An htpasswd line with a bcrypt hash (`htpasswd -nbB`): $2y$/$2a$/$2b$, cost 04-31, 22 characters
#: of salt and 31 of hash. Unsalted {SHA}, MD5 ($apr1$), crypt(3) and plain text are refused.
HTPASSWD_BCRYPT_LINE = re.compile(r"[^:\s]+:\$2[aby]\$(0[4-9]|[12][0-9]|3[01])\$[./A-Za-z0-9]{53}")
APP_URL = re.compile(r"^https?://(\[[0-9A-Fa-f:.]+\]|[A-Za-z0-9.-]+)(:[0-9]{1,5})?/?$")
PRODUCTION_APP_KEYS = ("name", "host", "url")

LETS_ENCRYPT = "https://acme-v02.api.letsencrypt.org/directory"
LETS_ENCRYPT_STAGING = "https://acme-staging-v02.api.letsencrypt.org/directory"
ACME_URL = re.compile(r"^https://[A-Za-z0-9.-]+(:[0-9]{1,5})?(/[A-Za-z0-9._~/%-]*)?\Z")
#: lego's provider that runs a script (`dnsExecScript`): present/cleanup <fqdn> <value>.
EXEC_PROVIDER = "exec"
RESOLVER = re.compile(r"^(\[[0-9A-Fa-f:.]+\]|[A-Za-z0-9.-]+)(:[0-9]{1,5})?\Z")

#: The label of the review-app domain: review apps are <branch>.dev.<domain>.
REVIEW_SUBDOMAIN = "dev"


@dataclass(frozen=True)
class Hostnames:
    """The public names the platform serves, all derived from the base domain."""

    domain: str

    @property
    def gitlab(self) -> str:
        return f"gitlab.{self.domain}"

    @property
    def registry(self) -> str:
        return f"registry.{self.domain}"

    @property
    def dashboard(self) -> str:
        return f"traefik.{self.domain}"

    @property
    def wildcard_domain(self) -> str:
        """dev.<domain>: the certificate covers it and *.dev.<domain>."""
        return f"{REVIEW_SUBDOMAIN}.{self.domain}"

    @property
    def wildcard(self) -> str:
        return f"*.{self.wildcard_domain}"


@dataclass(frozen=True)
class ProductionApp:
    """An application on Production that Traefik serves with an HTTP-01 certificate."""

    name: str
    """Router and service name (a DNS label)."""
    host: str
    """Public host name, e.g. company.ru or app.company.ru."""
    url: str
    """Where Traefik forwards to, e.g. http://192.168.88.1:8000."""


@dataclass(frozen=True)
class GitLabSettings:
    version: str = DEFAULT_GITLAB_VERSION
    """gitlab/gitlab-ce tag, <version>-ce.0."""
    shm_size_mb: int = 256
    root_password: Optional[pulumi.Output[str]] = None
    """Initial password of `root` (secret); required on the stack with the gitlab role."""
    ready_timeout_seconds: int = 900
    """How long the readiness gate waits for GitLab (`gitlabReadyTimeoutSeconds`)."""


@dataclass(frozen=True)
class AcmeSettings:
    """The ACME CA(s) the certificates come from."""

    server: str = LETS_ENCRYPT
    """Directory URL of every certificate's CA (`acmeServer`)."""
    staging_wildcard: bool = False
    """`acmeStaging`: the wildcard certificate (only) from Let's Encrypt's staging CA, as the
    seed started letsencrypt-dns; GitLab, the registry and the apps keep trusted certificates."""
    ca_certificate: Optional[str] = None
    """PEM bundle of a CA that is not publicly trusted (`acmeCaCertificate`): Traefik and
    dnsrobocert trust it for the ACME server, and every client of GitLab trusts it."""

    @property
    def wildcard_server(self) -> str:
        return LETS_ENCRYPT_STAGING if self.staging_wildcard else self.server


@dataclass(frozen=True)
class TraefikSettings:
    version: str = DEFAULT_TRAEFIK_VERSION
    """traefik image tag, v3.6.15 or later."""
    acme_email: Optional[str] = None
    acme: AcmeSettings = AcmeSettings()
    dashboard_users: Optional[pulumi.Output[str]] = None
    """htpasswd lines (secret); the dashboard exists only when set."""
    production_apps: tuple[ProductionApp, ...] = ()


@dataclass(frozen=True)
class WildcardSettings:
    method: str = "traefik"
    """traefik: Traefik's own DNS-01 resolver (lego); dnsrobocert: the dnsrobocert container."""
    dns_provider: Optional[str] = None
    """lego provider name (method traefik) or Lexicon provider name (method dnsrobocert)."""
    dns_credentials: Optional[dict[str, pulumi.Output[str]]] = None
    """lego environment variables or Lexicon provider options, each value secret."""
    propagation_seconds: Optional[int] = None
    """Wait this long for the TXT record to propagate (slow DNS providers)."""
    resolvers: tuple[str, ...] = ()
    """`dnsResolvers`: host:port of the resolvers lego checks the TXT record with."""
    propagation_check: bool = True
    """`dnsPropagationCheck`: false skips lego's check (a DNS that answers no SOA, e.g. a test DNS)."""
    exec_script: Optional[pulumi.Output[str]] = None
    """`dnsExecScript` (secret): the script lego's `exec` provider runs (dnsProvider exec)."""
    dnsrobocert_version: str = DEFAULT_DNSROBOCERT_VERSION


@dataclass(frozen=True)
class ServicesConfig:
    hostnames: Hostnames
    gitlab: GitLabSettings
    traefik: TraefikSettings
    wildcard: WildcardSettings


def traefik_tag(version: str) -> str:
    """The image tag of a Traefik version, with its `v` prefix."""
    return version if version.startswith("v") else f"v{version}"


def _traefik_version(r: ConfigReader) -> Optional[str]:
    value = r.string("traefikVersion", default=DEFAULT_TRAEFIK_VERSION, pattern=TRAEFIK_VERSION, expected="a Traefik version such as v3.6.15")
    if value is None:
        return None
    m = TRAEFIK_VERSION.fullmatch(value)
    assert m is not None
    parts = tuple(int(x) for x in m.groups())
    if parts[0] != 3 or parts < MIN_TRAEFIK_VERSION:
        r.error("traefikVersion", f"expected Traefik v3 at 3.6.1 or later (Docker Engine 29 needs API 1.44), got {value!r}")
        return None
    return traefik_tag(value)


def _secret_lines(r: ConfigReader, key: str) -> Optional[pulumi.Output[str]]:
    """traefikDashboardUsers: bcrypt htpasswd lines; checked without showing them."""
    value = r.secret_string(key)
    if value is None:
        return None
    raw = r.raw(key) or ""
    lines = [line for line in raw.splitlines() if line.strip()]
    bad = [i + 1 for i, line in enumerate(lines) if not HTPASSWD_BCRYPT_LINE.fullmatch(line.strip())]
    if not lines or bad:
        where = f" (line {', '.join(map(str, bad))})" if bad else ""
        r.error(
            key,
            "expected bcrypt htpasswd lines 'user:$2y$<cost>$<hash>', as `htpasswd -nbB <user> <password>` prints them; "
            f"{{SHA}}, MD5 (apr1), crypt and plain text are refused{where} (the value is not shown)",
        )
        return None
    return value


def _acme(r: ConfigReader) -> AcmeSettings:
    server = r.string("acmeServer", default=LETS_ENCRYPT, pattern=ACME_URL, expected="an https:// ACME directory URL")
    staging = r.boolean("acmeStaging", default=False)
    if staging and server != LETS_ENCRYPT:
        r.error("acmeStaging", "switches the wildcard certificate to Let's Encrypt's staging CA; with acmeServer set, "
                "leave it unset (acmeServer decides the CA of every certificate)")
    pem = r.string("acmeCaCertificate", expected="PEM certificates of the ACME CA")
    if pem is not None:
        try:
            certs = x509.load_pem_x509_certificates(pem.encode())
        except ValueError:
            certs = []
        if not certs or any(not _is_ca(c) for c in certs):
            r.error("acmeCaCertificate", "expected PEM CA certificates (BEGIN CERTIFICATE, basicConstraints CA:true)")
            pem = None
        else:
            pem = pem.strip() + "\n"
    return AcmeSettings(server=server or LETS_ENCRYPT, staging_wildcard=staging, ca_certificate=pem)


def _is_ca(cert: x509.Certificate) -> bool:
    try:
        return bool(cert.extensions.get_extension_for_class(x509.BasicConstraints).value.ca)
    except x509.ExtensionNotFound:
        return False


def _resolvers(r: ConfigReader) -> tuple[str, ...]:
    raw = r.structured("dnsResolvers", expected="a list of resolvers host:port")
    if raw is None:
        return ()
    parsed = check_list(r, "dnsResolvers", raw, lambda p, v: check_string(r, p, v, pattern=RESOLVER, expected="a resolver such as 1.1.1.1:53"))
    if parsed is None:
        return ()
    return tuple(v if re.fullmatch(r".*:[0-9]{1,5}", v) and not v.endswith("]") else f"{v}:53" for v in parsed)


def _root_password(r: ConfigReader, required: bool) -> Optional[pulumi.Output[str]]:
    value = r.secret_string("gitlabRootPassword", required=required)
    if value is None:
        return None
    known = r.raw("gitlabRootPassword") or ""
    if len(known) < GITLAB_MIN_ROOT_PASSWORD:
        r.error("gitlabRootPassword", f"expected at least {GITLAB_MIN_ROOT_PASSWORD} characters, as GitLab requires (the value is not shown)")
        return None
    if "\n" in known or "\r" in known:
        r.error("gitlabRootPassword", "expected a single line: a line break would become part of the password (the value is not shown)")
        return None
    return value


def _production_app(r: ConfigReader, path: str, value: Any) -> Optional[ProductionApp]:
    obj = check_object(r, path, value, PRODUCTION_APP_KEYS)
    if obj is None:
        return None
    before = len(r.errors)
    for key in PRODUCTION_APP_KEYS:
        if key not in obj:
            r.error(f"{path}.{key}", "missing")
    name = check_string(r, f"{path}.name", obj["name"], pattern=DNS_LABEL, expected="a lower-case DNS label such as shop") if "name" in obj else None
    host = check_domain(r, f"{path}.host", obj["host"]) if "host" in obj else None
    url = check_string(r, f"{path}.url", obj["url"], pattern=APP_URL, expected="an http(s) URL of the app's address and port, such as http://192.168.88.1:8000") if "url" in obj else None
    if len(r.errors) != before or not (name and host and url):
        return None
    return ProductionApp(name=name, host=host, url=url.rstrip("/"))


def _production_apps(r: ConfigReader, hostnames: Optional[Hostnames]) -> tuple[ProductionApp, ...]:
    raw = r.structured("productionApps", expected="a list of {name, host, url}")
    if raw is None:
        return ()
    apps = check_list(r, "productionApps", raw, lambda p, v: _production_app(r, p, v))
    if apps is None:
        return ()
    reserved: dict[str, str] = {}
    if hostnames is not None:
        reserved = {hostnames.gitlab: "GitLab", hostnames.registry: "the registry", hostnames.dashboard: "the Traefik dashboard"}
    names: dict[str, int] = {}
    hosts: dict[str, int] = {}
    for i, app in enumerate(apps):
        if app.name in names:
            r.error(f"productionApps[{i}].name", f"duplicate name {app.name!r} (also productionApps[{names[app.name]}])")
        names.setdefault(app.name, i)
        if app.host in hosts:
            r.error(f"productionApps[{i}].host", f"duplicate host {app.host!r} (also productionApps[{hosts[app.host]}])")
        hosts.setdefault(app.host, i)
        if app.host in reserved:
            r.error(f"productionApps[{i}].host", f"{app.host!r} is served for {reserved[app.host]}")
        elif hostnames is not None and (app.host == hostnames.wildcard_domain or app.host.endswith("." + hostnames.wildcard_domain)):
            r.error(f"productionApps[{i}].host", f"{app.host!r} is under {hostnames.wildcard_domain}, the review apps' domain")
    return tuple(apps)


def _dns_credentials(r: ConfigReader, method: Optional[str], provider: Optional[str], required: bool) -> Optional[dict[str, pulumi.Output[str]]]:
    creds = r.secret_map("dnsCredentials", required=required)
    if creds is None:
        return None
    if not creds:
        r.error("dnsCredentials", "is empty; expected the DNS provider's credentials (the value is not shown)")
        return None
    if method == "dnsrobocert":
        pattern, expected = LEXICON_OPTION, "a Lexicon provider option such as auth_token"
    else:
        pattern, expected = LEGO_VARIABLE, "a lego environment variable such as CF_DNS_API_TOKEN"
    ok = True
    for name in creds:
        if not pattern.fullmatch(name):
            r.error(f"dnsCredentials.{name}", f"expected the name to be {expected} (wildcardMethod {method or 'traefik'})")
            ok = False
        elif method != "dnsrobocert" and name.endswith("_FILE"):
            r.error(f"dnsCredentials.{name}", "give the variable without _FILE: the program writes each value to a file and sets <NAME>_FILE itself")
            ok = False
    if method == "dnsrobocert":
        for name, what in LEXICON_REQUIRED_OPTIONS.get(provider or "", {}).items():
            if name not in creds:
                r.error(f"dnsCredentials.{name}", f"missing; Lexicon's {provider} provider needs it: {what}")
                ok = False
    return creds if ok else None


def parse_services(r: ConfigReader, platform: Optional[PlatformConfig]) -> Optional[ServicesConfig]:
    """Read the services' keys; `platform` (when it parsed) says which roles this stack runs."""
    runs_gitlab = platform is not None and platform.host_with("gitlab") is not None
    runs_traefik = platform is not None and platform.host_with("traefik") is not None
    hostnames = Hostnames(platform.domain) if platform is not None else None
    before = len(r.errors)

    gitlab = GitLabSettings(
        version=r.string("gitlabVersion", default=DEFAULT_GITLAB_VERSION, pattern=GITLAB_VERSION, expected="a gitlab/gitlab-ce tag such as 18.5.1-ce.0"),
        shm_size_mb=r.integer("gitlabShmSize", default=256, minimum=64, maximum=65536),
        root_password=_root_password(r, required=runs_gitlab),
        ready_timeout_seconds=r.integer("gitlabReadyTimeoutSeconds", default=900, minimum=30, maximum=7200),
    )

    acme_email = r.string("acmeEmail", required=runs_traefik, pattern=EMAIL, expected="an e-mail address for Let's Encrypt")
    traefik = TraefikSettings(
        version=_traefik_version(r),
        acme_email=acme_email,
        acme=_acme(r),
        dashboard_users=_secret_lines(r, "traefikDashboardUsers"),
        production_apps=_production_apps(r, hostnames),
    )

    method = r.string("wildcardMethod", default="traefik", choices=WILDCARD_METHODS)
    provider = r.string("dnsProvider", required=runs_traefik, pattern=DNS_PROVIDER, expected="a DNS provider name such as cloudflare (lego's for wildcardMethod traefik, Lexicon's for dnsrobocert)")
    exec_script = r.secret_string("dnsExecScript")
    if provider == EXEC_PROVIDER and method != "dnsrobocert" and exec_script is None and runs_traefik:
        r.error("dnsExecScript", "missing; dnsProvider exec runs this script (lego's exec provider: present|cleanup <fqdn> <value>)")
    if exec_script is not None and (provider != EXEC_PROVIDER or method == "dnsrobocert"):
        r.error("dnsExecScript", "is only used with dnsProvider exec and wildcardMethod traefik")
    wildcard = WildcardSettings(
        method=method or "traefik",
        dns_provider=provider,
        dns_credentials=_dns_credentials(r, method, provider, required=runs_traefik and provider != EXEC_PROVIDER),
        propagation_seconds=r.integer("dnsPropagationSeconds", minimum=0, maximum=7200),
        resolvers=_resolvers(r),
        propagation_check=r.boolean("dnsPropagationCheck", default=True),
        exec_script=exec_script,
        dnsrobocert_version=r.string("dnsrobocertVersion", default=DEFAULT_DNSROBOCERT_VERSION, pattern=DNSROBOCERT_VERSION, expected="a dnsrobocert version such as 3.26.1"),
    )
    if method == "dnsrobocert" and wildcard.resolvers:
        r.error("dnsResolvers", "is used by wildcardMethod traefik (lego) only; dnsrobocert checks propagation itself")

    if platform is not None and "traefik" in platform.tls.clients:
        r.error(
            "dockerClients",
            "'traefik' is no longer a client of the production CA: the review Traefik's certificate is issued by "
            "the staging CA and opens the review-app daemon only (docs/services.md, 'Trust domains'); remove it",
        )

    if hostnames is None or len(r.errors) != before:
        return None
    assert gitlab.version and gitlab.shm_size_mb and traefik.version and wildcard.dnsrobocert_version
    return ServicesConfig(hostnames=hostnames, gitlab=gitlab, traefik=traefik, wildcard=wildcard)
