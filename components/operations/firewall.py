"""DockerApiFirewall: TCP 2376 on a host accepts only the platform's trusted hosts and an
allow-list from config; nothing else on the host changes (nftables, pulumi-command).

The rules are one nftables table of our own, `inet delivery`, in
/etc/delivery/firewall.nft, loaded by the systemd unit `delivery-firewall.service`
(ordered before docker.service and network-pre.target, so they are in place at boot
before dockerd listens). Its base chains hook input and forward at priority
`filter - 10`, before Docker's own (iptables-nft) chains at priority `filter`: a drop
there is final, whatever Docker's rules say, and Docker never touches this table, so the
rules survive `systemctl restart docker`. The file replaces the whole table in one `nft -f`
transaction (`table` + `delete table` + the definition), so a reload is atomic and leaves
every other table (Docker's, fail2ban's) alone.

Always allowed: the host's own addresses (`fib saddr type local`) and its own containers
(`docker0`, `br-*`: a CI job on the runner host talking to its own daemon, Traefik on an
all-in-one host). Port 2376 of a container published through Docker (DNAT) is filtered the
same way in the forward hook.
"""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable, Optional, Sequence

import pulumi
import pulumi_command as command

from ..config import HostConfig
from ..host.remote_script import FileSpec, run_script, tar_base64

SCRIPTS = Path(__file__).parent / "scripts"
SCRIPT = SCRIPTS / "install-firewall.sh"

DOCKER_API_PORT = 2376
"""What dockerd listens on (components/host/docker_host.py daemon_config)."""
TABLE = "delivery"
RULES_FILE = "/etc/delivery/firewall.nft"
UNIT_NAME = "delivery-firewall.service"
UNIT_FILE = f"/etc/systemd/system/{UNIT_NAME}"
SET_V4 = "docker_api_v4"
SET_V6 = "docker_api_v6"
#: The host's own container networks (Docker's default bridge and user-defined bridges).
LOCAL_BRIDGES = ("docker0", "br-*")
#: Before Docker's iptables-nft chains, which hook at priority `filter` (0).
PRIORITY = "filter - 10"
HEADER = "# Managed by Pulumi (delivery platform, components/operations/firewall.py); do not edit.\n"


def collapse(sources: Iterable[str]) -> tuple[list[str], list[str]]:
    """IPv4 and IPv6 networks of `sources`, merged (an nftables interval set refuses overlaps)."""
    nets = [ipaddress.ip_network(s, strict=False) for s in sources]
    v4 = [str(n) for n in ipaddress.collapse_addresses(n for n in nets if n.version == 4)]
    v6 = [str(n) for n in ipaddress.collapse_addresses(n for n in nets if n.version == 6)]
    return v4, v6


def ruleset(sources: Sequence[str]) -> str:
    """/etc/delivery/firewall.nft: the `inet delivery` table, replaced as a whole (pure)."""
    v4, v6 = collapse(sources)

    def nft_set(name: str, kind: str, elements: list[str]) -> list[str]:
        lines = [f"\tset {name} {{", f"\t\ttype {kind}", "\t\tflags interval"]
        if elements:
            lines.append(f"\t\telements = {{ {', '.join(elements)} }}")
        return lines + ["\t}"]

    body = [
        *nft_set(SET_V4, "ipv4_addr", v4),
        *nft_set(SET_V6, "ipv6_addr", v6),
        "\t# TCP 2376 (Docker API): the host itself, its own containers, the allowed sources; drop the rest",
        "\tchain docker_api {",
        "\t\tfib saddr type local return",
        *(f'\t\tiifname "{i}" return' for i in LOCAL_BRIDGES),
        f"\t\tip saddr @{SET_V4} return",
        f"\t\tip6 saddr @{SET_V6} return",
        "\t\tcounter drop",
        "\t}",
        "\tchain input {",
        f"\t\ttype filter hook input priority {PRIORITY}; policy accept;",
        f"\t\ttcp dport {DOCKER_API_PORT} jump docker_api",
        "\t}",
        "\t# 2376 of a container published by Docker (DNAT), matched by the port clients dialled",
        "\tchain forward {",
        f"\t\ttype filter hook forward priority {PRIORITY}; policy accept;",
        f"\t\tmeta l4proto tcp ct status dnat ct original proto-dst {DOCKER_API_PORT} jump docker_api",
        "\t}",
    ]
    return (
        HEADER
        + "# Loaded by delivery-firewall.service; one transaction replaces the whole table.\n"
        + f"table inet {TABLE}\n"
        + f"delete table inet {TABLE}\n"
        + f"table inet {TABLE} {{\n"
        + "\n".join(body)
        + "\n}\n"
    )


def systemd_unit() -> str:
    """delivery-firewall.service: loads the table at boot, before Docker and the network."""
    return (
        HEADER
        + "[Unit]\n"
        "Description=Docker API firewall of the delivery platform (nftables table inet delivery)\n"
        f"Documentation=file:{RULES_FILE}\n"
        "DefaultDependencies=no\n"
        "Wants=network-pre.target\n"
        # after Debian's nftables.service: its default ruleset starts with `flush ruleset`
        "After=nftables.service\n"
        "Before=network-pre.target docker.service shutdown.target\n"
        "Conflicts=shutdown.target\n"
        "\n"
        "[Service]\n"
        "Type=oneshot\n"
        "RemainAfterExit=yes\n"
        "StandardInput=null\n"
        f"ExecStart=/usr/sbin/nft -f {RULES_FILE}\n"
        f"ExecReload=/usr/sbin/nft -f {RULES_FILE}\n"
        f"ExecStop=/usr/sbin/nft delete table inet {TABLE}\n"
        "\n"
        "[Install]\n"
        "WantedBy=sysinit.target\n"
    )


@dataclass(frozen=True)
class DockerApiFirewallArgs:
    host: HostConfig
    """The host whose Docker API is filtered."""
    ssh_private_key: pulumi.Input[str]
    allowed_sources: pulumi.Input[Sequence[str]]
    """Networks allowed besides the host itself and its containers (trusted hosts + config)."""
    after: Sequence[pulumi.Resource] = ()
    """Steps that must finish first (Docker's install: the firewall unit orders itself before it)."""


class DockerApiFirewall(pulumi.ComponentResource):
    """The `inet delivery` nftables table and its boot unit on one host."""

    install: command.remote.Command

    def __init__(self, name: str, args: DockerApiFirewallArgs, opts: Optional[pulumi.ResourceOptions] = None) -> None:
        super().__init__("delivery:operations:DockerApiFirewall", name, None, opts)
        files = pulumi.Output.from_input(args.allowed_sources).apply(
            lambda sources: tar_base64(
                [FileSpec(RULES_FILE, 0o644, ruleset(list(sources))), FileSpec(UNIT_FILE, 0o644, systemd_unit())]
            )
        )
        self.install = run_script(
            f"{name}-install",
            host=args.host,
            private_key=args.ssh_private_key,
            script=SCRIPT,
            stdin=files,
            parent=self,
            depends_on=list(args.after),
        )
        self.register_outputs({"stdout": self.install.stdout})
