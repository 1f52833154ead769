"""GitLabRunner: a GitLab runner on one host, created through the API (pulumi-gitlab,
pulumi-command, pulumi-docker).

1. `<name>-user-runner`  gitlab.UserRunner: the runner object in GitLab (project or group
   scope, tags, access level...) and its `glrt-` authentication token. No registration
   token exists anywhere: GitLab 17+ disabled them; POST /user/runners needs an API token
   with the `create_runner` scope.
2. `<name>-config`       write-runner-config.sh: config.toml, built as data and serialised
   with tomli-w, sent through stdin (it holds the token) to
   /srv/gitlab-runner/config/config.toml, mode 0600.
3. `<name>-image`, `<name>-container`: gitlab/gitlab-runner (pinned) with docker.sock, its
   config folder and the role's mounts. A change of config.toml (or a new runner's token)
   rewrites the file only: gitlab-runner watches it and reloads it, the container keeps
   running with its jobs (docs/operations.md, "What a change restarts"). `configSha256`
   (config.toml rendered with the runner's ID in place of its token) tells a change apart.

Token rotation: see docs/gitlab.md. A change of `runnerTokenRotation` replaces the
UserRunner (a new runner and token; the old runner is deleted), which rewrites config.toml;
the running container reloads it. The runner's own renewals are kept by the script.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Optional, Sequence

import pulumi
import pulumi_docker as docker
import pulumi_gitlab as gitlab
import tomli_w

from ..config import HostConfig
from ..config.gitlab import RunnerScope, RunnerSettings
from ..host.host_files import install_files
from ..host.remote_script import FileSpec, run_script

SCRIPTS = Path(__file__).parent / "scripts"
CONFIG_DIR = "/srv/gitlab-runner/config"
CONFIG_PATH = f"{CONFIG_DIR}/config.toml"
CONFIG_MODE = 0o600
DOCKER_SOCK = "/var/run/docker.sock"
RUNNER_IMAGE = "gitlab/gitlab-runner"
CONTAINER_NAME = "gitlab-runner"
ACME_CA_FILE = f"{CONFIG_DIR}/certs/acme-ca.pem"
IN_ACME_CA_FILE = "/etc/gitlab-runner/certs/acme-ca.pem"
DOCKER_CERTS_D = "/etc/docker/certs.d"
#: Pull job images every time (tags move), fall back to the local copy if the registry is down.
PULL_POLICY = ["always", "if-not-present"]


@dataclass(frozen=True)
class GitLabRunnerArgs:
    host: HostConfig
    """The server the runner runs on (its role production-runner or staging-runner)."""
    ssh_private_key: pulumi.Input[str]
    """SSH private key contents (secret), to write config.toml."""
    docker_provider: docker.Provider
    """The host's Docker provider (DockerHost.provider)."""
    settings: RunnerSettings
    """Tags, access level, concurrency, volumes, mounts of this runner."""
    scope: RunnerScope
    """The project or group the runner is created in."""
    gitlab_url: pulumi.Input[str]
    """GitLab's URL as jobs and the runner reach it (https://gitlab.<domain>)."""
    runner_version: str
    """Pinned gitlab/gitlab-runner tag, e.g. v18.5.0."""
    default_image: str
    """Pinned default job image, e.g. docker:29.2.0-cli."""
    timezone: str = "Etc/UTC"
    """TZ of the runner container."""
    token_rotation: Optional[str] = None
    """Changing it replaces the UserRunner: a new runner with a new token."""
    host_ready: Sequence[pulumi.Resource] = field(default_factory=tuple)
    """What must exist on the host first (DockerHost.setup: the /srv layout)."""
    gitlab_ready: Sequence[pulumi.Resource] = field(default_factory=tuple)
    """What must exist before the GitLab API is asked anything (the GitLab readiness gate)."""
    acme_ca_pem: Optional[str] = None
    """The ACME CA when it is not publicly trusted (`acmeCaCertificate`): the runner trusts it
    for GitLab (`tls-ca-file`), and the host's Docker for the registry (certs.d)."""
    registry_host: Optional[str] = None
    """registry.<domain>: the host's Docker trusts `acme_ca_pem` for it."""


def runner_config(
    settings: RunnerSettings, name: str, url: str, token: str, default_image: str, tls_ca_file: Optional[str] = None
) -> dict[str, Any]:
    """config.toml as data (gitlab-runner's advanced configuration)."""
    config = {
        "concurrent": settings.concurrent,
        "check_interval": settings.check_interval,
        "shutdown_timeout": 0,
        "log_level": "info",
        "runners": [
            {
                "name": name,
                "url": url,
                "token": token,
                "executor": "docker",
                "request_concurrency": settings.request_concurrency,
                "docker": {
                    "image": default_image,
                    "privileged": False,
                    "tls_verify": False,
                    "disable_entrypoint_overwrite": False,
                    "oom_kill_disable": False,
                    "disable_cache": False,
                    "volumes": list(settings.volumes),
                    "pull_policy": list(PULL_POLICY),
                    "shm_size": 0,
                },
            }
        ],
    }
    if tls_ca_file is not None:
        # The runner trusts it for GitLab and hands it to jobs (CI_SERVER_TLS_CA_FILE).
        config["runners"][0]["tls-ca-file"] = tls_ca_file
    return config


def render_config(
    settings: RunnerSettings, name: str, url: str, token: str, default_image: str, tls_ca_file: Optional[str] = None
) -> str:
    return tomli_w.dumps(runner_config(settings, name, url, token, default_image, tls_ca_file))


def config_fingerprint(
    settings: RunnerSettings, name: str, url: str, runner_id: str, default_image: str, tls_ca_file: Optional[str] = None
) -> str:
    """SHA-256 of config.toml with the runner's ID where its token goes: changes with the
    file and with the runner, reveals nothing about the token."""
    text = render_config(settings, name, url, f"runner-id:{runner_id}", default_image, tls_ca_file)
    return hashlib.sha256(text.encode()).hexdigest()


class GitLabRunner(pulumi.ComponentResource):
    """A GitLab runner (docker executor) on one host, created with an authentication token."""

    runner_id: pulumi.Output[str]
    tags: pulumi.Output[list[str]]
    config_sha256: pulumi.Output[str]
    config_write: Any
    container: docker.Container
    user_runner: gitlab.UserRunner

    def __init__(self, name: str, args: GitLabRunnerArgs, opts: Optional[pulumi.ResourceOptions] = None) -> None:
        super().__init__("delivery:gitlab:GitLabRunner", name, None, opts)
        s = args.settings
        runner_name = args.host.name

        lookup = pulumi.InvokeOutputOptions(parent=self, depends_on=list(args.gitlab_ready))
        project_id = group_id = None
        if args.scope.kind == "project":
            project_id = gitlab.get_project_output(path_with_namespace=args.scope.path, opts=lookup).id.apply(int)
        else:
            group_id = gitlab.get_group_output(full_path=args.scope.path, opts=lookup).group_id

        self.user_runner = gitlab.UserRunner(
            f"{name}-user-runner",
            runner_type=args.scope.runner_type,
            project_id=project_id,
            group_id=group_id,
            tag_lists=list(s.tags),
            untagged=s.untagged,
            locked=s.locked,
            access_level=s.access_level,
            description=s.description,
            maximum_timeout=s.maximum_timeout,
            maintenance_note=f"Managed by Pulumi ({pulumi.get_project()}/{pulumi.get_stack()}): host {runner_name}, role {s.role}",
            opts=pulumi.ResourceOptions(
                parent=self,
                additional_secret_outputs=["token"],
                replacement_trigger=args.token_rotation,
            ),
        )
        # A project runner serves further projects (this infrastructure project...) once enabled there.
        for extra in args.scope.also_projects:
            gitlab.ProjectRunnerEnablement(
                f"{name}-in-{extra.replace('/', '-').replace('.', '-')}",
                project=extra,
                runner_id=self.user_runner.id.apply(int),
                opts=pulumi.ResourceOptions(parent=self),
            )
        # Mocks (and pulumi import) do not apply additional_secret_outputs: wrap explicitly.
        token = pulumi.Output.secret(self.user_runner.token)
        url = pulumi.Output.from_input(args.gitlab_url)

        ca_file = IN_ACME_CA_FILE if args.acme_ca_pem is not None else None
        config_toml = pulumi.Output.secret(
            pulumi.Output.all(url, token).apply(lambda v: render_config(s, runner_name, v[0], v[1], args.default_image, ca_file))
        )
        trust: list[pulumi.Resource] = []
        if args.acme_ca_pem is not None:
            trust_files = [FileSpec(ACME_CA_FILE, 0o444, args.acme_ca_pem)]
            if args.registry_host is not None:
                # `docker login/pull/push registry.<domain>` by jobs through the host's daemon.
                trust_files.append(FileSpec(f"{DOCKER_CERTS_D}/{args.registry_host}/ca.crt", 0o444, args.acme_ca_pem))
            trust.append(
                install_files(
                    f"{name}-trust",
                    host=args.host,
                    private_key=args.ssh_private_key,
                    files=trust_files,
                    secret=False,
                    parent=self,
                    depends_on=list(args.host_ready),
                )
            )
        self.config_write = run_script(
            f"{name}-config",
            host=args.host,
            private_key=args.ssh_private_key,
            script=SCRIPTS / "write-runner-config.sh",
            args=(CONFIG_PATH,),
            stdin=config_toml,
            parent=self,
            depends_on=list(args.host_ready),
        )
        self.config_sha256 = pulumi.Output.all(url, self.user_runner.id).apply(
            lambda v: config_fingerprint(s, runner_name, v[0], v[1], args.default_image, ca_file)
        )

        on_host = pulumi.ResourceOptions(parent=self, provider=args.docker_provider)
        image = docker.RemoteImage(
            f"{name}-image",
            name=f"{RUNNER_IMAGE}:{args.runner_version}",
            keep_locally=True,
            opts=on_host,
        )
        mounts = [(CONFIG_DIR, "/etc/gitlab-runner"), (DOCKER_SOCK, DOCKER_SOCK), *s.mounts]
        self.container = docker.Container(
            f"{name}-container",
            name=CONTAINER_NAME,
            image=image.image_id,
            restart="always",
            envs=[f"TZ={args.timezone}"],
            volumes=[docker.ContainerVolumeArgs(host_path=h, container_path=c) for h, c in mounts],
            # No hash of config.toml here: gitlab-runner re-reads the file when it changes, so a
            # new config (or token) never replaces the container and never kills running jobs.
            labels=[
                docker.ContainerLabelArgs(label="delivery.managed-by", value="pulumi"),
                docker.ContainerLabelArgs(label="delivery.gitlab-runner.role", value=s.role),
            ],
            opts=pulumi.ResourceOptions(
                parent=self,
                provider=args.docker_provider,
                delete_before_replace=True,
                depends_on=[self.config_write, *trust],
            ),
        )

        self.runner_id = self.user_runner.id
        self.tags = pulumi.Output.from_input(list(s.tags))
        self.register_outputs({"runnerId": self.runner_id, "tags": self.tags, "configSha256": self.config_sha256})
