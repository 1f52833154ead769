"""GitLab integration: the API connection, the runners of the stack's hosts, the CI/CD
variables of the application project.

`gitlabIntegration` says where the integration stands, because the program cannot tell a
first run (no token can exist before GitLab runs) from a lost token (docs/gitlab.md):

* `pending` (unset): the first run; without `gitlabToken` the GitLab API resources are left
  out with a warning. A token without `gitlabIntegration: enabled` is refused, so the switch is
  set together with the token.
* `enabled`: the integration exists; `gitlabToken` is required. A missing token stops the run
  before any resource is registered, instead of deleting the runners and CI variables.
* `removed`: the integration is taken down on purpose; its resources are left out (and so
  deleted by `pulumi up`), the token is ignored.

Once enabled, the runners' scope and the CI variables' values are required and validated
here, before any resource exists.
"""

from __future__ import annotations

import json
import posixpath
import re
from dataclasses import dataclass
from typing import Any, Optional, Union

import pulumi

from .platform import PlatformConfig
from .services import ServicesConfig
from .reader import (
    ConfigReader,
    check_bool,
    check_int,
    check_list,
    check_object,
    check_string,
)

#: Runner roles of `HostConfig.roles` and the GitLab runner each of them gets.
RUNNER_ROLES = ("production-runner", "staging-runner")
ACCESS_LEVELS = ("not_protected", "ref_protected")

DEFAULT_RUNNER_VERSION = "v18.5.0"
DEFAULT_RUNNER_IMAGE = "docker:29.2.0-cli"
RUNNER_VERSION = re.compile(r"^(alpine-|ubuntu-)?v[0-9]+\.[0-9]+\.[0-9]+$")
#: `name:tag` and/or `name@sha256:...`; the tag is checked separately against `latest`.
IMAGE = re.compile(
    r"^(?P<name>[a-z0-9]+([._/-][a-z0-9]+)*(:[0-9]+/[a-z0-9]+([._/-][a-z0-9]+)*)?)"
    r"(:(?P<tag>[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}))?(@(?P<digest>sha256:[0-9a-f]{64}))?$"
)
PROJECT_PATH = re.compile(r"^[A-Za-z0-9_.-]+(/[A-Za-z0-9_.-]+)+$")
GROUP_PATH = re.compile(r"^[A-Za-z0-9_.-]+(/[A-Za-z0-9_.-]+)*$")
URL = re.compile(r"^https?://[A-Za-z0-9.-]+(:[0-9]+)?(/[A-Za-z0-9._~/-]*)?$")
TAG = re.compile(r"^[A-Za-z0-9_.:-][A-Za-z0-9 _.:-]{0,254}$")
VARIABLE_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]{0,254}$")
ENVIRONMENT_SCOPE = re.compile(r"^[A-Za-z0-9_.*/${} -]{1,255}$")
#: Docker volume spec of the executor: `/path`, or `/host:/container[:ro|rw]`; no `..` segment.
VOLUME = re.compile(r"^(?!.*(^|/)\.\.(/|:|$))/[^:\s]*(:/[^:\s]*(:(ro|rw))?)?$")
#: The host's Docker socket: shared with jobs by the seed's docker executor, by design (it gives a
#: job the host's Docker, docs/gitlab.md says so); not refused.
DOCKER_SOCKETS = ("/var/run/docker.sock", "/run/docker.sock")
#: Host folders a job volume must not bind, nor any folder that holds one of them (`/`, `/var`,
#: `/srv`): the system, Docker's and containerd's data, and the platform's secrets under /srv.
HOST_ONLY_PATHS = (
    "/etc", "/root", "/home", "/boot", "/dev", "/proc", "/sys", "/run", "/var/run", "/usr", "/bin",
    "/sbin", "/lib", "/lib32", "/lib64", "/var/lib/docker", "/var/lib/containerd",
    "/srv/services", "/srv/traefik", "/srv/letsencrypt-dns", "/srv/gitlab-runner/config",
)
#: Overrides that can be dangerous, and may be allowed one by one (runners.<role>.allowDangerous).
DANGEROUS_KEYS = ("accessLevel", "volumes")
#: GitLab's masking rules, in their strictest (all versions) form: a single line of at
#: least 8 characters from the Base64 alphabet (RFC 4648, also URL-safe) and `@ : . ~`.
MASKABLE = re.compile(r"^[A-Za-z0-9+/=@:.~_-]{8,}$")
#: Variable names that hold credentials: masked, protected and hidden by default.
#: An API token as GitLab prints it: one word (a trailing line break from a file is refused).
API_TOKEN = re.compile(r"[\x21-\x7e]+")
SECRET_NAME = re.compile(r"(TOKEN|SECRET|PASSWORD|PASSWD|PASS|KEY|CREDENTIAL|PRIVATE|AUTH)", re.IGNORECASE)

TOKEN_COMMAND = "pulumi config set --secret delivery:gitlabToken <token>"
#: Environment scope of secret CI variables unless `ciSecretEnvironmentScope` says otherwise.
DEFAULT_SECRET_SCOPE = "production"
ENABLE_COMMAND = "pulumi config set delivery:gitlabIntegration enabled"
#: gitlabIntegration: the first run (default), the integration in place, taken down on purpose.
INTEGRATION_STATES = ("pending", "enabled", "removed")


@dataclass(frozen=True)
class RunnerScope:
    """Where runners are created: a project (by path) or a group (by full path); a project
    runner is also enabled in `also_projects` (the infrastructure project, other apps)."""

    kind: str
    """`project` or `group`."""
    path: str
    also_projects: tuple[str, ...] = ()

    @property
    def runner_type(self) -> str:
        return f"{self.kind}_type"

    @property
    def projects(self) -> tuple[str, ...]:
        return (self.path, *self.also_projects) if self.kind == "project" else ()


@dataclass(frozen=True)
class RunnerSettings:
    """One GitLab runner: the API object (UserRunner) and its config.toml."""

    role: str
    """The host role it serves: production-runner or staging-runner."""
    tags: tuple[str, ...]
    access_level: str
    """`ref_protected` (protected branches and tags only) or `not_protected`."""
    description: str
    concurrent: int
    """config.toml `concurrent`: jobs this runner process runs at once."""
    request_concurrency: int
    """config.toml `[[runners]] request_concurrency`: concurrent job requests to GitLab."""
    maximum_timeout: int
    """Seconds; caps the job timeout of the projects that use the runner (>= 600)."""
    volumes: tuple[str, ...]
    """Volumes of every job container (docker executor), Docker daemon paths."""
    mounts: tuple[tuple[str, str], ...]
    """(host path, container path) bind mounts of the runner container besides its config and docker.sock."""
    locked: bool = False
    untagged: bool = False
    check_interval: int = 3


#: The seed's runners. Production: tag production, ref_protected, /srv mounted (jobs update
#: Traefik and data under /srv). Staging: tag staging, not_protected, 20 jobs at once, the jobs
#: folder mounted as /logs in every job (test artefacts such as screenshots).
DEFAULT_RUNNERS: dict[str, RunnerSettings] = {
    "production-runner": RunnerSettings(
        role="production-runner",
        tags=("production",),
        access_level="ref_protected",
        description="Production server gitlab runner",
        concurrent=1,
        request_concurrency=1,
        maximum_timeout=3600,
        volumes=("/var/run/docker.sock:/var/run/docker.sock", "/cache"),
        mounts=(("/srv", "/srv"),),
        # Locked to the projects it is enabled in: nobody can enable it for another project.
        locked=True,
    ),
    "staging-runner": RunnerSettings(
        role="staging-runner",
        tags=("staging",),
        access_level="not_protected",
        description="Staging server gitlab runner",
        concurrent=20,
        request_concurrency=10,
        maximum_timeout=3600,
        volumes=(
            "/var/run/docker.sock:/var/run/docker.sock",
            "/srv/gitlab-runner/jobs:/logs",
            "/srv/gitlab-runner/cache:/cache",
        ),
        mounts=(("/srv/gitlab-runner/jobs", "/jobs"),),
    ),
}

RUNNER_KEYS = (
    "tags", "accessLevel", "locked", "concurrent", "requestConcurrency", "maximumTimeout", "description", "volumes",
    "allowDangerous",
)
SCOPE_KEYS = ("project", "projects", "group")
VARIABLE_KEYS = ("value", "masked", "protected", "raw", "hidden", "environmentScope", "description")


@dataclass(frozen=True)
class CiVariable:
    """One CI/CD variable of the application project."""

    key: str
    value: Union[str, pulumi.Output[str]]
    """Plain text, or a secret Output for values read from secret config."""
    secret: bool
    masked: bool
    protected: bool
    hidden: bool = False
    """Masked and hidden in the UI (GitLab >= 17.4); set only when the variable is created."""
    raw: bool = False
    environment_scope: str = "*"
    description: Optional[Union[str, pulumi.Output[str]]] = None
    """Shown in GitLab; a secret Output when it comes from a secret ciVariables."""


@dataclass(frozen=True)
class CiConfig:
    project: str
    """Path of the application project, `group/app`."""
    environment_scope: str
    variables: tuple[CiVariable, ...]


@dataclass(frozen=True)
class GitLabConfig:
    url_override: Optional[str]
    """`gitlabUrl`; else https://gitlab.<domain> (production) or the production stack's output."""
    allow_insecure_url: bool
    """`gitlabAllowInsecureUrl`: an http:// GitLab URL is accepted (a lab); otherwise refused."""
    integration: str
    """`gitlabIntegration`: pending (first run), enabled or removed."""
    token: Optional[pulumi.Output[str]]
    """API token (scopes `api` and `create_runner`); set exactly when the integration is enabled."""
    runner_version: str
    runner_default_image: str
    runner_scope: Optional[RunnerScope]
    runners: tuple[RunnerSettings, ...]
    """One per runner role of this stack's hosts."""
    runner_token_rotation: Optional[str]
    """Any string; changing it replaces every runner of the stack (new authentication token)."""
    ci: Optional[CiConfig]

    @property
    def enabled(self) -> bool:
        return self.integration == "enabled" and self.token is not None

    def default_url(self, domain: str) -> str:
        return self.url_override or f"https://gitlab.{domain}"


INSECURE_URL = (
    "http:// would send the API token and the runners' tokens in clear; use https://, or set "
    "gitlabAllowInsecureUrl: true for a lab"
)


def check_secure_url(url: str, allow_insecure: bool, where: str) -> str:
    """`url` if it is https:// (or insecure URLs are allowed); `where` names its source."""
    if url.lower().startswith("http://") and not allow_insecure:
        raise pulumi.RunError(f"{where}: {INSECURE_URL}")
    return url


def api_base_url(url: str) -> str:
    """The GitLab provider's base_url: the instance URL + /api/v4/ (with the slash)."""
    return url.rstrip("/") + "/api/v4/"


def _known_secret(reader: ConfigReader, key: str) -> Optional[str]:
    """The plain value of a secret key, for validation only (never in a message)."""
    value = reader.raw(key)
    return value if value else None


def check_maskable(reader: ConfigReader, path: str, value: str) -> bool:
    if MASKABLE.fullmatch(value):
        return True
    reader.error(
        path,
        "cannot be masked: GitLab needs a single line of at least 8 characters from A-Z a-z 0-9 "
        "+ / = @ : . ~ _ - (the value is not shown); set masked: false or change the value",
    )
    return False


def dangerous_host_path(volume: str) -> Optional[str]:
    """The host path of a bind volume (`/host:/container[:mode]`) when it gives a job the host,
    else None. An anonymous volume (`/cache`) and the Docker socket are not dangerous here."""
    if ":" not in volume:
        return None
    host = posixpath.normpath(volume.split(":", 1)[0])
    if host in DOCKER_SOCKETS:
        return None
    for path in HOST_ONLY_PATHS:
        if host == "/" or host == path or host.startswith(path + "/") or path.startswith(host + "/"):
            return host
    return None


def _dangers(role: str, access: Optional[str], volumes: Optional[list[str]]) -> dict[str, list[tuple[str, str]]]:
    """What in a runner's overrides is dangerous: key -> [(config path suffix, reason)]."""
    found: dict[str, list[tuple[str, str]]] = {}
    if role == "production-runner" and access == "not_protected":
        found["accessLevel"] = [(
            "accessLevel",
            "not_protected on the production runner lets a job from any branch, pushed by anyone with "
            "Developer access, run on Production (its Docker, /srv and deploy credentials)",
        )]
    for i, volume in enumerate(volumes or ()):
        host = dangerous_host_path(volume)
        if host is not None:
            found.setdefault("volumes", []).append((
                f"volumes[{i}]",
                f"binds the host's {host} into every job: a job could read or change the host (its system, "
                "Docker's data or the platform's secrets)",
            ))
    return found


def _check_dangers(r: ConfigReader, path: str, role: str, obj: dict[str, Any], access: Optional[str], volumes: Optional[list[str]]) -> None:
    """Refuse dangerous overrides unless `allowDangerous` names them; warn about allowed ones."""
    allowed = set(
        check_list(r, f"{path}.allowDangerous", obj.get("allowDangerous", []), lambda p, v: check_string(r, p, v, choices=DANGEROUS_KEYS))
        or ()
    )
    found = _dangers(role, access, volumes if "volumes" in obj else None)
    for key in DANGEROUS_KEYS:
        for where, reason in found.get(key, []):
            if key in allowed:
                r.warn(f"{path}.allowDangerous", f"{path}.{where} is allowed although it is dangerous: {reason}")
            else:
                r.error(f"{path}.{where}", f"{reason}; set {path}.allowDangerous: [{key}] if you mean it")
        if key in allowed and key not in found:
            r.error(f"{path}.allowDangerous", f"lists {key}, but no {'volume is' if key == 'volumes' else 'value is'} dangerous: remove it")


def _parse_runner(r: ConfigReader, role: str, raw: Any) -> Optional[RunnerSettings]:
    base = DEFAULT_RUNNERS[role]
    if raw is None:
        return base
    path = f"runners.{role}"
    obj = check_object(r, path, raw, RUNNER_KEYS)
    if obj is None:
        return None
    before = len(r.errors)
    tags = base.tags
    if "tags" in obj:
        parsed = check_list(r, f"{path}.tags", obj["tags"], lambda p, v: check_string(r, p, v, pattern=TAG, expected="a runner tag"))
        if parsed is not None:
            if not parsed:
                r.error(f"{path}.tags", "is empty; a runner takes tagged jobs only (untagged is false), give it at least one tag")
            tags = tuple(parsed)
    access = check_string(r, f"{path}.accessLevel", obj.get("accessLevel", base.access_level), choices=ACCESS_LEVELS)
    locked = check_bool(r, f"{path}.locked", obj.get("locked", base.locked))
    concurrent = check_int(r, f"{path}.concurrent", obj.get("concurrent", base.concurrent), minimum=1, maximum=1000)
    request = check_int(r, f"{path}.requestConcurrency", obj.get("requestConcurrency", base.request_concurrency), minimum=1, maximum=1000)
    timeout = check_int(r, f"{path}.maximumTimeout", obj.get("maximumTimeout", base.maximum_timeout), minimum=600)
    description = check_string(r, f"{path}.description", obj.get("description", base.description))
    volumes = base.volumes
    if "volumes" in obj:
        parsed_volumes = check_list(
            r, f"{path}.volumes", obj["volumes"],
            lambda p, v: check_string(r, p, v, pattern=VOLUME, expected="a volume such as /host/path:/container/path[:ro]"),
        )
        if parsed_volumes is not None:
            volumes = tuple(parsed_volumes)
    _check_dangers(r, path, role, obj, access, list(volumes))
    if len(r.errors) != before:
        return None
    assert access and locked is not None and concurrent and request and timeout and description is not None
    return RunnerSettings(
        role=role,
        tags=tags,
        access_level=access,
        description=description,
        concurrent=concurrent,
        request_concurrency=request,
        maximum_timeout=timeout,
        volumes=volumes,
        mounts=base.mounts,
        locked=locked,
    )


def _parse_scope(r: ConfigReader, raw: Any) -> Optional[RunnerScope]:
    obj = check_object(r, "runnerScope", raw, SCOPE_KEYS)
    if obj is None:
        return None
    if len([k for k in SCOPE_KEYS if k in obj]) != 1:
        r.error("runnerScope", "expected exactly one of project (a project path such as group/app), "
                "projects (a list of project paths) or group (a group path)")
        return None
    if "group" in obj:
        path = check_string(r, "runnerScope.group", obj["group"], pattern=GROUP_PATH, expected="a group path such as group or group/subgroup")
        return RunnerScope("group", path) if path else None
    if "project" in obj:
        path = check_string(r, "runnerScope.project", obj["project"], pattern=PROJECT_PATH, expected="a project path such as group/app")
        return RunnerScope("project", path) if path else None
    paths = check_list(r, "runnerScope.projects", obj["projects"],
                       lambda p, v: check_string(r, p, v, pattern=PROJECT_PATH, expected="a project path such as group/app"))
    if paths is None:
        return None
    if not paths or len(set(paths)) != len(paths):
        r.error("runnerScope.projects", "expected one or more distinct project paths")
        return None
    return RunnerScope("project", paths[0], tuple(paths[1:]))


def _plain_variable(r: ConfigReader, name: str, raw: Any, scope: str, secret: bool = False) -> Optional[CiVariable]:
    """One entry of ciVariables. `secret`: ciVariables is held as a secret (set with `--secret`,
    or a secret somewhere under it with `--path`): its value and description become secret
    Outputs and errors do not show them. The name and the environment scope identify the
    variable (its resource name, GitLab's ID) and are never secret."""
    path = f"ciVariables.{name}"
    if not VARIABLE_NAME.fullmatch(name):
        r.error(path, "expected a variable name of letters, digits and _ (not starting with a digit)")
        return None
    if isinstance(raw, str):
        raw = {"value": raw}
    obj = check_object(r, path, raw, VARIABLE_KEYS)
    if obj is None:
        return None
    before = len(r.errors)
    if "value" not in obj:
        r.error(f"{path}.value", "missing; expected a string")
    value = check_string(r, f"{path}.value", obj.get("value", ""), shown=not secret)
    secret_like = bool(SECRET_NAME.search(name))
    masked = check_bool(r, f"{path}.masked", obj.get("masked", secret_like))
    protected = check_bool(r, f"{path}.protected", obj.get("protected", secret_like))
    hidden = check_bool(r, f"{path}.hidden", obj.get("hidden", False))
    raw_flag = check_bool(r, f"{path}.raw", obj.get("raw", False))
    env = check_string(r, f"{path}.environmentScope", obj.get("environmentScope", scope), pattern=ENVIRONMENT_SCOPE, expected="an environment scope such as * or review/*")
    description = None
    if obj.get("description") is not None:
        description = check_string(r, f"{path}.description", obj["description"], shown=not secret)
    if hidden and masked is False:
        r.error(f"{path}.hidden", "needs masked: true (GitLab hides only masked values)")
    if value is not None and (masked or hidden):
        check_maskable(r, f"{path}.value", value)
    if len(r.errors) != before:
        return None
    assert value is not None and env
    return CiVariable(
        key=name,
        value=pulumi.Output.secret(value) if secret else value,
        secret=secret,
        masked=bool(masked),
        protected=bool(protected),
        hidden=bool(hidden),
        raw=bool(raw_flag),
        environment_scope=env,
        description=pulumi.Output.secret(description) if secret and description is not None else description,
    )


def _secret_variable(r: ConfigReader, key: str, name: str, value: pulumi.Output[str], known: Optional[str], scope: str) -> Optional[CiVariable]:
    path = f"{key}.{name}" if key == "ciSecretVariables" else key
    if not VARIABLE_NAME.fullmatch(name):
        r.error(path, "expected a variable name of letters, digits and _ (not starting with a digit)")
        return None
    if known is not None and not check_maskable(r, path, known):
        return None
    return CiVariable(
        key=name, value=value, secret=True, masked=True, protected=True, hidden=True,
        raw=True, environment_scope=scope, description=None,
    )


def _dns_token(r: ConfigReader, scope: str) -> Optional[CiVariable]:
    """DNS_PROVIDER_API_TOKEN, only when `dnsProviderApiToken` is set: the DNS zone's token opens
    every record of the domain, so the application project gets it only when asked for."""
    explicit = r.secret_string("dnsProviderApiToken")
    if explicit is None:
        return None
    return _secret_variable(r, "dnsProviderApiToken", "DNS_PROVIDER_API_TOKEN", explicit, _known_secret(r, "dnsProviderApiToken"), scope)


def _parse_ci(r: ConfigReader, platform: Optional[PlatformConfig], services: Optional[ServicesConfig], token_set: bool) -> Optional[CiConfig]:
    project = r.string("ciProject", pattern=PROJECT_PATH, expected="a project path such as group/app")
    scope = r.string("ciEnvironmentScope", default="*", pattern=ENVIRONMENT_SCOPE, expected="an environment scope such as * or production") or "*"
    raw_plain = r.structured(
        "ciVariables",
        expected="an object NAME: value or NAME: {value, masked, protected, raw, hidden, environmentScope, description}",
        secret_ok=True,
    )
    # Held as a secret: every value in it stays secret (a value set with --secret --path makes
    # the whole key secret; the program cannot tell which leaf was meant).
    plain_is_secret = raw_plain is not None and r.is_secret("ciVariables")
    secret_map = r.secret_map("ciSecretVariables")
    # Secret variables reach only jobs of this environment (deploy jobs on the production runner):
    # never review jobs, which run on the shared staging runner.
    secret_scope = r.string("ciSecretEnvironmentScope", default=DEFAULT_SECRET_SCOPE, pattern=ENVIRONMENT_SCOPE,
                            expected="an environment scope such as production") or DEFAULT_SECRET_SCOPE
    dns_token = _dns_token(r, secret_scope)
    email = services.traefik.acme_email if services is not None else None
    if project is None:
        for key, present in (("ciVariables", raw_plain), ("ciSecretVariables", secret_map)):
            if present is not None:
                r.error(key, "is set but ciProject is not: set ciProject to the project path the variables belong to")
        return None

    variables: dict[str, CiVariable] = {}
    if platform is not None:
        variables["TZ"] = CiVariable("TZ", platform.timezone, secret=False, masked=False, protected=False, environment_scope=scope)
        review = platform.review_daemon
        if review is not None:
            # The review-app template publishes containers on this address (templates/review-app.yml).
            variables["STAGING_HOST_ADDRESS"] = CiVariable(
                "STAGING_HOST_ADDRESS", review.address, secret=False, masked=False, protected=False, environment_scope=scope
            )
    if email is not None:
        variables["LETSENCRYPT_EMAIL"] = CiVariable("LETSENCRYPT_EMAIL", email, secret=False, masked=False, protected=False, environment_scope=scope)
    if dns_token is not None:
        variables[dns_token.key] = dns_token

    if raw_plain is not None:
        if not isinstance(raw_plain, dict):
            r.error("ciVariables", "expected an object NAME: value or NAME: {value, masked, protected, ...}")
        else:
            for name, raw in raw_plain.items():
                v = _plain_variable(r, name, raw, scope, secret=plain_is_secret)
                if v is not None:
                    variables[name] = v
    if secret_map is not None:
        known = json.loads(_known_secret(r, "ciSecretVariables") or "{}")
        for name, value in secret_map.items():
            if raw_plain and name in raw_plain:
                r.error(f"ciSecretVariables.{name}", "is also set in ciVariables; set it in one of them")
                continue
            v = _secret_variable(r, "ciSecretVariables", name, value, known.get(name), secret_scope)
            if v is not None:
                variables[name] = v

    if token_set:
        if "LETSENCRYPT_EMAIL" not in variables:
            r.error("acmeEmail", "missing; the application project's CI needs LETSENCRYPT_EMAIL: expected an e-mail address")
    return CiConfig(project=project, environment_scope=scope, variables=tuple(variables[k] for k in sorted(variables)))


def _integration_token(
    r: ConfigReader, integration: str, token: Optional[pulumi.Output[str]], token_given: bool
) -> Optional[pulumi.Output[str]]:
    """The token the integration uses, checked against gitlabIntegration (see the module doc).
    `token_given`: a value is set (`token` is None also when it was refused for not being secret)."""
    if integration == "enabled" and not token_given:
        r.error(
            "gitlabToken",
            "missing, and gitlabIntegration is enabled: this stack's runners and CI/CD variables exist in GitLab, "
            "and leaving them out would delete them. Nothing was changed. Set the token again "
            f"(`{TOKEN_COMMAND}`), or set gitlabIntegration to removed to delete them on purpose",
        )
    elif integration == "pending" and token is not None:
        r.error(
            "gitlabIntegration",
            f"is not set but gitlabToken is: run `{ENABLE_COMMAND}` with the token, so that losing the token later "
            "stops the run instead of deleting the runners and CI/CD variables",
        )
    elif integration == "removed":
        if token is not None:
            r.warn("gitlabToken", "is ignored: gitlabIntegration is removed (remove the token with `pulumi config rm delivery:gitlabToken`)")
        return None
    return token


def parse_gitlab(r: ConfigReader, platform: Optional[PlatformConfig], services: Optional[ServicesConfig] = None) -> Optional[GitLabConfig]:
    """The `gitlab*`, `runner*` and `ci*` keys; errors are collected in `r`. `services` gives
    LETSENCRYPT_EMAIL (acmeEmail) and the DNS token's default (dnsCredentials)."""
    before = len(r.errors)
    url = r.string("gitlabUrl", pattern=URL, expected="a URL such as https://gitlab.company.ru")
    allow_insecure = r.boolean("gitlabAllowInsecureUrl", default=False)
    if url is not None and url.lower().startswith("http://"):
        if not allow_insecure:
            r.error("gitlabUrl", INSECURE_URL)
        else:
            r.warn("gitlabAllowInsecureUrl", f"GitLab is reached at {url}: the API token and the runners' tokens travel in clear")
    state = r.string("gitlabIntegration", default="pending", choices=INTEGRATION_STATES)
    integration = state or "pending"
    token = r.secret_string("gitlabToken")
    known_token = _known_secret(r, "gitlabToken")
    if state is not None:
        token = _integration_token(r, integration, token, known_token is not None)
    if token is not None and known_token is not None and known_token.startswith("glrt-"):
        r.error("gitlabToken", "is a runner authentication token (glrt-); expected an API token with the api and create_runner scopes")
    elif token is not None and known_token is not None and not API_TOKEN.fullmatch(known_token):
        r.error("gitlabToken", "expected the API token alone, on one line without spaces (the value is not shown)")
    version = r.string("gitlabRunnerVersion", default=DEFAULT_RUNNER_VERSION, pattern=RUNNER_VERSION, expected="a pinned gitlab/gitlab-runner tag such as v18.5.0 (not latest)")
    image = r.string("runnerDefaultImage", default=DEFAULT_RUNNER_IMAGE, expected="a pinned image such as docker:29.2.0-cli")
    if image is not None:
        m = IMAGE.fullmatch(image)
        if m is None or (m.group("tag") is None and m.group("digest") is None) or m.group("tag") == "latest":
            r.error("runnerDefaultImage", f"expected a pinned image (name:tag or name@sha256:..., not latest), got {image!r}")
    rotation = r.string("runnerTokenRotation", expected="any string, e.g. 2026-07")

    raw_scope = r.structured("runnerScope", expected="an object {project: <group/app>} or {group: <group>}")
    scope = _parse_scope(r, raw_scope) if raw_scope is not None else None

    raw_runners = r.structured("runners", expected="an object of runner settings by role")
    overrides: dict[str, Any] = {}
    if raw_runners is not None:
        obj = check_object(r, "runners", raw_runners, RUNNER_ROLES)
        overrides = obj or {}

    ci = _parse_ci(r, platform, services, integration == "enabled")
    infra = r.string("infraProject", pattern=PROJECT_PATH, expected="the path of this infrastructure project, such as group/delivery")
    if scope is None and raw_scope is None and ci is not None:
        # The application's pipeline and this project's own (.gitlab-ci.yml needs both runners).
        scope = RunnerScope("project", ci.project, (infra,) if infra and infra != ci.project else ())

    runners: list[RunnerSettings] = []
    if platform is not None:
        roles = [role for role in RUNNER_ROLES if platform.hosts_with(role)]
        for role in roles:
            settings = _parse_runner(r, role, overrides.get(role))
            if settings is not None:
                runners.append(settings)
            if len(platform.hosts_with(role)) > 1:
                r.error("hosts", f"role {role!r} runs on more than one host ({', '.join(h.name for h in platform.hosts_with(role))}); one runner per role")
        for role in overrides:
            if role in RUNNER_ROLES and role not in roles:
                r.error(f"runners.{role}", f"no host of this stack has the role {role!r}")
        if integration == "enabled" and roles and scope is None:
            r.error("runnerScope", "missing; expected {project: <group/app>}, {projects: [...]} or {group: <group>} (or set ciProject): where the runners are created")
        if scope is not None and scope.also_projects:
            for settings in runners:
                if settings.locked:
                    # POST /projects/:id/runners answers 403 for a locked runner.
                    r.error(
                        f"runners.{settings.role}.locked",
                        f"a locked runner cannot be enabled in other projects ({', '.join(scope.also_projects)}): "
                        "use runnerScope {group: <group>} (a group runner serves only that group's projects), "
                        "or set locked: false",
                    )
    if len(r.errors) != before or version is None or image is None:
        return None
    return GitLabConfig(
        url_override=url,
        allow_insecure_url=allow_insecure,
        integration=integration,
        token=token,
        runner_version=version,
        runner_default_image=image,
        runner_scope=scope,
        runners=tuple(runners),
        runner_token_rotation=rotation,
        ci=ci,
    )
