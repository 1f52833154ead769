"""How this program runs its `.sh` files on a host: one mechanism for every component.

A script is sent as the `-c` argument of `bash` (it is not secret); small
non-secret arguments follow it, each shell-quoted; content and secrets go through
`stdin` only. Nothing is passed through `environment` (which needs `AcceptEnv` in
sshd and ends up in error text).
"""

from __future__ import annotations

import base64
import hashlib
import io
import shlex
import tarfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Optional, Sequence

import pulumi
import pulumi_command as command

from ..config import HostConfig

#: The host mechanisms' own scripts; every package keeps its scripts in its own scripts/ folder.
SCRIPTS = Path(__file__).parent / "scripts"


def script_command(script: Path, *args: str, user: str = "root") -> str:
    """The `create` string that runs `script` (a .sh file next to its component) with `args`
    under bash as root; the script's file name is its $0."""
    parts = ["bash", "-c", shlex.quote(script.read_text()), shlex.quote(script.name), *(shlex.quote(a) for a in args)]
    line = " ".join(parts)
    return line if user == "root" else f"sudo -n {line}"


def connection(host: HostConfig, private_key: pulumi.Input[str]) -> command.remote.ConnectionArgs:
    """SSH connection to a host: bounded retries, host key pinned when configured."""
    return command.remote.ConnectionArgs(
        host=host.address,
        port=float(host.port),
        user=host.user,
        private_key=private_key,
        host_key=host.host_key,
        dial_error_limit=5,
        per_dial_timeout=15,
    )


def sha256(*parts: str) -> str:
    h = hashlib.sha256()
    for p in parts:
        h.update(p.encode())
        h.update(b"\0")
    return h.hexdigest()


@dataclass(frozen=True)
class FileSpec:
    """A file to install on a host: absolute path, mode, content."""

    path: str
    mode: int
    content: str


def tar_base64(files: list[FileSpec]) -> str:
    """A deterministic base64 tar of `files` (paths relative to /, root-owned, mtime 0)."""
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.PAX_FORMAT) as tar:
        for f in sorted(files, key=lambda f: f.path):
            data = f.content.encode()
            info = tarfile.TarInfo(f.path.lstrip("/"))
            info.size = len(data)
            info.mode = f.mode
            info.mtime = 0
            info.uid = info.gid = 0
            info.uname = info.gname = "root"
            tar.addfile(info, io.BytesIO(data))
    return base64.b64encode(buf.getvalue()).decode() + "\n"


def run_script(
    resource_name: str,
    *,
    host: HostConfig,
    private_key: pulumi.Input[str],
    script: Path,
    args: tuple[str, ...] = (),
    stdin: Optional[pulumi.Input[str]] = None,
    parent: pulumi.Resource,
    depends_on: Optional[list[pulumi.Resource]] = None,
    rerun_on: Sequence[pulumi.Input[Any]] = (),
) -> command.remote.Command:
    """A remote.Command that runs `script` on `host`, re-run whenever the script,
    its arguments or its stdin change (the trigger carries their hash), or any of `rerun_on`
    (e.g. the ID of a container the step checks)."""
    create = script_command(script, *args, user=host.user)
    stdin_out = pulumi.Output.from_input(stdin) if stdin is not None else pulumi.Output.from_input("")
    # The hash of secret stdin stays secret: apply() keeps the secret flag.
    trigger = stdin_out.apply(lambda s: sha256(create, s or ""))
    return command.remote.Command(
        resource_name,
        connection=connection(host, private_key),
        create=create,
        stdin=stdin,
        triggers=[trigger, *rerun_on],
        add_previous_output_in_env=False,
        opts=pulumi.ResourceOptions(parent=parent, depends_on=depends_on or []),
    )
