"""Runner overrides that hand a job the host, or hand the production runner to unprotected
branches, are refused with the reason, unless `runners.<role>.allowDangerous` names them; then
every run warns."""

from __future__ import annotations

import logging
import tomllib

import pulumi
import pytest

from gitlab_stacks import API_TOKEN, run_production, run_staging


def production_runner(**settings):
    return run_production(runners={"production-runner": settings})


def errors_of(**settings) -> str:
    with pytest.raises(pulumi.RunError) as e:
        production_runner(**settings)
    return str(e.value)


def job_volumes(run, host: str) -> list[str]:
    return tomllib.loads(run.named(f"gitlab-runner-{host}-config").plain["stdin"])["runners"][0]["docker"]["volumes"]


# -- access level ----------------------------------------------------------------------------
def test_production_runner_for_unprotected_branches_is_refused_with_the_reason():
    msg = errors_of(accessLevel="not_protected")
    assert "delivery:runners.production-runner.accessLevel: not_protected on the production runner" in msg
    assert "any branch" in msg and "allowDangerous: [accessLevel]" in msg


def test_production_runner_for_unprotected_branches_when_allowed_explicitly(caplog):
    caplog.set_level(logging.WARNING)
    run = production_runner(accessLevel="not_protected", allowDangerous=["accessLevel"])
    runner = run.named("gitlab-runner-production-user-runner")
    assert runner.plain["accessLevel"] == "not_protected", runner.urn
    assert "delivery:runners.production-runner.allowDangerous" in caplog.text and "not_protected" in caplog.text


def test_staging_runner_takes_unprotected_branches_by_design():
    run = run_staging(gitlabToken=API_TOKEN, runners={"staging-runner": {"accessLevel": "not_protected"}})
    assert run.named("gitlab-runner-staging-user-runner").plain["accessLevel"] == "not_protected"


# -- job volumes --------------------------------------------------------------------------------
@pytest.mark.parametrize(
    "volume",
    [
        "/:/host",
        "/etc:/etc:ro",
        "/root:/root",
        "/home:/home",
        "/var/lib/docker:/docker",
        "/var/lib/docker/volumes/x:/x",
        "/var:/var",
        "/proc:/host-proc",
        "/sys:/sys",
        "/boot:/boot",
        "/dev:/dev",
        "/run:/run",
        "/usr:/usr",
        "/srv:/srv",
        "/srv/gitlab-runner:/r",
        "/srv/gitlab-runner/config:/etc/gitlab-runner",
        "/srv/services/gitlab/config:/gitlab",
        "/srv/traefik/letsencrypt:/le",
        "/etc/:/e",
    ],
)
def test_a_volume_that_gives_jobs_the_host_is_refused(volume: str):
    msg = errors_of(volumes=["/cache", volume])
    assert "delivery:runners.production-runner.volumes[1]: binds the host's" in msg, msg
    assert "allowDangerous: [volumes]" in msg


@pytest.mark.parametrize(
    "volume",
    ["/cache", "/srv/gitlab-runner/cache:/cache", "/srv/gitlab-runner/jobs:/logs", "/data/builds:/builds:ro", "/var/run/docker.sock:/var/run/docker.sock"],
)
def test_ordinary_volumes_are_accepted_without_a_warning(volume: str, caplog):
    caplog.set_level(logging.WARNING)
    run = production_runner(volumes=[volume])
    assert job_volumes(run, "production") == [volume]
    assert "allowDangerous" not in caplog.text


def test_a_path_with_dot_dot_is_refused():
    assert "delivery:runners.production-runner.volumes[0]: expected a volume" in errors_of(volumes=["/srv/gitlab-runner/cache/../../..:/x"])


def test_a_dangerous_volume_allowed_explicitly_is_kept_and_warned_about(caplog):
    caplog.set_level(logging.WARNING)
    run = production_runner(volumes=["/etc:/host-etc:ro"], allowDangerous=["volumes"])
    assert job_volumes(run, "production") == ["/etc:/host-etc:ro"]
    assert "delivery:runners.production-runner.allowDangerous" in caplog.text and "/etc" in caplog.text


def test_the_allowance_is_per_key():
    msg = errors_of(accessLevel="not_protected", volumes=["/etc:/e"], allowDangerous=["volumes"])
    assert "delivery:runners.production-runner.accessLevel: not_protected" in msg
    assert "volumes[0]" not in msg


def test_an_allowance_with_nothing_dangerous_is_refused():
    msg = errors_of(volumes=["/cache"], allowDangerous=["volumes"])
    assert "delivery:runners.production-runner.allowDangerous: lists volumes, but no volume is dangerous" in msg


def test_an_unknown_allowance_is_refused():
    assert "delivery:runners.production-runner.allowDangerous[0]: expected one of accessLevel, volumes" in errors_of(allowDangerous=["privileged"])


def test_the_default_volumes_with_docker_sock_stay_accepted():
    """The seed's docker executor shares the host's Docker socket with jobs (docs/gitlab.md says
    what that gives a job): the defaults need no allowance."""
    volumes = job_volumes(run_production(), "production")
    assert "/var/run/docker.sock:/var/run/docker.sock" in volumes
    assert "/var/run/docker.sock:/var/run/docker.sock" in job_volumes(run_staging(gitlabToken=API_TOKEN), "staging")
