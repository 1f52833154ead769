"""Pulumi mocks for the program's tests, and a runner that evaluates a stack under them.

`run_stack(config, ...)` sets the mocks and the stack config, runs
`components.stack.build` (exactly what `__main__.py` runs) and returns a
`StackRun`: every registered resource (type, name, URN, parent, inputs with
their secret flags, options) and every stack output with its secret flag.
"""

from __future__ import annotations

import functools
import json
import os
import sys
import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Optional

import pulumi
import pytest
from google.protobuf import json_format
from pulumi.runtime import rpc
from pulumi.runtime.mocks import MockMonitor

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "tests"))

PROJECT = "delivery"
SECRET_SIG = rpc._special_secret_sig  # noqa: SLF001 - the wire marker of a secret value
SIG_KEY = rpc._special_sig_key  # noqa: SLF001


def is_secret_value(v: Any) -> bool:
    return isinstance(v, dict) and v.get(SIG_KEY) == SECRET_SIG


def unwrap(v: Any) -> Any:
    """Inputs as plain values (secret markers removed)."""
    if is_secret_value(v):
        return unwrap(v["value"])
    if isinstance(v, dict):
        return {k: unwrap(x) for k, x in v.items()}
    if isinstance(v, list):
        return [unwrap(x) for x in v]
    return v


def fake_pem(kind: str, name: str) -> str:
    return f"-----BEGIN {kind}-----\nMOCK{name}\n-----END {kind}-----\n"


@functools.lru_cache(maxsize=None)
def ca_certificate_pem(name: str) -> str:
    """A real self-signed CA certificate (PEM) named `name`, for config values that are parsed."""
    import datetime as dt

    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)])
    now = dt.datetime.now(dt.timezone.utc)
    cert = (
        x509.CertificateBuilder().subject_name(subject).issuer_name(subject).public_key(key.public_key())
        .serial_number(x509.random_serial_number()).not_valid_before(now).not_valid_after(now + dt.timedelta(days=30))
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    return cert.public_bytes(serialization.Encoding.PEM).decode()


class PlatformMocks(pulumi.runtime.Mocks):
    """Deterministic outputs for the resources the program creates."""

    def __init__(
        self,
        stack_outputs: Optional[dict[str, dict[str, Any]]] = None,
        secret_output_names: tuple[str, ...] = ("operatorClient", "delegatedDockerServers"),
    ) -> None:
        self.stack_outputs = stack_outputs or {}
        self.secret_output_names = secret_output_names

    def new_resource(self, args: pulumi.runtime.MockResourceArgs):
        state = dict(args.inputs)
        t, n = args.typ, args.name
        if t == "tls:index/privateKey:PrivateKey":
            state.update(
                privateKeyPem=fake_pem("EC PRIVATE KEY", n),
                privateKeyPemPkcs8=fake_pem("PRIVATE KEY", n),
                publicKeyPem=fake_pem("PUBLIC KEY", n),
                privateKeyOpenssh=fake_pem("OPENSSH PRIVATE KEY", n),
                publicKeyOpenssh=f"ecdsa-sha2-nistp256 MOCK{n}\n",
            )
        elif t in ("tls:index/selfSignedCert:SelfSignedCert", "tls:index/locallySignedCert:LocallySignedCert"):
            state.update(certPem=fake_pem("CERTIFICATE", n), readyForRenewal=False)
        elif t == "tls:index/certRequest:CertRequest":
            state.update(certRequestPem=fake_pem("CERTIFICATE REQUEST", n))
        elif t == "command:remote:Command":
            state.update(stdout="unchanged", stderr="")
        elif t == "docker:index/remoteImage:RemoteImage":
            state.update(imageId=f"sha256:{abs(hash(args.inputs.get('name'))):064x}"[:71], repoDigest=f"{args.inputs.get('name')}@sha256:{'0' * 64}")
        elif t == "gitlab:index/userRunner:UserRunner":
            state.update(token=f"glrt-mock-{n}")
            return str(7000 + sum(map(ord, n)) % 1000), state  # GitLab's runner IDs are numbers
        elif t == "pulumi:pulumi:StackReference":
            name = args.inputs.get("name") or args.resource_id or n
            outputs = self.stack_outputs.get(name)
            if outputs is None and name == f"organization/{PROJECT}/{pulumi.get_stack()}":
                outputs = {}  # the stack's own previous outputs (the GitLab upgrade gate): a fresh stack
            if outputs is None:
                raise Exception(f"unknown stack {name!r}")
            secret = [k for k in outputs if k in self.secret_output_names]
            state = {"name": name, "outputs": outputs, "secretOutputNames": secret}
        return f"{n}-id", state

    def call(self, args: pulumi.runtime.MockCallArgs):
        if args.token == "gitlab:index/getProject:getProject":
            path = args.args.get("pathWithNamespace", "group/app")
            return {"id": "42", "name": path.rsplit("/", 1)[-1], "pathWithNamespace": path, "defaultBranch": "master"}, []
        if args.token == "gitlab:index/getGroup:getGroup":
            path = args.args.get("fullPath", "group")
            return {"id": "7", "groupId": 7, "fullPath": path}, []
        return {}, []


@dataclass
class Registration:
    urn: str
    type: str
    name: str
    parent: str
    custom: bool
    inputs: dict[str, Any]
    protect: bool
    dependencies: list[str]
    provider: str
    additional_secret_outputs: list[str]
    replace_on_changes: list[str]
    delete_before_replace: bool
    retain_on_delete: bool
    replacement_trigger: Any = None
    import_id: str = ""

    @property
    def plain(self) -> dict[str, Any]:
        return unwrap(self.inputs)

    def secret(self, key: str) -> bool:
        return is_secret_value(self.inputs.get(key))


#: The RegisterResource request being handled on this thread: mocks that need a resource's
#: options (delete_before_replace, replacement_trigger, ...) read them here; the SDK calls
#: Mocks.new_resource synchronously inside MockMonitor.RegisterResource.
CURRENT_REGISTRATION = threading.local()


class RecordingMonitor(MockMonitor):
    """The SDK's mock monitor, also recording what each registration asked for."""

    def __init__(self, mocks: pulumi.runtime.Mocks) -> None:
        super().__init__(mocks)
        self.registrations: list[Registration] = []
        #: URN -> what the component registered with register_outputs (kept in the state too).
        self.resource_outputs: dict[str, dict[str, Any]] = {}

    def RegisterResourceOutputs(self, request):  # noqa: N802 - gRPC method name
        self.resource_outputs[request.urn] = rpc.deserialize_properties(request.outputs, keep_internal=False)
        return super().RegisterResourceOutputs(request)

    def RegisterResource(self, request):  # noqa: N802 - gRPC method name
        CURRENT_REGISTRATION.request = request
        try:
            response = super().RegisterResource(request)
        finally:
            CURRENT_REGISTRATION.request = None
        if request.type != "pulumi:pulumi:Stack":
            self.registrations.append(
                Registration(
                    urn=response.urn,
                    type=request.type,
                    name=request.name,
                    parent=request.parent,
                    custom=request.custom,
                    inputs=rpc.deserialize_properties(request.object, keep_internal=False),
                    protect=request.protect,
                    dependencies=list(request.dependencies),
                    provider=request.provider,
                    additional_secret_outputs=list(request.additionalSecretOutputs),
                    replace_on_changes=list(request.replaceOnChanges),
                    delete_before_replace=request.deleteBeforeReplace,
                    retain_on_delete=request.retainOnDelete,
                    replacement_trigger=(
                        json_format.MessageToDict(request.replacement_trigger)
                        if request.HasField("replacement_trigger")
                        else None
                    ),
                    import_id=request.importId,
                )
            )
        return response


@dataclass
class StackRun:
    registrations: list[Registration]
    outputs: dict[str, Any] = field(default_factory=dict)
    secret_outputs: set[str] = field(default_factory=set)
    resource_outputs: dict[str, dict[str, Any]] = field(default_factory=dict)
    """URN -> the outputs a component registered (register_outputs), secrets still marked."""

    def of_type(self, typ: str) -> list[Registration]:
        return [r for r in self.registrations if r.type == typ]

    def named(self, name: str) -> Registration:
        found = [r for r in self.registrations if r.name == name]
        assert len(found) == 1, f"expected one resource named {name!r}, found {[r.urn for r in found]}"
        return found[0]

    def by_urn(self, urn: str) -> Registration:
        return next(r for r in self.registrations if r.urn == urn)

    def children_of(self, parent: Registration) -> list[Registration]:
        return [r for r in self.registrations if r.parent == parent.urn]


def run_program(
    program: Callable[[], dict[str, Any]],
    config: dict[str, Any],
    *,
    secrets: tuple[str, ...] = (),
    stack: str = "production",
    stack_outputs: Optional[dict[str, dict[str, Any]]] = None,
    mocks: Optional[pulumi.runtime.Mocks] = None,
    preview: bool = False,
) -> StackRun:
    """Evaluate `program` under mocks with `config` (unprefixed keys; non-strings are JSON)."""
    mocks = mocks or PlatformMocks(stack_outputs)
    wrapped = wrap_with_contract(mocks)
    monitor = RecordingMonitor(wrapped)
    pulumi.runtime.set_mocks(wrapped, project=PROJECT, stack=stack, preview=preview, monitor=monitor)
    pulumi.runtime.set_all_config(
        {f"{PROJECT}:{k}": v if isinstance(v, str) else json.dumps(v) for k, v in config.items()},
        secret_keys=[f"{PROJECT}:{k}" for k in secrets],
    )
    run = StackRun(monitor.registrations, resource_outputs=monitor.resource_outputs)

    async def collect(outputs: dict[str, Any]) -> None:
        for key, value in outputs.items():
            out = pulumi.Output.from_input(value)
            run.outputs[key] = await out.future()
            if await out.is_secret():
                run.secret_outputs.add(key)

    @pulumi.runtime.test
    def evaluate():
        return collect(program())

    try:
        evaluate()
    except BaseException:
        _cancel_leftovers()
        raise
    return run


def _cancel_leftovers() -> None:
    """After a failed run, cancel its outstanding tasks so that they cannot fail the next run
    (they share the event loop and the SDK's RPC manager)."""
    import asyncio

    from pulumi.runtime.settings import SETTINGS
    from pulumi.runtime.sync_await import _ensure_event_loop

    loop = _ensure_event_loop()
    pending = [t for t in asyncio.all_tasks(loop) if not t.done()]
    for task in pending:
        task.cancel()
    if pending:
        loop.run_until_complete(asyncio.gather(*pending, return_exceptions=True))
    SETTINGS.rpc_manager.clear()


def wrap_with_contract(mocks: pulumi.runtime.Mocks) -> pulumi.runtime.Mocks:
    """Check every registration and invoke against the providers' schemas when available."""
    if os.environ.get("DELIVERY_SKIP_CONTRACT") == "1":
        return mocks
    from contract import ContractMocks  # tests/contract.py

    return ContractMocks(mocks)


def run_stack(config: dict[str, Any], **kwargs: Any) -> StackRun:
    """Evaluate the real program (components.stack.build) for a stack config."""
    from components.config import load_stack_config
    from components.stack import build

    return run_program(lambda: build(load_stack_config()), config, **kwargs)


# -- example stacks (the seed's topology) -------------------------------------
SSH_KEY = "-----BEGIN OPENSSH PRIVATE KEY-----\nMOCKKEY\n-----END OPENSSH PRIVATE KEY-----\n"
PRODUCTION_STACK = "organization/delivery/production"
# Secret values of the example production config: tests check they never leak.
GITLAB_ROOT_PASSWORD = "Mock-root-passw0rd-7Qx"
DNS_API_TOKEN = "mock-dns-api-token-4Kd9"
DASHBOARD_USERS = "admin:$2y$05$Yjbx6uDjVn.KmF.QfdNASef9tXCH2kTE8mBb8xF2ir.HGy.mN3V9q"


#: Pinned SSH host keys of the example hosts (ECDSA, as `ssh-keyscan -t ecdsa <address>` prints them).
HOST_KEYS = {
    "production": "ecdsa-sha2-nistp256 AAAAE2VjZHNhLXNoYTItbmlzdHAyNTYAAAAIbmlzdHAyNTYAAABBBIthd6IUJv1sJOvtrR5R6qN3qy+0hjU5vjyaaUvYIgv8X8mSE97VA05vDlskBqyOrZ0qAPmhF/LbOJHYS8T1Wh4=",
    "services": "ecdsa-sha2-nistp256 AAAAE2VjZHNhLXNoYTItbmlzdHAyNTYAAAAIbmlzdHAyNTYAAABBBMgwpeW/D5GgFXAfijFHfGSph5SJNR7MO2U7l6zgKMT8B0HYHm1oon6ptFqy36keQHdpVTRDUtIMnT1e2+Mf6Js=",
    "staging": "ecdsa-sha2-nistp256 AAAAE2VjZHNhLXNoYTItbmlzdHAyNTYAAAAIbmlzdHAyNTYAAABBBD9YBlgUZqOYZhOGg+8gXXRUYjWun8UbTK6SVj04QvThx9ZlACicC5FSkD+1g73eYwkjMngjGw8ino3TVcY6gg4=",
}
#: The pinned key of any other test host.
HOST_KEY = HOST_KEYS["production"]


def production_config(**overrides: Any) -> dict[str, Any]:
    cfg: dict[str, Any] = {
        "domain": "company.ru",
        "timezone": "Europe/Volgograd",
        "sshPrivateKey": SSH_KEY,
        "hosts": [
            {"name": "production", "address": "192.168.88.1", "hostKey": HOST_KEYS["production"], "roles": ["traefik", "production-runner"]},
            {"name": "services", "address": "192.168.88.2", "hostKey": HOST_KEYS["services"], "roles": ["gitlab"]},
        ],
        "reviewAppsDaemon": {"name": "staging", "address": "192.168.88.3"},
        "ciProject": "group/app",
        # Platform services (docs/services.md); the secrets are in PRODUCTION_SECRETS.
        "gitlabRootPassword": GITLAB_ROOT_PASSWORD,
        "acmeEmail": "mail@company.ru",
        "dnsProvider": "cloudflare",
        "dnsCredentials": {"CF_DNS_API_TOKEN": DNS_API_TOKEN},
        "traefikDashboardUsers": DASHBOARD_USERS,
        "productionApps": [{"name": "demo", "host": "company.ru", "url": "http://192.168.88.1:8000"}],
    }
    cfg.update(overrides)
    return cfg


def staging_config(**overrides: Any) -> dict[str, Any]:
    cfg: dict[str, Any] = {
        "domain": "company.ru",
        "timezone": "Europe/Volgograd",
        "sshPrivateKey": SSH_KEY,
        "productionStack": PRODUCTION_STACK,
        "runnerScope": {"project": "group/app"},
        "hosts": [{"name": "staging", "address": "192.168.88.3", "hostKey": HOST_KEYS["staging"], "roles": ["review-apps", "staging-runner"]}],
    }
    cfg.update(overrides)
    return cfg


PRODUCTION_SECRETS = (
    "sshPrivateKey", "gitlabToken", "dnsProviderApiToken", "ciSecretVariables",
    "gitlabRootPassword", "dnsCredentials", "traefikDashboardUsers", "dnsExecScript",
    "backupRepository", "backupPassword", "backupSftpPrivateKey", "backupCredentials", "backupWebhookUrl",
)


def production_outputs() -> dict[str, Any]:
    """What the production stack exports for the staging stack (as the mocks return it)."""
    return {
        "dockerCaCertPem": fake_pem("CERTIFICATE", "ca"),
        "dockerStagingCaCertPem": fake_pem("CERTIFICATE", "staging-ca"),
        "operatorClient": {
            "caPem": fake_pem("CERTIFICATE", "ca") + fake_pem("CERTIFICATE", "staging-ca"),
            "certPem": fake_pem("CERTIFICATE", "operator"),
            "keyPem": fake_pem("EC PRIVATE KEY", "operator"),
        },
        "delegatedDockerServers": {
            "staging": {
                "certPem": fake_pem("CERTIFICATE", "staging"),
                "keyPem": fake_pem("EC PRIVATE KEY", "staging"),
                "caPem": fake_pem("CERTIFICATE", "staging-ca"),
                "trustPem": fake_pem("CERTIFICATE", "ca") + fake_pem("CERTIFICATE", "staging-ca"),
                "client": {
                    "certPem": fake_pem("CERTIFICATE", "staging-deployer"),
                    "keyPem": fake_pem("EC PRIVATE KEY", "staging-deployer"),
                },
                "identity": {"address": "192.168.88.3", "port": 2376, "dnsNames": []},
            }
        },
        "gitlabUrl": "https://gitlab.company.ru",
        "dockerEndpoints": {"production": "tcp://192.168.88.1:2376", "services": "tcp://192.168.88.2:2376"},
    }


@pytest.fixture
def production_run() -> StackRun:
    return run_stack(production_config(), secrets=PRODUCTION_SECRETS)


@pytest.fixture
def staging_run() -> StackRun:
    return run_stack(
        staging_config(), secrets=PRODUCTION_SECRETS, stack="staging", stack_outputs={PRODUCTION_STACK: production_outputs()}
    )
