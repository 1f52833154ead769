"""DockerCa: the certificate authority of the platform's Docker daemons (pulumi-tls).

Trust flows one way: the stack that owns the CA issues every server and client
certificate, including those of daemons managed by other stacks, which read
theirs through `DockerCaReference`.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Optional, Protocol, Sequence

import pulumi
import pulumi_tls as tls

CA_USES = ["cert_signing", "crl_signing", "digital_signature"]
SERVER_USES = ["digital_signature", "key_encipherment", "server_auth"]
CLIENT_USES = ["digital_signature", "key_encipherment", "client_auth"]


@dataclass(frozen=True)
class ServerIdentity:
    """A Docker daemon: its certificate's SANs are exactly the addresses and names clients use."""

    name: str
    ip_addresses: Sequence[str]
    dns_names: Sequence[str] = ()


@dataclass(frozen=True)
class TlsBundle:
    """A certificate and its private key (the key is a secret Output)."""

    cert_pem: pulumi.Output[str]
    key_pem: pulumi.Output[str]


@dataclass(frozen=True)
class DockerCaArgs:
    organization: str
    """Subject organization of every certificate (the platform's domain)."""
    servers: Sequence[ServerIdentity] = ()
    """Daemons that get a server certificate (EKU serverAuth)."""
    clients: Sequence[str] = ("operator", "traefik")
    """Names of client certificates (EKU clientAuth)."""
    ca_validity_hours: int = 10 * 365 * 24
    cert_validity_hours: int = 365 * 24
    early_renewal_hours: int = 30 * 24
    """Certificates are due for renewal this long before they expire (`pulumi up --refresh`)."""


class DockerTrust(Protocol):
    """What a Docker host needs from a CA: the CA certificate and its own bundles."""

    ca_cert_pem: pulumi.Output[str]

    def server(self, name: str) -> TlsBundle: ...

    def client(self, name: str) -> TlsBundle: ...


def _key(name: str, parent: pulumi.Resource, protect: bool = False) -> tls.PrivateKey:
    return tls.PrivateKey(
        name,
        algorithm="ECDSA",
        ecdsa_curve="P256",
        opts=pulumi.ResourceOptions(parent=parent, protect=protect),
    )


class DockerCa(pulumi.ComponentResource):
    """CA key and self-signed certificate (protected), server and client certificates."""

    ca_cert_pem: pulumi.Output[str]
    servers: dict[str, TlsBundle]
    clients: dict[str, TlsBundle]

    def __init__(self, name: str, args: DockerCaArgs, opts: Optional[pulumi.ResourceOptions] = None) -> None:
        super().__init__("delivery:tls:DockerCa", name, None, opts)
        self._args = args

        ca_key = _key(f"{name}-ca-key", self, protect=True)
        ca_cert = tls.SelfSignedCert(
            f"{name}-ca-cert",
            private_key_pem=ca_key.private_key_pem,
            is_ca_certificate=True,
            allowed_uses=CA_USES,
            validity_period_hours=args.ca_validity_hours,
            early_renewal_hours=min(args.early_renewal_hours, args.ca_validity_hours // 2),
            set_subject_key_id=True,
            subject=tls.SelfSignedCertSubjectArgs(
                common_name=f"{args.organization} Docker CA",
                organization=args.organization,
            ),
            opts=pulumi.ResourceOptions(parent=self, protect=True),
        )
        self.ca_cert_pem = ca_cert.cert_pem
        self._ca_key_pem = ca_key.private_key_pem

        self.servers = {
            s.name: self._issue(f"{name}-server-{s.name}", s.name, SERVER_USES, list(s.ip_addresses), list(s.dns_names))
            for s in args.servers
        }
        self.clients = {c: self._issue(f"{name}-client-{c}", c, CLIENT_USES, [], []) for c in args.clients}

        self.register_outputs({"caCertPem": self.ca_cert_pem})

    def _issue(self, prefix: str, common_name: str, uses: list[str], ips: list[str], dns: list[str]) -> TlsBundle:
        key = _key(f"{prefix}-key", self)
        csr = tls.CertRequest(
            f"{prefix}-csr",
            private_key_pem=key.private_key_pem,
            subject=tls.CertRequestSubjectArgs(common_name=common_name, organization=self._args.organization),
            ip_addresses=ips,
            dns_names=dns,
            opts=pulumi.ResourceOptions(parent=self),
        )
        cert = tls.LocallySignedCert(
            f"{prefix}-cert",
            cert_request_pem=csr.cert_request_pem,
            ca_cert_pem=self.ca_cert_pem,
            ca_private_key_pem=self._ca_key_pem,
            allowed_uses=uses,
            validity_period_hours=self._args.cert_validity_hours,
            early_renewal_hours=self._args.early_renewal_hours,
            set_subject_key_id=True,
            opts=pulumi.ResourceOptions(parent=self),
        )
        return TlsBundle(cert_pem=cert.cert_pem, key_pem=pulumi.Output.secret(key.private_key_pem))

    def server(self, name: str) -> TlsBundle:
        return self.servers[name]

    def client(self, name: str) -> TlsBundle:
        return self.clients[name]


#: Outputs the CA-owning stack exports for other stacks (a stable contract).
CA_CERT_OUTPUT = "dockerCaCertPem"
OPERATOR_CLIENT_OUTPUT = "operatorClient"
DELEGATED_SERVERS_OUTPUT = "delegatedDockerServers"


class DockerCaReference(pulumi.ComponentResource):
    """The CA material of another stack (the one that owns `DockerCa`), read through a
    StackReference. A missing output fails the run with the stack and output named."""

    ca_cert_pem: pulumi.Output[str]

    def __init__(self, name: str, stack: str, opts: Optional[pulumi.ResourceOptions] = None) -> None:
        super().__init__("delivery:tls:DockerCaReference", name, None, opts)
        self.stack = stack
        self.ref = pulumi.StackReference(f"{name}-stack", stack_name=stack, opts=pulumi.ResourceOptions(parent=self))
        self.ca_cert_pem = self.require(CA_CERT_OUTPUT)
        self._operator = self.require(OPERATOR_CLIENT_OUTPUT)
        self._servers = self.require(DELEGATED_SERVERS_OUTPUT)
        self.register_outputs({"caCertPem": self.ca_cert_pem})

    def require(self, output: str) -> pulumi.Output:
        """An output of the referenced stack; fails clearly when the stack lacks it."""
        stack = self.stack

        def check(value):
            if value is None:
                raise pulumi.RunError(
                    f"stack {stack!r} has no output {output!r}: run `pulumi up` on {stack!r} first "
                    f"(productionStack names it), or check that it is the stack that owns the Docker CA"
                )
            return value

        return self.ref.get_output(output).apply(check)

    def require_key(self, output: str, value: pulumi.Output, *path: str) -> pulumi.Output:
        stack = self.stack

        def dig(v):
            for p in path:
                if not isinstance(v, dict) or p not in v:
                    raise pulumi.RunError(
                        f"stack {stack!r} output {output!r} has no entry {'.'.join(path)!r}: "
                        f"add it to that stack's config (reviewAppsDaemon) and run `pulumi up` on it"
                    )
                v = v[p]
            return v

        return value.apply(dig)

    def server(self, name: str) -> TlsBundle:
        return TlsBundle(
            cert_pem=self.require_key(DELEGATED_SERVERS_OUTPUT, self._servers, name, "certPem"),
            key_pem=pulumi.Output.secret(self.require_key(DELEGATED_SERVERS_OUTPUT, self._servers, name, "keyPem")),
        )

    def client(self, name: str) -> TlsBundle:
        if name != "operator":
            raise KeyError(f"only the operator client certificate is shared across stacks, not {name!r}")
        return TlsBundle(
            cert_pem=self.require_key(OPERATOR_CLIENT_OUTPUT, self._operator, "certPem"),
            key_pem=pulumi.Output.secret(self.require_key(OPERATOR_CLIENT_OUTPUT, self._operator, "keyPem")),
        )
