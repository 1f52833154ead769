"""The provider contract (tests/contract.py) accepts what the providers accept and rejects
wrong names, missing required inputs, wrong types and wrong enum values, naming the resource
and the key."""

from __future__ import annotations

import gc
import json
from pathlib import Path
from typing import Callable, Optional

import pulumi
import pulumi_command as command
import pulumi_docker as docker
import pulumi_gitlab as gitlab
import pulumi_tls as tls
import pytest

from contract import (
    SCHEMA_FILES,
    SDK_VERSION_DIFFERENCES,
    ContractMocks,
    ProviderContract,
    default_schema_dir,
)

CONTAINER = "docker:index/container:Container"
USER_RUNNER = "gitlab:index/userRunner:UserRunner"
GET_PROJECT = "gitlab:index/getProject:getProject"

# Outputs a provider would return; the contract needs them because, under mocks with
# preview=False, an input fed from an output the mocks did not return is dropped.
REALISTIC_OUTPUTS = {
    "docker:index/remoteImage:RemoteImage": {"imageId": "sha256:0123abcd", "repoDigest": "x@sha256:0"},
    "tls:index/privateKey:PrivateKey": {"privateKeyPem": "-----BEGIN PRIVATE KEY-----\n"},
    "tls:index/selfSignedCert:SelfSignedCert": {"certPem": "-----BEGIN CERTIFICATE-----\n"},
    "tls:index/certRequest:CertRequest": {"certRequestPem": "-----BEGIN CERTIFICATE REQUEST-----\n"},
    "gitlab:index/userRunner:UserRunner": {"token": "glrt-test"},
}


class RecordingMocks(pulumi.runtime.Mocks):
    """Inner mocks: echo inputs plus realistic outputs, and record what was registered."""

    def __init__(self) -> None:
        self.types: list[str] = []
        self.calls: list[str] = []

    def new_resource(self, args: pulumi.runtime.MockResourceArgs):
        self.types.append(args.typ)
        return f"{args.name}_id", {**args.inputs, **REALISTIC_OUTPUTS.get(args.typ, {})}

    def call(self, args: pulumi.runtime.MockCallArgs):
        self.calls.append(args.token)
        if args.token == GET_PROJECT:
            return {"id": "42", "pathWithNamespace": "delivery/app"}
        return {}


class EchoMocks(RecordingMocks):
    """Inner mocks that return only the inputs: every other output stays unknown."""

    def new_resource(self, args: pulumi.runtime.MockResourceArgs):
        self.types.append(args.typ)
        return f"{args.name}_id", dict(args.inputs)


def run_program(
    program: Callable[[], object], inner: Optional[RecordingMocks] = None, preview: bool = False
) -> ContractMocks:
    """Run ``program`` with @pulumi.runtime.test under ContractMocks(inner)."""
    mocks = ContractMocks(inner if inner is not None else RecordingMocks())
    pulumi.runtime.set_mocks(mocks, project="delivery", stack="test", preview=preview)
    try:
        pulumi.runtime.test(program)()
    except AssertionError:
        # A rejected registration also fails every output future of the resource; collect them
        # now, under pytest's log capture, not as "Future exception was never retrieved" at exit.
        gc.collect()
        raise
    return mocks


@pytest.fixture
def contract() -> ProviderContract:
    return ProviderContract.default()


# ---- correct resources pass ----------------------------------------------------------------


def test_correct_docker_container_passes():
    inner = RecordingMocks()

    def program():
        image = docker.RemoteImage("traefik-image", name="traefik:v3.3", keep_locally=True)
        container = docker.Container(
            "traefik",
            image=image.image_id,
            name="traefik",
            restart="unless-stopped",
            ports=[docker.ContainerPortArgs(internal=443, external=443, protocol="tcp")],
            envs=[pulumi.Output.secret("TOKEN=s3cret"), "MODE=prod"],
            labels=[docker.ContainerLabelArgs(label="traefik.enable", value="true")],
            networks_advanced=[docker.ContainerNetworksAdvancedArgs(name="edge", aliases=["proxy"])],
            healthcheck=docker.ContainerHealthcheckArgs(tests=["CMD", "true"], interval="10s", retries=3),
            uploads=[docker.ContainerUploadArgs(file="/etc/traefik/traefik.yml", content="x: 1\n")],
            log_opts={"max-size": "10m"},
        )
        return container.id

    mocks = run_program(program, inner)

    assert CONTAINER in inner.types, inner.types
    assert mocks.violations == []


def test_correct_remote_command_passes():
    inner = RecordingMocks()

    def program():
        connection = command.remote.ConnectionArgs(
            host="203.0.113.10", user="deploy", private_key=pulumi.Output.secret("KEY")
        )
        cmd = command.remote.Command(
            "install-docker",
            connection=connection,
            create="sh install.sh",
            stdin=pulumi.Output.secret("secret input"),
            environment={"DEBIAN_FRONTEND": "noninteractive"},
            triggers=["v1"],
            add_previous_output_in_env=False,
            logging=command.remote.Logging.STDERR,
        )
        return cmd.id

    mocks = run_program(program, inner)

    assert "command:remote:Command" in inner.types, inner.types
    assert mocks.violations == []


def test_correct_tls_locally_signed_cert_passes():
    inner = RecordingMocks()

    def program():
        ca_key = tls.PrivateKey("ca-key", algorithm="ECDSA", ecdsa_curve="P256")
        ca = tls.SelfSignedCert(
            "ca",
            private_key_pem=ca_key.private_key_pem,
            allowed_uses=["cert_signing", "crl_signing", "digital_signature"],
            validity_period_hours=87600,
            is_ca_certificate=True,
            subject=tls.SelfSignedCertSubjectArgs(common_name="delivery CA"),
        )
        key = tls.PrivateKey("server-key", algorithm="ECDSA", ecdsa_curve="P256")
        csr = tls.CertRequest(
            "server-csr",
            private_key_pem=key.private_key_pem,
            ip_addresses=["203.0.113.10"],
            subject=tls.CertRequestSubjectArgs(common_name="docker"),
        )
        cert = tls.LocallySignedCert(
            "server-cert",
            cert_request_pem=csr.cert_request_pem,
            ca_cert_pem=ca.cert_pem,
            ca_private_key_pem=ca_key.private_key_pem,
            allowed_uses=["digital_signature", "key_encipherment", "server_auth"],
            validity_period_hours=8760,
            early_renewal_hours=720,
        )
        return cert.id

    mocks = run_program(program, inner)

    assert "tls:index/locallySignedCert:LocallySignedCert" in inner.types, inner.types
    assert mocks.violations == []


def test_correct_gitlab_user_runner_and_get_project_pass():
    inner = RecordingMocks()

    def program():
        project = gitlab.get_project_output(path_with_namespace="delivery/app")
        runner = gitlab.UserRunner(
            "runner",
            runner_type="project_type",
            project_id=project.id.apply(int),
            tag_lists=["docker"],
            untagged=False,
            maximum_timeout=3600,
            access_level="not_protected",
        )
        return runner.id

    mocks = run_program(program, inner)

    assert USER_RUNNER in inner.types and GET_PROJECT in inner.calls, (inner.types, inner.calls)
    assert mocks.violations == []


def test_copy_to_remote_accepts_assets_and_archives(contract):
    inputs = {"connection": {"host": "h"}, "remotePath": "/etc/x"}
    for source in (pulumi.StringAsset("text"), pulumi.FileAsset(__file__), pulumi.FileArchive(".")):
        assert contract.check_resource(
            "command:remote:CopyToRemote", "copy", {**inputs, "source": source}, True
        ) == [], source

    assert contract.check_resource(
        "command:remote:CopyToRemote", "copy", {**inputs, "source": "/etc/x"}, True
    ) == ['command:remote:CopyToRemote "copy": source: expected asset or archive, got str \'/etc/x\'']


# ---- wrong argument names ------------------------------------------------------------------


def test_misspelled_container_argument_is_reported_by_check_resource(contract):
    found = contract.check_resource(
        CONTAINER, "gitlab", {"image": "sha256:0", "healthCheck": {"tests": ["CMD", "true"]}}, True
    )

    assert found == [
        f'{CONTAINER} "gitlab": unknown input "healthCheck" (did you mean "healthcheck"?)'
    ]


def test_misspelled_container_argument_fails_the_program_under_mocks():
    def program():
        pulumi.CustomResource(
            CONTAINER, "gitlab", props={"image": "sha256:0", "healthCheck": {"tests": ["CMD"]}}
        )

    with pytest.raises(AssertionError, match=rf'{CONTAINER} "gitlab": unknown input "healthCheck"'):
        run_program(program)


def test_unknown_key_in_nested_object_is_reported(contract):
    found = contract.check_resource(
        CONTAINER, "web", {"image": "sha256:0", "ports": [{"internal": 80, "externalPort": 8080}]}, True
    )

    assert found == [
        f'{CONTAINER} "web": unknown input "ports[0].externalPort" '
        '(not in docker:index/ContainerPort:ContainerPort) (did you mean "external"?)'
    ]


def test_unknown_resource_type_is_reported(contract):
    found = contract.check_resource("docker:index/containr:Container", "web", {"image": "x"}, True)

    assert len(found) == 1 and found[0].startswith(
        'docker:index/containr:Container "web": unknown resource type'
    ), found


# ---- missing required inputs ---------------------------------------------------------------


def test_container_without_image_is_reported(contract):
    found = contract.check_resource(CONTAINER, "web", {"name": "web"}, True)

    assert found == [f'{CONTAINER} "web": missing required input "image"']


def test_user_runner_without_runner_type_fails_the_program_under_mocks():
    def program():
        pulumi.CustomResource(USER_RUNNER, "runner", props={"projectId": 42, "tagLists": ["docker"]})

    with pytest.raises(AssertionError, match=rf'{USER_RUNNER} "runner": missing required input "runnerType"'):
        run_program(program)


def test_missing_required_field_of_nested_object_is_reported(contract):
    found = contract.check_resource(CONTAINER, "web", {"image": "x", "ports": [{"external": 80}]}, True)

    assert found == [f'{CONTAINER} "web": missing required input "ports[0].internal"']


# ---- wrong value types ---------------------------------------------------------------------


def test_string_for_nested_integer_fails_the_program_under_mocks():
    inner = RecordingMocks()

    def program():
        docker.Container("web", image="sha256:0", ports=[docker.ContainerPortArgs(internal="443")])

    with pytest.raises(AssertionError, match=r'"web": ports\[0\]\.internal: expected integer, got str'):
        run_program(program, inner)


@pytest.mark.parametrize(
    "internal, ok",
    [(443, True), (443.0, True), (443.5, False), (True, False), ("443", False)],
    ids=["int", "integral-float-as-mocks-send", "fraction", "bool", "str"],
)
def test_integer_accepts_int_and_integral_float_only(contract, internal, ok):
    found = contract.check_resource(CONTAINER, "web", {"image": "x", "ports": [{"internal": internal}]}, True)

    assert (found == []) is ok, found


def test_wrong_top_level_types_are_reported(contract):
    found = contract.check_resource(
        CONTAINER, "web", {"image": "x", "envs": {"A": "1"}, "mustRun": "yes", "logOpts": {"k": 1}}, True
    )

    assert found == [
        f"{CONTAINER} \"web\": envs: expected array, got dict {{'A': '1'}}",
        f"{CONTAINER} \"web\": mustRun: expected boolean, got str 'yes'",
        f"{CONTAINER} \"web\": logOpts['k']: expected string, got int 1",
    ]


# ---- enums ---------------------------------------------------------------------------------


def test_remote_command_with_unknown_logging_value_fails_the_program_under_mocks():
    def program():
        command.remote.Command(
            "cmd", connection=command.remote.ConnectionArgs(host="h"), create="true", logging="sometimes"
        )

    with pytest.raises(AssertionError, match=r'command:remote:Command "cmd": logging: \'sometimes\' is not one of'):
        run_program(program)


# ---- explicit providers --------------------------------------------------------------------


def test_explicit_providers_with_json_encoded_inputs_pass():
    inner = RecordingMocks()

    def program():
        docker_provider = docker.Provider(
            "host-docker",
            host="tcp://203.0.113.10:2376",
            ca_material="CA",
            registry_auth=[
                docker.ProviderRegistryAuthArgs(address="registry.example", password=pulumi.Output.secret("pw"))
            ],
            ssh_opts=["-o", "StrictHostKeyChecking=no"],
            disable_docker_daemon_check=True,
        )
        gitlab_provider = gitlab.Provider(
            "gitlab",
            base_url="https://gl.example/api/v4/",
            token=pulumi.Output.secret("glpat"),
            insecure=False,
            retries=3,
            headers={"X-Test": "1"},
        )
        return pulumi.Output.all(docker_provider.id, gitlab_provider.id)

    mocks = run_program(program, inner)

    assert {"pulumi:providers:docker", "pulumi:providers:gitlab"} <= set(inner.types), inner.types
    assert mocks.violations == []


def test_unknown_provider_input_fails_the_program_under_mocks():
    def program():
        pulumi.ProviderResource("docker", "host-docker", props={"hots": "tcp://203.0.113.10:2376"})

    with pytest.raises(AssertionError, match=r'pulumi:providers:docker "host-docker": unknown input "hots"'):
        run_program(program)


def test_json_encoded_provider_input_is_checked_after_decoding(contract):
    found = contract.check_resource(
        "pulumi:providers:docker", "p", {"registryAuth": json.dumps([{"adress": "r"}]), "sshOpts": "true"}, True
    )

    assert found == [
        'pulumi:providers:docker "p": missing required input "registryAuth[0].address"',
        'pulumi:providers:docker "p": unknown input "registryAuth[0].adress" '
        '(not in docker:index/ProviderRegistryAuth:ProviderRegistryAuth) (did you mean "address"?)',
        'pulumi:providers:docker "p": sshOpts: expected array, got bool True',
    ]


# ---- invokes -------------------------------------------------------------------------------


def test_invoke_with_unknown_argument_is_reported(contract):
    found = contract.check_invoke(GET_PROJECT, {"path": "delivery/app"})

    assert found == [f'invoke {GET_PROJECT}: unknown argument "path"']


def test_invoke_with_unknown_argument_fails_the_program_under_mocks():
    def program():
        pulumi.runtime.invoke(GET_PROJECT, {"pathWithNamespaces": "delivery/app"})

    with pytest.raises(AssertionError, match=rf'invoke {GET_PROJECT}: unknown argument "pathWithNamespaces"'):
        run_program(program)


# ---- the README's version allow-list -------------------------------------------------------


def test_allow_listed_sdk_additions_are_accepted_under_mocks():
    inner = RecordingMocks()

    def program():
        container = docker.Container(
            "web",
            image="sha256:0",
            device_cgroup_rules=["c 1:3 mr"],
            uploads=[docker.ContainerUploadArgs(file="/x", content="x", owner="1000", group="1000")],
        )
        cert = tls.SelfSignedCert(
            "ca",
            private_key_pem_wo=pulumi.Output.secret("PEM"),
            private_key_pem_wo_version=1,
            allowed_uses=["cert_signing"],
            validity_period_hours=24,
        )
        project = gitlab.Project("app", automatic_rebase_enabled=True, mr_default_title_template="%{title}")
        return pulumi.Output.all(container.id, cert.id, project.id)

    mocks = run_program(program, inner)

    assert {CONTAINER, "tls:index/selfSignedCert:SelfSignedCert", "gitlab:index/project:Project"} <= set(
        inner.types
    ), inner.types
    assert mocks.violations == []


def test_unlisted_unknown_key_still_fails_next_to_allow_listed_one(contract):
    found = contract.check_resource(
        CONTAINER, "web", {"image": "x", "deviceCgroupRules": ["c 1:3 mr"], "deviceCgroupRulez": []}, True
    )

    assert found == [f'{CONTAINER} "web": unknown input "deviceCgroupRulez" (did you mean "deviceCgroupRules"?)']


def test_self_signed_cert_needs_exactly_one_private_key_input(contract):
    base = {"allowedUses": ["cert_signing"], "validityPeriodHours": 24}

    neither = contract.check_resource("tls:index/selfSignedCert:SelfSignedCert", "ca", base, True)
    both = contract.check_resource(
        "tls:index/selfSignedCert:SelfSignedCert", "ca", {**base, "privateKeyPem": "a", "privateKeyPemWo": "b"}, True
    )

    message = 'tls:index/selfSignedCert:SelfSignedCert "ca": exactly one of "privateKeyPem" or "privateKeyPemWo" must be set, got {}'
    assert (neither, both) == ([message.format(0)], [message.format(2)])


def test_allow_list_matches_the_saved_schemas():
    """Every allow-list entry names a real token, adds only keys the saved schema lacks and
    relaxes only keys it requires: a typo or a stale entry fails here."""
    problems = []
    for diff in SDK_VERSION_DIFFERENCES:
        raw = json.loads((default_schema_dir() / SCHEMA_FILES[diff["package"]]).read_text())
        section, props_key, req_key = (
            ("resources", "inputProperties", "requiredInputs")
            if diff["kind"] == "resource"
            else ("types", "properties", "required")
        )
        entry = raw[section].get(diff["token"])
        if entry is None:
            problems.append(f"{diff['token']}: not in schema")
            continue
        problems += [f"{diff['token']}.{k}: already in schema" for k in diff.get("add", {}) if k in entry[props_key]]
        problems += [
            f"{diff['token']}.{k}: not required in schema"
            for k in diff.get("not_required", [])
            if k not in entry.get(req_key, [])
        ]

    assert problems == []


# ---- what is not checked, and how unknowns look --------------------------------------------


def test_components_stack_references_and_reads_are_not_input_checked():
    class DockerHost(pulumi.ComponentResource):
        def __init__(self, name: str) -> None:
            super().__init__("delivery:docker:DockerHost", name, {"anything": 1})
            self.register_outputs({})

    def program():
        DockerHost("host")
        pulumi.StackReference("org/delivery/prod")
        gitlab.UserRunner.get("existing-runner", "42")

    mocks = run_program(program)

    assert mocks.violations == []


def test_input_from_unreturned_output_is_accepted_in_preview():
    """In preview, an output the mocks did not return reaches the inputs as Unknown."""
    inner = EchoMocks()

    def program():
        image = docker.RemoteImage("img", name="traefik:v3.3")
        docker.Container("web", image=image.image_id)

    mocks = run_program(program, inner, preview=True)

    assert CONTAINER in inner.types, inner.types
    assert mocks.violations == []


def test_input_from_unreturned_output_looks_missing_outside_preview():
    """Outside preview, mocks drop unknown values: the contract reports them as missing."""
    inner = EchoMocks()

    def program():
        image = docker.RemoteImage("img", name="traefik:v3.3")
        docker.Container("web", image=image.image_id)

    with pytest.raises(AssertionError, match=rf'{CONTAINER} "web": missing required input "image"'):
        run_program(program, inner, preview=False)


def test_schema_folder_can_be_overridden(monkeypatch, tmp_path: Path):
    monkeypatch.setenv("DELIVERY_PROVIDER_SCHEMAS", str(tmp_path))

    with pytest.raises(FileNotFoundError, match=str(tmp_path)):
        ProviderContract().schema("docker")
