"""The certificate authorities of the platform's Docker daemons (pulumi-tls), in two trust
domains (docs/services.md, "Trust domains"):

* production (`docker-ca`): the daemons of Production and Services trust only this CA; it
  signs their server certificates and the operator's client certificate;
* staging (`docker-staging-ca`): signs the server certificate of the review-app daemon
  (Staging), the review Traefik's client certificate and the client certificate the staging
  stack deploys with. Staging's daemon trusts both CAs (the operator's one certificate opens
  all three daemons); no key of this domain opens Production's or Services' daemon.

Trust flows one way: the stack that owns the CAs (`DockerTrust`) issues every certificate,
including those of daemons managed by other stacks, which read theirs through
`DockerTrustReference`.
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
    clients: Sequence[str] = ("operator",)
    """Names of client certificates (EKU clientAuth)."""
    ca_validity_hours: int = 10 * 365 * 24
    cert_validity_hours: int = 365 * 24
    early_renewal_hours: int = 30 * 24
    """Certificates are due for renewal this long before they expire (`pulumi up --refresh`)."""
    protect: bool = True
    """`protect` on the CA's key and certificate; False only for a CA being retired (a rotation's
    `switch` phase), so that the next `pulumi up` may delete it."""


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

        ca_key = _key(f"{name}-ca-key", self, protect=args.protect)
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
            opts=pulumi.ResourceOptions(parent=self, protect=args.protect),
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


#: Outputs the CA-owning stack exports for other stacks (a stable contract; README).
CA_CERT_OUTPUT = "dockerCaCertPem"
STAGING_CA_CERT_OUTPUT = "dockerStagingCaCertPem"
OPERATOR_CLIENT_OUTPUT = "operatorClient"
DELEGATED_SERVERS_OUTPUT = "delegatedDockerServers"

#: Client certificates of the staging trust domain.
REVIEW_TRAEFIK_CLIENT = "review-traefik"
"""The review Traefik's: it watches the review-app daemon and opens nothing else."""
STAGING_DEPLOYER_CLIENT = "staging-deployer"
"""What the staging stack deploys with (its Docker provider): opens the review-app daemon only."""


@dataclass(frozen=True)
class DaemonTls:
    """Everything one Docker daemon and the program's provider for it need."""

    trust_pem: pulumi.Output[str]
    """The CA bundle the daemon verifies clients with (its ca.pem)."""
    server: TlsBundle
    """The daemon's server certificate and key."""
    server_ca_pem: pulumi.Output[str]
    """The CA that issued the server certificate: clients verify the daemon with it."""
    client: TlsBundle
    """The client certificate this stack's Docker provider uses for the daemon."""


class DockerTrustDomains(Protocol):
    """What the stack needs from the Docker PKI, whether it owns it or reads it."""

    operator: TlsBundle
    operator_ca_pem: pulumi.Output[str]

    def daemon(self, name: str) -> DaemonTls: ...


def _bundle(*pems: pulumi.Input[str]) -> pulumi.Output[str]:
    """PEM certificates concatenated, each ending in one newline."""
    return pulumi.Output.all(*pems).apply(lambda ps: "".join(p if p.endswith("\n") else p + "\n" for p in ps))


class DaemonIdentityLike(Protocol):
    name: str
    address: str
    port: int
    dns_names: Sequence[str]


#: Phases of a CA rotation (docs/operations.md, "Docker CA rotation"), one `pulumi up` each.
ROTATION_NONE, ROTATION_TRUST, ROTATION_SWITCH = "none", "trust", "switch"


def ca_resource_name(base: str, generation: int) -> str:
    """The component name of a CA generation: the first keeps the name stacks already have."""
    return base if generation == 1 else f"{base}-g{generation}"


@dataclass(frozen=True)
class DockerTrustArgs:
    organization: str
    production_servers: Sequence[ServerIdentity]
    """Daemons of the production trust domain (Production, Services)."""
    staging_servers: Sequence[ServerIdentity]
    """Review-app daemons (Staging), managed here or by the staging stack."""
    operator_clients: Sequence[str] = ("operator",)
    """Client certificates of the production domain (`dockerClients`); `operator` opens every daemon."""
    ca_validity_hours: int = 10 * 365 * 24
    cert_validity_hours: int = 365 * 24
    early_renewal_hours: int = 30 * 24
    ca_generation: int = 1
    """`dockerCaGeneration`: the generation of both CAs that issues certificates."""
    rotation: str = ROTATION_NONE
    """`dockerCaRotation`: none, or the phase of a rotation to generation + 1:

    * trust:  generation + 1 exists (its CA only); every daemon trusts both generations and
      every client verifies daemons with both; certificates still come from `generation`;
    * switch: generation + 1 issues every server and client certificate (the old ones are
      deleted); both still trusted; the old CA is unprotected (it signs nothing any more).

    Then `dockerCaGeneration: generation + 1` with `dockerCaRotation: none` deletes the old CA
    and leaves only the new one trusted."""


class DockerTrust:
    """The two CAs of the stack that owns the Docker PKI (not a component: each CA is one, and
    keeps the resource names of a single-CA stack for the production domain). During a
    rotation each domain has two generations: the one that issues (`production`, `staging`)
    and the other one (`retiring` or `next`), trusted alongside."""

    def __init__(self, args: DockerTrustArgs) -> None:
        def ca(base: str, generation: int, servers: Sequence[ServerIdentity], clients: Sequence[str], protect: bool = True) -> DockerCa:
            return DockerCa(
                ca_resource_name(base, generation),
                DockerCaArgs(
                    organization=args.organization,
                    servers=servers,
                    clients=clients,
                    ca_validity_hours=args.ca_validity_hours,
                    cert_validity_hours=args.cert_validity_hours,
                    early_renewal_hours=args.early_renewal_hours,
                    protect=protect,
                ),
            )

        def domain(base: str, servers: Sequence[ServerIdentity], clients: Sequence[str]) -> tuple[DockerCa, list[DockerCa]]:
            """(the issuing CA, the other generation trusted alongside it)."""
            gen = args.ca_generation
            if args.rotation == ROTATION_TRUST:
                return ca(base, gen, servers, clients), [ca(base, gen + 1, (), ())]
            if args.rotation == ROTATION_SWITCH:
                retiring = ca(base, gen, (), (), protect=False)
                return ca(base, gen + 1, servers, clients), [retiring]
            return ca(base, gen, servers, clients), []

        self.rotation = args.rotation
        self.production, production_other = domain("docker-ca", args.production_servers, args.operator_clients)
        self.staging, staging_other = domain(
            "docker-staging-ca", args.staging_servers, (REVIEW_TRAEFIK_CLIENT, STAGING_DEPLOYER_CLIENT)
        )
        #: Every CA the daemons of a domain trust, and clients verify them with (two during a rotation).
        self.production_trust_pem = _bundle(self.production.ca_cert_pem, *(c.ca_cert_pem for c in production_other))
        self.staging_trust_pem = _bundle(self.staging.ca_cert_pem, *(c.ca_cert_pem for c in staging_other))
        self._staging_names = {s.name for s in args.staging_servers}
        self.operator = self.production.client("operator")
        #: The operator verifies every daemon: both domains' CAs.
        self.operator_ca_pem = _bundle(self.production_trust_pem, self.staging_trust_pem)
        self.review_client = self.staging.client(REVIEW_TRAEFIK_CLIENT)

    def daemon(self, name: str) -> DaemonTls:
        if name in self._staging_names:
            return DaemonTls(
                trust_pem=self.operator_ca_pem,
                server=self.staging.server(name),
                server_ca_pem=self.staging_trust_pem,
                client=self.operator,
            )
        return DaemonTls(
            trust_pem=self.production_trust_pem,
            server=self.production.server(name),
            server_ca_pem=self.production_trust_pem,
            client=self.operator,
        )

    def delegated(self, identity: "DaemonIdentityLike") -> pulumi.Output[dict]:
        """What the stack that manages the review-app daemon receives (secret): the daemon's own
        TLS, a client certificate that opens that daemon only, and the daemon as this stack
        declared it (the staging stack checks its own host against it)."""
        name = identity.name
        deployer = self.staging.client(STAGING_DEPLOYER_CLIENT)
        server = self.staging.server(name)
        return pulumi.Output.secret(
            pulumi.Output.all(
                certPem=server.cert_pem,
                keyPem=server.key_pem,
                caPem=self.staging_trust_pem,
                trustPem=self.operator_ca_pem,
                client=pulumi.Output.all(certPem=deployer.cert_pem, keyPem=deployer.key_pem),
                identity={"address": identity.address, "port": identity.port, "dnsNames": list(identity.dns_names)},
            )
        )


class DockerTrustReference(pulumi.ComponentResource):
    """The Docker PKI of the stack that owns it, read through a StackReference: only what the
    review-app daemons of this stack need (`delegatedDockerServers.<name>`). A missing output or
    entry fails the run with the stack and output named."""

    def __init__(self, name: str, stack: str, opts: Optional[pulumi.ResourceOptions] = None) -> None:
        super().__init__("delivery:tls:DockerCaReference", name, None, opts)
        self.stack = stack
        self.ref = pulumi.StackReference(f"{name}-stack", stack_name=stack, opts=pulumi.ResourceOptions(parent=self))
        self._servers = self.require(DELEGATED_SERVERS_OUTPUT)
        self.register_outputs({})

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

    def _entry(self, name: str, *path: str) -> pulumi.Output:
        stack = self.stack

        def dig(v):
            for p in (name, *path):
                if not isinstance(v, dict) or p not in v:
                    raise pulumi.RunError(
                        f"stack {stack!r} output {DELEGATED_SERVERS_OUTPUT!r} has no entry {'.'.join((name, *path))!r}: "
                        f"set that stack's reviewAppsDaemon to this host and run `pulumi up` on it"
                    )
                v = v[p]
            return v

        return self._servers.apply(dig)

    def daemon(self, name: str) -> DaemonTls:
        return DaemonTls(
            trust_pem=self._entry(name, "trustPem"),
            server=TlsBundle(cert_pem=self._entry(name, "certPem"), key_pem=pulumi.Output.secret(self._entry(name, "keyPem"))),
            server_ca_pem=self._entry(name, "caPem"),
            client=self.client_for(name),
        )

    def client_for(self, name: str) -> TlsBundle:
        return TlsBundle(
            cert_pem=self._entry(name, "client", "certPem"),
            key_pem=pulumi.Output.secret(self._entry(name, "client", "keyPem")),
        )

    def identity(self, name: str) -> pulumi.Output:
        """The daemon as the production stack declared it ({address, port, dnsNames}); None when
        that stack predates the entry."""
        return self._servers.apply(lambda v: (v.get(name) or {}).get("identity") if isinstance(v, dict) else None)
