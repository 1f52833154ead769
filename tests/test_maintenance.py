"""Registry clean-up (expiration policy, garbage collection timer) and the Docker CA rotation
phases, under mocks; the rendered units with systemd-analyze (docs/operations.md)."""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

import pulumi
import pytest

from conftest import PRODUCTION_SECRETS, PRODUCTION_STACK, production_config, run_stack, staging_config
from gitlab_stacks import run_production
from test_config_full_match import load

from components.config.maintenance import DEFAULT_DELETE_REGEX, DEFAULT_KEEP_REGEX, RegistryGcConfig
from components.operations.registry_cleanup import GC_UNIT, gc_service, gc_timer

PROJECT = "gitlab:index/project:Project"
COMMAND = "command:remote:Command"
LSC = "tls:index/locallySignedCert:LocallySignedCert"
SSC = "tls:index/selfSignedCert:SelfSignedCert"


def config_error(config: dict, stack: str = "production") -> str:
    with pytest.raises(pulumi.RunError) as e:
        load(config, stack)
    return str(e.value)


# -- registry clean-up: the expiration policy -------------------------------------------------


def test_expiration_policy_adopts_the_application_project_and_never_deletes_it():
    run = run_production()
    projects = run.of_type(PROJECT)
    assert [p.name for p in projects] == ["registry-cleanup-group-app"], [p.urn for p in projects]
    p = projects[0]
    assert p.import_id == "group/app", p.urn
    assert p.retain_on_delete, f"{p.urn}: removing the policy must never delete the project"
    assert p.plain["name"] == "app", f"{p.urn}: GitLab's own name, read from the project"
    assert p.plain["containerExpirationPolicy"] == {
        "enabled": True,
        "cadence": "1d",
        "olderThan": "14d",
        "keepN": 5,
        "nameRegexDelete": DEFAULT_DELETE_REGEX,
        "nameRegexKeep": DEFAULT_KEEP_REGEX,
    }, p.urn
    assert p.provider.split("::")[-1].startswith("gitlab-api"), f"{p.urn} uses {p.provider}"


def test_expiration_policy_follows_its_keys():
    run = run_production(
        registryCleanupProjects=["group/app", "group/other"],
        registryCleanupOlderThanDays="30",
        registryCleanupKeepN="10",
        registryCleanupCadence="7d",
        registryCleanupKeepRegex="stable|v[0-9]+",
    )
    policies = {p.import_id: p.plain["containerExpirationPolicy"] for p in run.of_type(PROJECT)}
    assert set(policies) == {"group/app", "group/other"}
    for policy in policies.values():
        assert (policy["olderThan"], policy["keepN"], policy["cadence"], policy["nameRegexKeep"]) == ("30d", 10, "7d", "stable|v[0-9]+")


def test_no_policy_when_switched_off_or_before_the_integration():
    assert run_production(registryCleanup="false").of_type(PROJECT) == []
    assert run_stack(production_config(), secrets=PRODUCTION_SECRETS).of_type(PROJECT) == []  # no API token yet


@pytest.mark.parametrize(
    "tag, kept",
    [
        ("feature-login-1a2b3c4d", False),
        ("fix-42-0123456789abcdef0123456789abcdef01234567", False),
        ("main-1a2b3c4d", True),
        ("master-1a2b3c4d", True),
        ("main", True),
        ("v1.4.2", True),
        ("2.0.0-rc.1-1a2b3c4d", True),
        ("latest", None),  # not a review tag: never a candidate
    ],
)
def test_default_regexes_delete_review_tags_only(tag: str, kept):
    """GitLab matches the whole tag; keep wins over delete."""
    delete = re.fullmatch(DEFAULT_DELETE_REGEX, tag) is not None
    keep = re.fullmatch(DEFAULT_KEEP_REGEX, tag) is not None
    if kept is None:
        assert not delete and not keep, tag
    else:
        assert (delete and not keep) == (not kept), tag


@pytest.mark.parametrize(
    "key, value, expected",
    [
        ("registryCleanupOlderThanDays", "10", "expected one of 7, 14, 30, 60, 90"),
        ("registryCleanupKeepN", "3", "expected one of 1, 5, 10, 25, 50, 100"),
        ("registryCleanupCadence", "2d", "expected one of 1d, 7d"),
        ("registryCleanupDeleteRegex", "(unclosed", "expected a regular expression"),
        ("registryCleanupKeepRegex", "(?!main).*", "RE2"),
        ("registryGcSchedule", "Sun; rm -rf /", "systemd calendar expression"),
        ("dockerCaRotation", "later", "expected one of none, trust, switch"),
        ("dockerCaGeneration", "0", ">= 1"),
    ],
)
def test_bad_values_are_refused_naming_the_key(key: str, value: str, expected: str):
    message = config_error({**production_config(), key: value})
    assert f"delivery:{key}:" in message and expected in message, message


def test_policy_projects_and_ca_rotation_belong_to_the_stack_that_owns_them():
    message = config_error(
        {**staging_config(), "registryCleanupProjects": ["group/app"], "dockerCaRotation": "trust"}, stack="staging"
    )
    assert "delivery:registryCleanupProjects: only in the stack that runs GitLab" in message, message
    assert "delivery:dockerCaRotation: only in the stack that owns the Docker CA" in message, message


# -- registry clean-up: the garbage collection timer -------------------------------------------


def _gc_step(run):
    return next(r for r in run.of_type(COMMAND) if r.name == "registry-gc-install")


def test_gc_timer_is_installed_on_the_gitlab_host_only():
    run = run_stack(production_config(), secrets=PRODUCTION_SECRETS)
    steps = [r for r in run.of_type(COMMAND) if r.name.startswith("registry-gc")]
    assert [s.name for s in steps] == ["registry-gc-install"]
    step = steps[0]
    assert step.plain["connection"]["host"] == "192.168.88.2", f"{step.urn} must run on Services"
    assert f"install-systemd-timer.sh {GC_UNIT}" in step.plain["create"], step.urn
    component = run.by_urn(step.parent)
    assert component.type == "delivery:operations:RegistryGarbageCollection", component.urn
    # Docker's install on Services comes first (the unit runs `docker exec`).
    assert any(d.endswith("services-host") for d in step.dependencies), step.dependencies


def test_gc_is_absent_when_switched_off_and_in_the_staging_stack():
    run = run_stack(production_config(registryGc="false"), secrets=PRODUCTION_SECRETS)
    assert not [r for r in run.of_type(COMMAND) if r.name.startswith("registry-gc")]
    from conftest import production_outputs

    staging = run_stack(
        staging_config(), secrets=PRODUCTION_SECRETS, stack="staging", stack_outputs={PRODUCTION_STACK: production_outputs()}
    )
    assert not [r for r in staging.of_type(COMMAND) if r.name.startswith("registry-gc")]


def test_gc_units_carry_the_schedule_and_the_untagged_switch():
    settings = RegistryGcConfig(schedule="Sat *-*-* 02:00:00", delete_untagged=False)
    assert "OnCalendar=Sat *-*-* 02:00:00\n" in gc_timer(settings)
    assert "Persistent=false\n" in gc_timer(settings)
    assert "ExecStart=/usr/bin/docker exec gitlab gitlab-ctl registry-garbage-collect\n" in gc_service(settings)
    assert gc_service(RegistryGcConfig()).count("registry-garbage-collect -m\n") == 1


@pytest.mark.skipif(shutil.which("systemd-analyze") is None, reason="systemd-analyze is not installed")
def test_gc_units_pass_systemd_analyze(tmp_path: Path):
    settings = RegistryGcConfig()
    (tmp_path / f"{GC_UNIT}.service").write_text(gc_service(settings).replace("/usr/bin/docker", shutil.which("true") or "/bin/true"))
    (tmp_path / f"{GC_UNIT}.timer").write_text(gc_timer(settings))
    out = subprocess.run(
        ["systemd-analyze", "verify", f"./{GC_UNIT}.service", f"./{GC_UNIT}.timer"],
        cwd=tmp_path, capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert out.returncode == 0, out.stderr
    cal = subprocess.run(["systemd-analyze", "calendar", settings.schedule], capture_output=True, text=True, timeout=60)
    assert cal.returncode == 0, cal.stderr


# -- Docker CA rotation --------------------------------------------------------------------------


def rotation_run(**overrides):
    return run_stack(production_config(**overrides), secrets=PRODUCTION_SECRETS)


def ca_names_in(pem: str, run) -> set[str]:
    return {r.name for r in run.of_type(SSC) if r.name in pem}


def test_no_rotation_keeps_one_protected_ca_per_domain():
    run = rotation_run()
    assert {r.name: r.protect for r in run.of_type(SSC)} == {"docker-ca-ca-cert": True, "docker-staging-ca-ca-cert": True}


def test_trust_phase_adds_the_next_ca_everywhere_and_changes_no_certificate():
    before, run = rotation_run(), rotation_run(dockerCaRotation="trust")
    assert {r.name: r.protect for r in run.of_type(SSC)} == {
        "docker-ca-ca-cert": True,
        "docker-ca-g2-ca-cert": True,
        "docker-staging-ca-ca-cert": True,
        "docker-staging-ca-g2-ca-cert": True,
    }
    # the same leaf certificates, from the same CAs
    assert {r.name: r.plain for r in run.of_type(LSC)} == {r.name: r.plain for r in before.of_type(LSC)}
    # clients verify daemons with both generations
    assert ca_names_in(run.outputs["dockerCaCertPem"], run) == {"docker-ca-ca-cert", "docker-ca-g2-ca-cert"}
    assert ca_names_in(run.outputs["dockerStagingCaCertPem"], run) == {"docker-staging-ca-ca-cert", "docker-staging-ca-g2-ca-cert"}
    assert len(ca_names_in(run.outputs["operatorClient"]["caPem"], run)) == 4


def test_switch_phase_issues_from_the_next_ca_and_unprotects_the_old_one():
    run = rotation_run(dockerCaRotation="switch")
    ssc = {r.name: r for r in run.of_type(SSC)}
    assert {n: r.protect for n, r in ssc.items()} == {
        "docker-ca-ca-cert": False,
        "docker-ca-g2-ca-cert": True,
        "docker-staging-ca-ca-cert": False,
        "docker-staging-ca-g2-ca-cert": True,
    }
    old_key = run.named("docker-ca-ca-key")
    assert not old_key.protect, f"{old_key.urn}: the retiring CA's key must be deletable by the next step"
    leaves = run.of_type(LSC)
    assert leaves and all(r.name.startswith(("docker-ca-g2-", "docker-staging-ca-g2-")) for r in leaves), [r.name for r in leaves]
    for r in leaves:
        assert "-g2-ca-cert" in r.plain["caCertPem"], f"{r.urn} must be signed by generation 2"
    assert ca_names_in(run.outputs["dockerCaCertPem"], run) == {"docker-ca-ca-cert", "docker-ca-g2-ca-cert"}


def test_finish_leaves_only_the_new_generation_with_the_switch_phases_certificates():
    switch, done = rotation_run(dockerCaRotation="switch"), rotation_run(dockerCaGeneration="2")
    assert {r.name: r.protect for r in done.of_type(SSC)} == {"docker-ca-g2-ca-cert": True, "docker-staging-ca-g2-ca-cert": True}
    # every certificate the switch issued stays (same resources, same inputs): no new restart
    assert {r.name: r.plain for r in done.of_type(LSC)} == {r.name: r.plain for r in switch.of_type(LSC)}
    assert ca_names_in(done.outputs["dockerCaCertPem"], done) == {"docker-ca-g2-ca-cert"}
    assert ca_names_in(done.outputs["operatorClient"]["caPem"], done) == {"docker-ca-g2-ca-cert", "docker-staging-ca-g2-ca-cert"}


def test_review_traefik_verifies_staging_with_both_generations_during_a_rotation():
    run = rotation_run(dockerCaRotation="switch")
    delegated = run.outputs["delegatedDockerServers"]["staging"]
    assert ca_names_in(delegated["caPem"], run) == {"docker-staging-ca-ca-cert", "docker-staging-ca-g2-ca-cert"}
    assert len(ca_names_in(delegated["trustPem"], run)) == 4
