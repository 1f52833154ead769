"""GitLabServer: GitLab omnibus in Docker on the host with the `gitlab` role (pulumi-docker).

The seed's gitlab.rb is generated from config as data (`gitlab_settings`), rendered to
Ruby literals (`render_gitlab_rb`) and installed in /srv/services/gitlab/config (the
container's /etc/gitlab) by scripts/install-files.sh. The initial root password goes in
its own file, read by gitlab.rb through omnibus' `from_file` only while it exists, so
gitlab.rb holds no secret. A changed gitlab.rb never replaces the container:
`<name>-reconfigure` runs `gitlab-ctl reconfigure` in the running one (components/services/
in_place.py); a new container reconfigures on start. Only the image, the ports, the volumes,
the host name and the environment replace it.

GitLab reads the initial root password only when it seeds its database, so the password file
lives only that long: its own step installs it only while the database is absent
(`until=` the database's PG_VERSION), and the container deletes it itself right after the
`gitlab-ctl reconfigure` of its start (the one that seeds the database), through the image's
GITLAB_POST_RECONFIGURE_SCRIPT. Later runs never install it again: the step finds the
database and removes the file instead.

Data and configuration live in bind volumes that are protected (and retained) so that neither
`pulumi destroy` nor a refactor deletes them.

GitLab listens for plain HTTP on 80, its registry on 5005 and SSH on 22 (published as
1023); Traefik on the traefik host terminates TLS and forwards to these ports.

`<name>-ready` (scripts/wait-gitlab-ready.sh) is the readiness gate: it waits, bounded by
`gitlabReadyTimeoutSeconds`, until GitLab answers /-/readiness inside its container, and runs
again whenever the container is replaced. Everything that talks to GitLab's API (runners,
CI variables, project look-ups) depends on it.
"""

from __future__ import annotations

import shlex
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Optional, Sequence

import pulumi
import pulumi_docker as docker

from ..config import HostConfig
from ..config.services import GitLabSettings, Hostnames
from ..host.host_files import install_files
from ..host.remote_script import FileSpec, run_script, sha256
from .in_place import RECONFIGURE, apply_on_change

SCRIPTS = Path(__file__).parent / "scripts"
IMAGE = "gitlab/gitlab-ce"
CONTAINER_NAME = "gitlab"
HTTP_PORT = 80
REGISTRY_PORT = 5005
SSH_PORT = 1023
"""The port users clone over SSH (Traefik's gitlab-ssh entrypoint and Services' published port)."""

SRV = "/srv/services/gitlab"
#: Host folder -> container folder of each volume (the seed's /srv/services/gitlab/{config,data,logs}).
VOLUMES = {
    "config": (f"{SRV}/config", "/etc/gitlab"),
    "data": (f"{SRV}/data", "/var/opt/gitlab"),
    "logs": (f"{SRV}/logs", "/var/log/gitlab"),
}
#: Volumes whose loss loses GitLab (gitlab-secrets.json lives in config): protected.
PROTECTED_VOLUMES = ("config", "data")
GITLAB_RB = f"{SRV}/config/gitlab.rb"
ROOT_PASSWORD_RB = f"{SRV}/config/delivery-root-password.rb"
ROOT_PASSWORD_IN_CONTAINER = "/etc/gitlab/delivery-root-password.rb"
#: Exists once GitLab's PostgreSQL is initialised (/var/opt/gitlab/postgresql/data/PG_VERSION).
DATABASE_MARKER = f"{SRV}/data/postgresql/data/PG_VERSION"
#: Run by the image's /assets/wrapper after `gitlab-ctl reconfigure` on every start (a failed
#: reconfigure stops the wrapper before it): the password file has been used, or was not needed.
FORGET_ROOT_PASSWORD = f"rm -f -- {shlex.quote(ROOT_PASSWORD_IN_CONTAINER)}"
#: What the running container last applied (components/services/in_place.py).
RECONFIGURE_STAMP = f"{SRV}/.reconfigured"

#: The seed's proxy headers: GitLab (and its registry) sit behind Traefik, which terminates TLS.
PROXY_HEADERS = {
    "Host": "$http_host",
    "X-Real-IP": "$remote_addr",
    "X-Forwarded-For": "$proxy_add_x_forwarded_for",
    "X-Forwarded-Proto": "https",
    "X-Forwarded-Ssl": "on",
}


@dataclass(frozen=True)
class Setting:
    """One gitlab.rb line: `target key-less value` (external_url '...') or `target['key'] = value`."""

    target: str
    key: Optional[str]
    value: Any
    condition: Optional[str] = None
    """A Ruby condition the line applies under (`... if <condition>`)."""

    @property
    def name(self) -> str:
        return self.target if self.key is None else f"{self.target}['{self.key}']"


def ruby(value: Any) -> str:
    """A Ruby literal of a str, bool, int, list or dict (the values gitlab.rb needs)."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, str):
        return "'" + value.replace("\\", "\\\\").replace("'", "\\'") + "'"
    if isinstance(value, (list, tuple)):
        return "[" + ", ".join(ruby(v) for v in value) + "]"
    if isinstance(value, dict):
        return "{ " + ", ".join(f"{ruby(k)} => {ruby(v)}" for k, v in value.items()) + " }"
    raise TypeError(f"no Ruby literal for {type(value).__name__}")


def gitlab_settings(hostnames: Hostnames, timezone: str, trusted_proxies: Sequence[str]) -> list[Setting]:
    """Every setting of the seed's gitlab.rb, from config (pure)."""
    proxies = list(trusted_proxies)
    return [
        Setting("external_url", None, f"https://{hostnames.gitlab}"),
        Setting("nginx", "proxy_set_headers", dict(PROXY_HEADERS)),
        Setting("nginx", "listen_port", HTTP_PORT),
        Setting("nginx", "listen_https", False),
        Setting("gitlab_rails", "time_zone", timezone),
        Setting("gitlab_rails", "trusted_proxies", proxies),
        Setting("registry_external_url", None, f"https://{hostnames.registry}"),
        Setting("registry", "enable", True),
        Setting("registry_nginx", "enable", True),
        Setting("registry_nginx", "proxy_set_headers", dict(PROXY_HEADERS)),
        Setting("registry_nginx", "listen_port", REGISTRY_PORT),
        Setting("registry_nginx", "listen_https", False),
        Setting("nginx", "real_ip_trusted_addresses", proxies),
        Setting("nginx", "real_ip_header", "X-Forwarded-For"),
        Setting("nginx", "real_ip_recursive", "on"),
        Setting("gitlab_rails", "gitlab_shell_ssh_port", SSH_PORT),
        # TLS ends at Traefik: omnibus must not try Let's Encrypt for the https external_url.
        Setting("letsencrypt", "enable", False),
        Setting("from_file", None, ROOT_PASSWORD_IN_CONTAINER, condition=f"File.exist?({ruby(ROOT_PASSWORD_IN_CONTAINER)})"),
    ]


@dataclass(frozen=True)
class GitLabUpstream:
    """Where Traefik reaches GitLab: the host's published ports, or the container on a shared network."""

    host: str
    http_port: int = HTTP_PORT
    registry_port: int = REGISTRY_PORT
    ssh_port: int = SSH_PORT

    @classmethod
    def published(cls, address: str) -> "GitLabUpstream":
        """GitLab on another host: its address and the ports it publishes there."""
        return cls(f"[{address}]" if ":" in address else address)

    @classmethod
    def on_network(cls) -> "GitLabUpstream":
        """GitLab on Traefik's host: the container by name on their shared network."""
        return cls(CONTAINER_NAME, HTTP_PORT, REGISTRY_PORT, 22)


def render_setting(s: Setting) -> str:
    line = f"{s.target} {ruby(s.value)}" if s.key is None else f"{s.name} = {ruby(s.value)}"
    return line if s.condition is None else f"{line} if {s.condition}"


def render_gitlab_rb(settings: Sequence[Setting]) -> str:
    header = [
        "# Managed by Pulumi (delivery platform, components/services/gitlab_server.py).",
        "# Change the stack config, not this file: it is rewritten on `pulumi up`.",
    ]
    return "\n".join(header + [render_setting(s) for s in settings]) + "\n"


def render_root_password_rb(password: str) -> str:
    return (
        "# Managed by Pulumi: GitLab's initial root password (used when the database is created).\n"
        + render_setting(Setting("gitlab_rails", "initial_root_password", password))
        + "\n"
    )


@dataclass(frozen=True)
class GitLabServerArgs:
    host: HostConfig
    """The host with the gitlab role (Services)."""
    ssh_private_key: pulumi.Input[str]
    """SSH key the files are installed with (secret)."""
    hostnames: Hostnames
    """gitlab.<domain>, registry.<domain>."""
    timezone: str
    settings: GitLabSettings
    """Image version, shm size, initial root password (secret, required)."""
    trusted_proxies: Sequence[str]
    """Addresses of the Traefik host(s): GitLab trusts their X-Forwarded-For."""
    after: Sequence[pulumi.Resource] = field(default_factory=tuple)
    """Steps that must finish first (the host's /srv layout)."""
    network: Optional[pulumi.Input[str]] = None
    """A Docker network shared with Traefik on the same host: GitLab joins it as `gitlab` and
    publishes no port (Traefik listens on 80 and 1023 there itself)."""
    before_container: Sequence[pulumi.Resource] = field(default_factory=tuple)
    """Steps that must finish before the container is created or replaced (the pre-upgrade
    check and backup of components/operations/upgrade.py)."""


class GitLabServer(pulumi.ComponentResource):
    """The GitLab omnibus container, its gitlab.rb, volumes and health check.

    Pass the host's Docker provider in `opts` (ResourceOptions(provider=host.provider))."""

    url: pulumi.Output[str]
    registry_url: pulumi.Output[str]
    ssh_url: pulumi.Output[str]
    config: Any
    root_password: Any
    """The initial root password's step: installs it only while GitLab has no database."""
    container: docker.Container
    reconfigure: Any
    """Runs `gitlab-ctl reconfigure` in the running container when gitlab.rb changed."""
    ready: Any
    """The readiness gate (remote.Command): GitLab's API answers once it has run."""
    volumes: dict[str, docker.Volume]

    def __init__(self, name: str, args: GitLabServerArgs, opts: Optional[pulumi.ResourceOptions] = None) -> None:
        super().__init__("delivery:services:GitLabServer", name, None, opts)
        settings = args.settings
        if settings.root_password is None:
            raise ValueError("GitLabServer needs the initial root password (delivery:gitlabRootPassword)")
        host = args.host
        child = pulumi.ResourceOptions(parent=self)

        gitlab_rb = render_gitlab_rb(gitlab_settings(args.hostnames, args.timezone, args.trusted_proxies))
        self.config = install_files(
            f"{name}-files",
            host=host,
            private_key=args.ssh_private_key,
            files=[FileSpec(GITLAB_RB, 0o600, gitlab_rb)],
            secret=False,
            parent=self,
            depends_on=list(args.after),
        )
        self.root_password = install_files(
            f"{name}-root-password",
            host=host,
            private_key=args.ssh_private_key,
            files=pulumi.Output.secret(settings.root_password).apply(
                lambda password: [FileSpec(ROOT_PASSWORD_RB, 0o600, render_root_password_rb(password))]
            ),
            secret=True,
            until=DATABASE_MARKER,
            parent=self,
            depends_on=list(args.after),
        )

        self.volumes = {
            key: docker.Volume(
                f"{name}-volume-{key}",
                name=f"{CONTAINER_NAME}-{key}",
                driver="local",
                driver_opts={"type": "none", "o": "bind", "device": host_path},
                labels=[docker.VolumeLabelArgs(label="delivery.managed-by", value="pulumi")],
                opts=pulumi.ResourceOptions(
                    parent=self,
                    depends_on=list(args.after),
                    protect=key in PROTECTED_VOLUMES,
                    retain_on_delete=key in PROTECTED_VOLUMES,
                ),
            )
            for key, (host_path, _) in VOLUMES.items()
        }

        image = docker.RemoteImage(f"{name}-image", name=f"{IMAGE}:{settings.version}", keep_locally=True, opts=child)
        bind = host.listen_address
        ports = [
            docker.ContainerPortArgs(internal=HTTP_PORT, external=HTTP_PORT, ip=bind, protocol="tcp"),
            docker.ContainerPortArgs(internal=REGISTRY_PORT, external=REGISTRY_PORT, ip=bind, protocol="tcp"),
            docker.ContainerPortArgs(internal=22, external=SSH_PORT, ip=bind, protocol="tcp"),
        ]
        self.container = docker.Container(
            f"{name}-container",
            name=CONTAINER_NAME,
            image=image.image_id,
            hostname=args.hostnames.gitlab,
            restart="always",
            shm_size=settings.shm_size_mb,
            # No TZ: gitlab.rb's time_zone is GitLab's, applied by a reconfigure.
            envs=[f"GITLAB_POST_RECONFIGURE_SCRIPT={FORGET_ROOT_PASSWORD}"],
            ports=None if args.network is not None else ports,
            networks_advanced=(
                [docker.ContainerNetworksAdvancedArgs(name=args.network, aliases=[CONTAINER_NAME])]
                if args.network is not None
                else None
            ),
            volumes=[
                docker.ContainerVolumeArgs(volume_name=self.volumes[key].name, container_path=container_path)
                for key, (_, container_path) in VOLUMES.items()
            ],
            healthcheck=docker.ContainerHealthcheckArgs(
                tests=["CMD", "/opt/gitlab/bin/gitlab-healthcheck", "--fail", "--max-time", "10"],
                interval="60s",
                timeout="30s",
                retries=5,
                start_period="600s",
            ),
            labels=[
                docker.ContainerLabelArgs(label="delivery.managed-by", value="pulumi"),
            ],
            stop_timeout=120,
            destroy_grace_seconds=120,
            opts=pulumi.ResourceOptions(
                parent=self,
                depends_on=[self.config, self.root_password, *args.before_container],
                delete_before_replace=True,
                replace_on_changes=["healthcheck"],
            ),
        )

        self.ready = run_script(
            f"{name}-ready",
            host=host,
            private_key=args.ssh_private_key,
            script=SCRIPTS / "wait-gitlab-ready.sh",
            args=(CONTAINER_NAME, str(settings.ready_timeout_seconds)),
            parent=self,
            depends_on=[self.container],
            rerun_on=[self.container.id],
        )

        # A changed gitlab.rb: `gitlab-ctl reconfigure` in the running container, once it is ready.
        self.reconfigure = apply_on_change(
            f"{name}-reconfigure",
            host=host,
            private_key=args.ssh_private_key,
            container=self.container,
            container_name=CONTAINER_NAME,
            stamp=RECONFIGURE_STAMP,
            action=RECONFIGURE,
            fingerprint=sha256(gitlab_rb),
            parent=self,
            after=[self.config, self.ready],
        )

        self.url = pulumi.Output.from_input(f"https://{args.hostnames.gitlab}")
        self.registry_url = pulumi.Output.from_input(f"https://{args.hostnames.registry}")
        self.ssh_url = pulumi.Output.from_input(f"ssh://git@{args.hostnames.gitlab}:{SSH_PORT}")
        self.register_outputs({"url": self.url, "registryUrl": self.registry_url, "sshUrl": self.ssh_url})
