"""Service files on a host: one mechanism for every component that writes under /srv.

`install_files()` runs scripts/install-files.sh through `run_script`: the files travel
as a deterministic base64 tar on stdin (secret when any of them is), the script writes
each file atomically only when it changed, and reports `changed: ...` or `unchanged`.
A change of any file (or of ensure/prune/remove) changes the step's trigger, so the
step runs again; containers that must restart on a change carry a hash of the files
that matter in a label (see Traefik and GitLabServer).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Optional, Sequence

import pulumi
import pulumi_command as command

from ..config import HostConfig
from .remote_script import SCRIPTS, FileSpec, run_script, tar_base64

SCRIPT = SCRIPTS / "install-files.sh"


@dataclass(frozen=True)
class Ensure:
    """A file a service owns (its content is never touched): created empty when missing."""

    path: str
    mode: int


def install_args(
    ensure: Sequence[Ensure] = (), prune: Sequence[str] = (), remove: Sequence[str] = (), until: Optional[str] = None
) -> tuple[str, ...]:
    return (
        *(f"ensure={e.path}:{e.mode:04o}" for e in ensure),
        *(f"prune={d}" for d in prune),
        *(f"remove={p}" for p in remove),
        *((f"until={until}",) if until is not None else ()),
    )


def install_files(
    resource_name: str,
    *,
    host: HostConfig,
    private_key: pulumi.Input[str],
    files: pulumi.Input[Sequence[FileSpec]],
    secret: bool,
    ensure: Sequence[Ensure] = (),
    prune: Sequence[str] = (),
    remove: Sequence[str] = (),
    until: Optional[str] = None,
    parent: pulumi.Resource,
    depends_on: Optional[list[pulumi.Resource]] = None,
) -> command.remote.Command:
    """A step that installs `files` on `host` (stdin secret when `secret`). With `until`, the
    files are needed only until that path exists: from then on they are removed instead."""
    bundle = pulumi.Output.from_input(files).apply(lambda fs: tar_base64(list(fs)) if fs else "")
    return run_script(
        resource_name,
        host=host,
        private_key=private_key,
        script=SCRIPT,
        args=install_args(ensure, prune, remove, until),
        stdin=pulumi.Output.secret(bundle) if secret else bundle,
        parent=parent,
        depends_on=depends_on,
    )
