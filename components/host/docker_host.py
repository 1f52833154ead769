"""DockerHost: Docker Engine on a bare Linux server, configured over SSH (pulumi-command).

Three idempotent steps run the scripts in `scripts/` through `remote.Command`:

1. `<name>-engine`   install-docker.sh: Docker Engine at the pinned version;
2. `<name>-host`     host-setup.sh: time zone and the /srv layout of the host's roles;
3. `<name>-docker-config` configure-docker.sh: daemon.json, TLS files and the systemd
   drop-in, validated, written atomically, Docker restarted only when they changed.

The component then exposes a `docker.Provider` for the host over mutual TLS.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Optional, Sequence

import pulumi
import pulumi_command as command
import pulumi_docker as docker

from ..config import DockerEngineConfig, HostConfig
from .docker_ca import DaemonTls
from .remote_script import SCRIPTS, FileSpec, run_script, tar_base64

TLS_DIR = "/etc/docker/tls"
DAEMON_JSON = "/etc/docker/daemon.json"
DROP_IN = "/etc/systemd/system/docker.service.d/10-delivery.conf"
DOCKERD = {"docker-ce": "/usr/bin/dockerd", "docker.io": "/usr/sbin/dockerd"}


@dataclass(frozen=True)
class Directory:
    path: str
    mode: int = 0o755


@dataclass(frozen=True)
class ScriptStep:
    """A script to run on the host before anything else (the adoption, docs/adopt.md)."""

    script: Path
    args: tuple[str, ...]
    stdin: str


@dataclass(frozen=True)
class DockerHostArgs:
    host: HostConfig
    """The server: address, SSH user/port/host key, roles."""
    ssh_private_key: pulumi.Input[str]
    """SSH private key contents (secret)."""
    engine: DockerEngineConfig
    """Which Docker package and version to install."""
    timezone: str
    """IANA time zone for the host."""
    tls: DaemonTls
    """The daemon's trust bundle and server certificate; the provider's CA and client certificate."""
    directories: Sequence[Directory] = field(default_factory=tuple)
    """Folders under /srv the host's roles need."""
    ready: Optional[pulumi.Output[Any]] = None
    """A check that must pass before anything is done on the host (the staging stack's
    comparison with the production stack's reviewAppsDaemon); it fails the run otherwise."""
    first: Optional[ScriptStep] = None
    """Runs before the engine and the daemon configuration steps (`<name>-adopt`: the adoption
    of a host set up by hand, components/operations/adoption.py)."""


def daemon_config(host: HostConfig) -> dict:
    """daemon.json as data. `hosts` lives here and nowhere else (the drop-in clears -H).

    What each hardening option buys and costs is in README.md ("What each host gets"):
    `icc: false` (no traffic between containers of the default bridge; the platform's containers
    that talk to each other share user networks or published ports), `no-new-privileges`,
    `live-restore` (containers keep running across a daemon restart). `userland-proxy` stays on
    (Docker's default): with it off, a container that connects to a port published on its own
    host's address times out (Traefik -> a production app on Production, a job -> a review app
    on Staging; reproduced on the disposable hosts, tests/e2e/test_services_e2e.py), and Docker
    sets route_localnet, which lets neighbours reach ports published on 127.0.0.1."""
    listen = host.listen_address
    tcp = f"tcp://[{listen}]:2376" if ":" in listen else f"tcp://{listen}:2376"
    return {
        "hosts": ["unix:///var/run/docker.sock", tcp],
        "containerd": "/run/containerd/containerd.sock",
        "storage-driver": "overlay2",
        "live-restore": True,
        "log-driver": "json-file",
        "log-opts": {"max-size": "10m", "max-file": "3"},
        "userland-proxy": True,
        "no-new-privileges": True,
        "icc": False,
        "tls": True,
        "tlsverify": True,
        "tlscacert": f"{TLS_DIR}/ca.pem",
        "tlscert": f"{TLS_DIR}/server-cert.pem",
        "tlskey": f"{TLS_DIR}/server-key.pem",
    }


def systemd_drop_in(engine: DockerEngineConfig) -> str:
    """Clear the unit's `-H fd://` so that daemon.json's `hosts` is the only listener list."""
    return (
        "# Managed by Pulumi (delivery platform): listeners are set in /etc/docker/daemon.json.\n"
        "[Service]\n"
        "ExecStart=\n"
        f"ExecStart={DOCKERD[engine.package]}\n"
    )


def layout_stdin(directories: Sequence[Directory]) -> str:
    return "".join(f"{d.path} {d.mode:04o}\n" for d in sorted(set(directories), key=lambda d: d.path))


class DockerHost(pulumi.ComponentResource):
    """Docker Engine, its TLS listener and the /srv layout on one host; a Docker provider for it."""

    endpoint: pulumi.Output[str]
    provider: docker.Provider
    engine: command.remote.Command
    setup: command.remote.Command
    adoption: Optional[command.remote.Command]
    docker_config: command.remote.Command

    def __init__(self, name: str, args: DockerHostArgs, opts: Optional[pulumi.ResourceOptions] = None) -> None:
        super().__init__("delivery:docker:DockerHost", name, None, opts)
        host = args.host

        gate = [args.ready] if args.ready is not None else []

        def step(suffix: str, script, cmd_args: tuple[str, ...] = (), stdin=None, depends_on=None):
            return run_script(
                f"{name}-{suffix}",
                host=host,
                private_key=args.ssh_private_key,
                script=SCRIPTS / script,
                args=cmd_args,
                stdin=stdin,
                parent=self,
                depends_on=depends_on,
                rerun_on=gate,
            )

        self.adoption = None
        if args.first is not None:
            self.adoption = step("adopt", args.first.script, args.first.args, stdin=args.first.stdin or None)
        before = [self.adoption] if self.adoption is not None else []
        self.engine = step(
            "engine", "install-docker.sh", (args.engine.package, args.engine.version or ""), depends_on=before
        )
        self.setup = step("host", "host-setup.sh", (args.timezone,), stdin=layout_stdin(args.directories))

        tls = args.tls
        files = pulumi.Output.all(tls.trust_pem, tls.server.cert_pem, tls.server.key_pem).apply(
            lambda pems: tar_base64(
                [
                    FileSpec(DAEMON_JSON, 0o644, json.dumps(daemon_config(host), indent=2, sort_keys=True) + "\n"),
                    FileSpec(DROP_IN, 0o644, systemd_drop_in(args.engine)),
                    FileSpec(f"{TLS_DIR}/ca.pem", 0o444, pems[0]),
                    FileSpec(f"{TLS_DIR}/server-cert.pem", 0o444, pems[1]),
                    FileSpec(f"{TLS_DIR}/server-key.pem", 0o400, pems[2]),
                ]
            )
        )
        self.docker_config = step(
            "docker-config",
            "configure-docker.sh",
            stdin=pulumi.Output.secret(files),
            depends_on=[self.engine, *before],
        )

        self.endpoint = pulumi.Output.from_input(host.docker_endpoint)
        # The provider's host is only known once the daemon is configured: on a fresh
        # stack the preview leaves it unknown, so pulumi-docker does not dial a daemon
        # that does not exist yet.
        self.provider = docker.Provider(
            f"{name}-docker",
            host=self.docker_config.stdout.apply(lambda _: host.docker_endpoint),
            ca_material=tls.server_ca_pem,
            cert_material=tls.client.cert_pem,
            key_material=pulumi.Output.secret(tls.client.key_pem),
            opts=pulumi.ResourceOptions(parent=self, depends_on=[self.docker_config, self.setup]),
        )

        self.register_outputs({"endpoint": self.endpoint})
