#!/usr/bin/env python3
"""Read-only adoption preview of one host (docs/adopt.md): `make adopt-check HOST=<name>`.

Reads the host (address, user, port, pinned hostKey, roles) and gitlabVersion, domain and
timezone from Pulumi.<stack>.yaml (plain values only: no secret is needed, nothing is
decrypted), connects with the system `ssh` (your own key or agent; `--identity` to choose one)
verifying the pinned host key, and runs components/operations/scripts/adopt-host.sh in its
`check` mode: it lists what it found on the host and what the first `pulumi up` will do there,
with the differences between the hand-made gitlab.rb and the program's. It changes nothing.

    python3 scripts/adopt_check.py --host services [--stack production] [--config FILE] [--identity KEY]
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from components.config import HostConfig  # noqa: E402
from components.config.services import DEFAULT_GITLAB_VERSION, Hostnames  # noqa: E402
from components.host.remote_script import script_command  # noqa: E402
from components.operations.adoption import SCRIPT, adoption_args, adoption_stdin  # noqa: E402


def hosts_of(config: dict) -> list[HostConfig]:
    return [
        HostConfig(
            name=h["name"],
            address=h["address"],
            user=h.get("user", "root"),
            port=int(h.get("port", 22)),
            host_key=h.get("hostKey"),
            roles=tuple(h.get("roles", [])),
        )
        for h in config.get("delivery:hosts", [])
    ]


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--host", required=True, help="the host's name in delivery:hosts")
    ap.add_argument("--stack", default="production")
    ap.add_argument("--config", help="the stack file (default Pulumi.<stack>.yaml)")
    ap.add_argument("--identity", help="SSH private key file (default: ssh's own choice)")
    a = ap.parse_args(argv)
    path = Path(a.config or ROOT / f"Pulumi.{a.stack}.yaml")
    config = (yaml.safe_load(path.read_text()) or {}).get("config", {})
    hosts = hosts_of(config)
    host = next((h for h in hosts if h.name == a.host), None)
    if host is None:
        print(f"{path}: delivery:hosts has no host named {a.host!r} (it has: {', '.join(h.name for h in hosts)})", file=sys.stderr)
        return 2
    if not host.host_key:
        print(f"{path}: delivery:hosts[{hosts.index(host)}].hostKey is not set; adopt-check verifies the host key (README, hostKey)", file=sys.stderr)
        return 2
    hostnames = Hostnames(config["delivery:domain"])
    version = config.get("delivery:gitlabVersion", DEFAULT_GITLAB_VERSION)
    timezone = config.get("delivery:timezone", "Etc/UTC")
    # The program runs runners once the GitLab integration is enabled (with gitlabToken set).
    runners = config.get("delivery:gitlabIntegration") == "enabled" and "delivery:gitlabToken" in config
    remote = script_command(SCRIPT, *adoption_args("check", host, version, hostnames, runners), user=host.user)
    with tempfile.TemporaryDirectory() as tmp:
        known = Path(tmp, "known_hosts")
        target = host.address if host.port == 22 else f"[{host.address}]:{host.port}"
        known.write_text(f"{target} {host.host_key}\n")
        cmd = [
            "ssh", "-p", str(host.port), "-o", f"UserKnownHostsFile={known}", "-o", "StrictHostKeyChecking=yes",
            "-o", "BatchMode=yes", "-o", "ConnectTimeout=15",
        ]
        if a.identity:
            cmd += ["-i", a.identity, "-o", "IdentitiesOnly=yes"]
        cmd += [f"{host.user}@{host.address}", remote]
        done = subprocess.run(cmd, input=adoption_stdin(host, hosts, hostnames, timezone), text=True, timeout=120, env=os.environ)
    return done.returncode


if __name__ == "__main__":
    sys.exit(main())
