"""The adoption of a host set up by hand (hosts[i].adopt, docs/adopt.md) under mocks: the step
exists only when asked for, runs before anything else touches Docker, and gets the arguments
adopt-host.sh needs; the config key is validated. The script itself runs for real in
tests/e2e/test_adopt_e2e.py."""

from __future__ import annotations

import shlex

import pytest

from conftest import PRODUCTION_SECRETS, StackRun, production_config, run_stack

from components.config.services import DEFAULT_GITLAB_VERSION


def adopting(*names: str) -> dict:
    cfg = production_config()
    for h in cfg["hosts"]:
        if h["name"] in names:
            h["adopt"] = True
    return cfg


@pytest.fixture(scope="module")
def adopt_run() -> StackRun:
    return run_stack(adopting("services"), secrets=PRODUCTION_SECRETS)


def test_no_adoption_step_unless_a_host_asks_for_it(production_run: StackRun):
    assert not [r for r in production_run.registrations if r.name.endswith("-adopt")]


def test_the_adopting_host_gets_the_step_the_other_does_not(adopt_run: StackRun):
    assert [r.name for r in adopt_run.registrations if r.name.endswith("-adopt")] == ["services-adopt"]
    step = adopt_run.named("services-adopt")
    assert step.parent == adopt_run.named("services").urn, step.urn


def test_the_engine_and_the_docker_config_wait_for_the_adoption(adopt_run: StackRun):
    adopt = adopt_run.named("services-adopt").urn
    for name in ("services-engine", "services-docker-config"):
        assert adopt in adopt_run.named(name).dependencies, name
    # ... and with them every container of the host (its provider waits for docker-config)
    assert adopt_run.named("services-docker-config").urn in adopt_run.named("services-docker").dependencies


def test_the_step_is_told_the_roles_the_gitlab_image_and_the_wildcard_domain(adopt_run: StackRun):
    argv = shlex.split(adopt_run.named("services-adopt").plain["create"])
    assert argv[3:] == ["adopt-host.sh", "apply", "gitlab", f"gitlab/gitlab-ce:{DEFAULT_GITLAB_VERSION}", "1800", "dev.company.ru"]
    # the program's gitlab.rb (no secret in it) for the printed differences
    assert adopt_run.named("services-adopt").plain["stdin"].startswith("# Managed by Pulumi")


def test_a_host_without_the_gitlab_role_gets_no_gitlab_image():
    run = run_stack(adopting("production"), secrets=PRODUCTION_SECRETS)
    argv = shlex.split(run.named("production-adopt").plain["create"])
    assert argv[3:7] == ["adopt-host.sh", "apply", "traefik", "-"]
    assert run.named("production-adopt").plain.get("stdin") in (None, "")


def test_the_runner_role_is_adopted_only_when_the_program_runs_a_runner_there():
    """Without the GitLab integration the program runs no runner: the hand-made one must stay."""
    cfg = adopting("production")
    cfg.update(gitlabToken="glpat-0123456789abcdefghij", gitlabIntegration="enabled", runnerScope={"group": "group"})
    run = run_stack(cfg, secrets=PRODUCTION_SECRETS)
    argv = shlex.split(run.named("production-adopt").plain["create"])
    assert argv[5] == "traefik,production-runner"
    assert "gitlab-runner-production" in {r.name for r in run.registrations}


def test_adopt_must_be_a_boolean():
    cfg = production_config()
    cfg["hosts"][0]["adopt"] = "yes"
    with pytest.raises(Exception, match=r"delivery:hosts\[0\]\.adopt: expected true or false"):
        run_stack(cfg, secrets=PRODUCTION_SECRETS)
