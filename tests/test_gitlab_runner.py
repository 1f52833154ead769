"""GitLabRunner: runners created through the API with authentication tokens, config.toml,
the runner container; the token stays secret end to end."""

from __future__ import annotations

import hashlib
import json
import logging
import os
import shutil
import subprocess
import tomllib
from pathlib import Path
from typing import Any

import pulumi
import pytest

from conftest import ROOT, StackRun, is_secret_value, run_stack
from gitlab_stacks import API_TOKEN, SECRETS, production_base, run_production, run_staging

USER_RUNNER = "gitlab:index/userRunner:UserRunner"


def production(**overrides: Any) -> StackRun:
    return run_production(**overrides)


def staging(**overrides: Any) -> StackRun:
    return run_staging(gitlabToken=API_TOKEN, **overrides)


def config_toml(run: StackRun, host: str) -> dict[str, Any]:
    write = run.named(f"gitlab-runner-{host}-config")
    return tomllib.loads(write.plain["stdin"])


def plain_strings(value: Any, secret: bool = False):
    """Every string in an input tree, with whether it sits inside a secret."""
    if is_secret_value(value):
        yield from plain_strings(value["value"], True)
    elif isinstance(value, dict):
        for v in value.values():
            yield from plain_strings(v, secret)
    elif isinstance(value, list):
        for v in value:
            yield from plain_strings(v, secret)
    elif isinstance(value, str):
        yield value, secret


# -- the runner in GitLab -------------------------------------------------------------------------
def test_production_runner_is_ref_protected_with_tag_production():
    run = production()
    runner = run.named("gitlab-runner-production-user-runner")
    p = runner.plain
    assert p["tagLists"] == ["production"], runner.urn
    assert p["accessLevel"] == "ref_protected", runner.urn
    assert p["untagged"] is False, runner.urn
    assert p["locked"] is True, f"{runner.urn}: nobody may enable the production runner in another project"


def test_staging_runner_is_not_protected_with_tag_staging():
    run = staging()
    runner = run.named("gitlab-runner-staging-user-runner")
    p = runner.plain
    assert p["tagLists"] == ["staging"], runner.urn
    assert p["accessLevel"] == "not_protected", runner.urn
    assert p["untagged"] is False, runner.urn


def test_runner_is_created_in_the_project_resolved_by_path():
    run = production()
    runner = run.named("gitlab-runner-production-user-runner")
    assert runner.plain["runnerType"] == "project_type", runner.urn
    assert runner.plain["projectId"] == 42, runner.urn  # the mocks' id of group/app, as an int
    assert "groupId" not in runner.plain, runner.urn


def test_group_scope_creates_a_group_runner():
    run = production(runnerScope={"group": "platform"})
    runner = run.named("gitlab-runner-production-user-runner")
    assert runner.plain["runnerType"] == "group_type", runner.urn
    assert runner.plain["groupId"] == 7, runner.urn
    assert "projectId" not in runner.plain, runner.urn


def test_runner_settings_come_from_config_overrides():
    run = staging(runners={"staging-runner": {"tags": ["staging", "docker"], "maximumTimeout": 7200, "description": "QA"}})
    runner = run.named("gitlab-runner-staging-user-runner")
    assert runner.plain["tagLists"] == ["staging", "docker"], runner.urn
    assert runner.plain["maximumTimeout"] == 7200, runner.urn
    assert runner.plain["description"] == "QA", runner.urn


def test_runner_uses_the_gitlab_provider_configured_from_stack_config():
    run = production()
    provider = run.named("gitlab-api")
    runner = run.named("gitlab-runner-production-user-runner")
    assert runner.provider.startswith(provider.urn + "::"), runner.urn
    assert provider.plain["baseUrl"] == "https://gitlab.company.ru/api/v4/", provider.urn
    assert provider.secret("token") and provider.plain["token"] == API_TOKEN, provider.urn


def test_gitlab_url_override_reaches_provider_and_config_toml():
    run = production(gitlabUrl="https://git.example.org")
    provider = run.named("gitlab-api")
    assert provider.plain["baseUrl"] == "https://git.example.org/api/v4/", provider.urn
    assert config_toml(run, "production")["runners"][0]["url"] == "https://git.example.org"


# -- config.toml ------------------------------------------------------------------------------------
def test_staging_config_toml_has_the_seed_concurrency():
    cfg = config_toml(staging(), "staging")
    assert cfg["concurrent"] == 20
    assert cfg["runners"][0]["request_concurrency"] == 10
    assert isinstance(cfg["check_interval"], int)


def test_config_toml_holds_the_runners_url_and_authentication_token():
    run = production()
    cfg = config_toml(run, "production")
    [runner] = cfg["runners"]
    assert runner["url"] == "https://gitlab.company.ru"
    assert runner["token"] == "glrt-mock-gitlab-runner-production-user-runner"
    assert runner["executor"] == "docker"


def test_config_toml_docker_executor_is_pinned_and_unprivileged():
    docker = config_toml(production(), "production")["runners"][0]["docker"]
    assert docker["image"] == "docker:29.2.0-cli"
    assert docker["privileged"] is False
    assert docker["pull_policy"] == ["always", "if-not-present"]


def test_staging_jobs_get_the_jobs_folder_as_logs_and_docker_sock():
    volumes = config_toml(staging(), "staging")["runners"][0]["docker"]["volumes"]
    assert "/srv/gitlab-runner/jobs:/logs" in volumes
    assert "/var/run/docker.sock:/var/run/docker.sock" in volumes


def test_config_toml_is_written_to_the_runner_config_folder_through_stdin():
    run = production()
    write = run.named("gitlab-runner-production-config")
    create = write.plain["create"]
    assert "write-runner-config.sh" in create and "/srv/gitlab-runner/config/config.toml" in create, write.urn
    assert "glrt-" not in create, write.urn
    assert write.secret("stdin"), write.urn


def test_config_toml_waits_for_the_hosts_srv_layout():
    run = production()
    write = run.named("gitlab-runner-production-config")
    setup = run.named("production-host")
    assert setup.urn in write.dependencies, write.urn


# -- the runner container -----------------------------------------------------------------------------
def test_runner_container_is_pinned_and_on_its_hosts_docker_provider():
    run = production()
    container = run.named("gitlab-runner-production-container")
    image = run.named("gitlab-runner-production-image")
    host_provider = run.named("production-docker")
    assert image.plain["name"] == "gitlab/gitlab-runner:v18.5.0", image.urn
    assert container.provider.startswith(host_provider.urn + "::"), container.urn
    assert container.delete_before_replace, container.urn
    assert container.plain["restart"] == "always", container.urn


def test_production_runner_container_mounts_docker_sock_config_and_srv():
    container = production().named("gitlab-runner-production-container")
    mounts = {v["hostPath"]: v["containerPath"] for v in container.plain["volumes"]}
    assert mounts == {
        "/srv/gitlab-runner/config": "/etc/gitlab-runner",
        "/var/run/docker.sock": "/var/run/docker.sock",
        "/srv": "/srv",
    }, container.urn


def test_staging_runner_container_mounts_the_jobs_folder():
    container = staging().named("gitlab-runner-staging-container")
    mounts = {v["hostPath"]: v["containerPath"] for v in container.plain["volumes"]}
    assert mounts["/srv/gitlab-runner/jobs"] == "/jobs", container.urn
    assert "/srv" not in mounts, container.urn


def test_a_config_toml_change_rewrites_the_file_and_leaves_the_container_alone():
    """gitlab-runner reloads config.toml by itself: a change must not replace the container
    (which would kill running jobs)."""
    base, changed = staging(), staging(runners={"staging-runner": {"concurrent": 5}})
    write = "gitlab-runner-staging-config"
    assert base.named(write).plain["triggers"] != changed.named(write).plain["triggers"], "config.toml is rewritten"
    container = "gitlab-runner-staging-container"
    assert base.named(container).plain == changed.named(container).plain, changed.named(container).urn


def test_runner_container_label_reveals_nothing_of_the_token():
    run = production()
    container = run.named("gitlab-runner-production-container")
    token = "glrt-mock-gitlab-runner-production-user-runner"
    for value in (l["value"] for l in container.plain["labels"]):
        assert token not in value and value != hashlib.sha256(token.encode()).hexdigest(), container.urn
    assert not container.secret("labels"), container.urn


def test_runner_container_starts_after_config_toml_is_written():
    run = production()
    container = run.named("gitlab-runner-production-container")
    assert run.named("gitlab-runner-production-config").urn in container.dependencies, container.urn


# -- secrets ---------------------------------------------------------------------------------------------
def test_runner_token_is_an_additional_secret_output():
    runner = production().named("gitlab-runner-production-user-runner")
    assert "token" in runner.additional_secret_outputs, runner.urn


def test_runner_token_appears_only_inside_secrets():
    run = production()
    for r in run.registrations:
        for text, secret in plain_strings(r.inputs):
            if "glrt-" in text:
                assert secret, f"{r.urn} holds a runner token outside a secret"
    for name, value in run.outputs.items():
        assert "glrt-" not in json.dumps(value, default=str), name


def test_no_registration_token_anywhere_in_the_graph():
    run = production()
    assert not run.of_type("gitlab:index/runner:Runner")
    for r in run.registrations:
        keys = json.dumps(r.plain, default=str)
        assert "registrationToken" not in keys and "registration_token" not in keys, r.urn


# -- token rotation ---------------------------------------------------------------------------------------
def test_runner_token_rotation_value_replaces_the_runner():
    run = production(runnerTokenRotation="2026-07")
    runner = run.named("gitlab-runner-production-user-runner")
    assert runner.replacement_trigger == "2026-07", runner.urn


# -- token not set yet -----------------------------------------------------------------------------------
def test_without_token_the_api_resources_are_left_out_with_a_warning(caplog):
    caplog.set_level(logging.WARNING)
    run = run_stack(production_base(), secrets=SECRETS)
    gitlab = [r.urn for r in run.registrations if r.type.startswith(("gitlab:", "pulumi:providers:gitlab"))]
    assert gitlab == []
    assert not [r.urn for r in run.registrations if r.name.startswith("gitlab-runner-")]
    assert run.of_type("delivery:docker:DockerHost"), "the rest of the stack is still built"
    assert "pulumi config set --secret delivery:gitlabToken" in caplog.text


# -- config validation -------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    "overrides, key",
    [
        ({"gitlabRunnerVersion": "latest"}, "delivery:gitlabRunnerVersion"),
        ({"runnerDefaultImage": "docker:latest"}, "delivery:runnerDefaultImage"),
        ({"runnerDefaultImage": "docker"}, "delivery:runnerDefaultImage"),
        ({"runnerScope": {"project": "group/app", "group": "group"}}, "delivery:runnerScope"),
        ({"runners": {"production-runner": {"accessLevel": "protected"}}}, "delivery:runners.production-runner.accessLevel"),
        ({"runners": {"production-runner": {"maximumTimeout": 60}}}, "delivery:runners.production-runner.maximumTimeout"),
        ({"runners": {"staging-runner": {}}}, "delivery:runners.staging-runner"),
    ],
)
def test_bad_runner_config_names_the_key(overrides, key):
    with pytest.raises(pulumi.RunError, match=key.replace(".", r"\.")):
        production(**overrides)


def test_token_without_runner_scope_names_runner_scope():
    with pytest.raises(pulumi.RunError, match="delivery:runnerScope"):
        run_staging(gitlabToken=API_TOKEN, runnerScope=None)


def test_runner_token_as_api_token_is_rejected_without_echoing_it():
    with pytest.raises(pulumi.RunError, match="delivery:gitlabToken") as e:
        production(gitlabToken="glrt-SECRETVALUE123")
    assert "SECRETVALUE" not in str(e.value)


# -- write-runner-config.sh, run for real (in a private mount namespace over a temp /srv) -------------------
SCRIPT = ROOT / "components" / "gitlab" / "scripts" / "write-runner-config.sh"
DEST = "/srv/gitlab-runner/config/config.toml"


def _sandbox_available() -> bool:
    if os.geteuid() != 0 or not shutil.which("unshare"):
        return False
    probe = subprocess.run(["unshare", "-m", "--propagation", "private", "true"], capture_output=True)
    return probe.returncode == 0


needs_sandbox = pytest.mark.skipif(not _sandbox_available(), reason="needs root and unshare -m (a private /srv)")


def write_config(srv: Path, content: str) -> subprocess.CompletedProcess:
    shell = f'mount --bind "$1" /srv && exec bash "$2" {DEST}'
    return subprocess.run(
        ["unshare", "-m", "--propagation", "private", "bash", "-c", shell, "sh", str(srv), str(SCRIPT)],
        input=content, capture_output=True, text=True,
    )


def rendered(token: str, concurrent: int = 20) -> str:
    from components.config.gitlab import DEFAULT_RUNNERS
    from components.gitlab.gitlab_runner import render_config

    settings = DEFAULT_RUNNERS["staging-runner"]
    settings = type(settings)(**{**settings.__dict__, "concurrent": concurrent})
    return render_config(settings, "staging", "https://gitlab.company.ru", token, "docker:29.2.0-cli")


@needs_sandbox
def test_script_writes_config_toml_0600_root_and_reports_change(tmp_path: Path):
    srv = tmp_path / "srv"
    srv.mkdir()
    first = write_config(srv, rendered("glrt-first"))
    assert first.returncode == 0, first.stderr
    assert first.stdout.startswith("changed"), first.stdout
    path = srv / "gitlab-runner/config/config.toml"
    st = path.stat()
    assert (st.st_mode & 0o777, st.st_uid, st.st_gid) == (0o600, 0, 0)
    assert tomllib.loads(path.read_text())["runners"][0]["token"] == "glrt-first"
    assert "glrt-" not in first.stdout + first.stderr
    again = write_config(srv, rendered("glrt-first"))
    assert again.stdout.strip() == "unchanged", again.stdout + again.stderr


@needs_sandbox
def test_script_keeps_the_token_the_runner_rotated_to(tmp_path: Path):
    srv = tmp_path / "srv"
    srv.mkdir()
    assert write_config(srv, rendered("glrt-first")).returncode == 0
    path = srv / "gitlab-runner/config/config.toml"
    # gitlab-runner renewed its token and recorded when
    text = path.read_text().replace('token = "glrt-first"', 'token = "glrt-renewed"\ntoken_obtained_at = 2026-07-01T00:00:00Z')
    path.write_text(text)
    result = write_config(srv, rendered("glrt-first", concurrent=5))
    assert result.returncode == 0, result.stderr
    cfg = tomllib.loads(path.read_text())
    assert cfg["concurrent"] == 5
    assert cfg["runners"][0]["token"] == "glrt-renewed"
    assert "token_obtained_at" in cfg["runners"][0]


@needs_sandbox
def test_script_installs_a_new_runners_token(tmp_path: Path):
    srv = tmp_path / "srv"
    srv.mkdir()
    assert write_config(srv, rendered("glrt-first")).returncode == 0
    path = srv / "gitlab-runner/config/config.toml"
    path.write_text(path.read_text().replace("glrt-first", "glrt-renewed"))
    assert write_config(srv, rendered("glrt-replaced")).returncode == 0
    assert tomllib.loads(path.read_text())["runners"][0]["token"] == "glrt-replaced"


@needs_sandbox
def test_script_refuses_input_without_a_token(tmp_path: Path):
    srv = tmp_path / "srv"
    srv.mkdir()
    result = write_config(srv, "concurrent = 1\n[[runners]]\nname = \"x\"\n")
    assert result.returncode != 0
    assert not (srv / "gitlab-runner/config/config.toml").exists()


# -- preview ---------------------------------------------------------------------------------------------------
def test_preview_of_a_fresh_stack_with_the_token_set_evaluates():
    run = run_stack(production_base(gitlabToken=API_TOKEN, gitlabIntegration="enabled"), secrets=SECRETS, preview=True)
    runner = run.named("gitlab-runner-production-user-runner")
    assert runner.plain["tagLists"] == ["production"], runner.urn
    assert run.named("gitlab-api").plain["earlyAuthCheck"] == "true"


# -- where runners serve: several projects, this infrastructure project ---------------------------
ENABLEMENT = "gitlab:index/projectRunnerEnablement:ProjectRunnerEnablement"


def test_a_project_runner_is_enabled_in_the_other_projects_of_the_scope():
    run = staging(runnerScope={"projects": ["group/app", "group/delivery"]})
    runner = run.named("gitlab-runner-staging-user-runner")
    assert runner.plain["runnerType"] == "project_type"
    (enable,) = run.of_type(ENABLEMENT)
    assert enable.plain["project"] == "group/delivery", enable.urn
    assert runner.urn in enable.dependencies, f"{enable.urn} enables the runner once it exists"
    assert isinstance(enable.plain["runnerId"], (int, float)) and enable.plain["runnerId"] >= 7000, enable.urn


def test_infra_project_joins_the_default_scope():
    run = staging(ciProject="group/app", infraProject="group/delivery", acmeEmail="mail@company.ru", runnerScope=None)
    assert [e.plain["project"] for e in run.of_type(ENABLEMENT)] == ["group/delivery"]


def test_the_locked_production_runner_cannot_serve_several_projects():
    with pytest.raises(pulumi.RunError, match=r"delivery:runners\.production-runner\.locked: a locked runner cannot be enabled in other projects \(group/delivery\)"):
        production(runnerScope={"projects": ["group/app", "group/delivery"]})


def test_a_group_scope_serves_every_project_of_the_group_without_enablements():
    run = production(runnerScope={"group": "group"})
    assert run.named("gitlab-runner-production-user-runner").plain["runnerType"] == "group_type"
    assert not run.of_type(ENABLEMENT)


# -- a private ACME CA: the runner and the host's Docker trust it --------------------------------
def test_runner_and_registry_login_trust_the_acme_ca():
    from conftest import ca_certificate_pem
    from service_files import bundle

    pem = ca_certificate_pem("runner test CA")
    run = production(acmeCaCertificate=pem)
    assert config_toml(run, "production")["runners"][0]["tls-ca-file"] == "/etc/gitlab-runner/certs/acme-ca.pem"
    trust = run.named("gitlab-runner-production-trust")
    files = bundle(trust)
    assert files["/srv/gitlab-runner/config/certs/acme-ca.pem"] == (0o444, pem)
    assert files["/etc/docker/certs.d/registry.company.ru/ca.crt"] == (0o444, pem)
    assert trust.urn in run.named("gitlab-runner-production-container").dependencies


def test_gitlab_provider_trusts_the_acme_ca_through_a_file_named_by_its_hash():
    from conftest import ca_certificate_pem

    pem = ca_certificate_pem("provider test CA")
    provider = production(acmeCaCertificate=pem).named("gitlab-api")
    path = ROOT / provider.plain["cacertFile"]
    assert not Path(provider.plain["cacertFile"]).is_absolute(), "the path must not differ between machines"
    assert path.read_text() == pem
    assert hashlib.sha256(pem.encode()).hexdigest()[:12] in path.name


def test_without_a_private_ca_nothing_extra_is_trusted():
    run = production()
    assert "tls-ca-file" not in config_toml(run, "production")["runners"][0]
    assert "cacertFile" not in run.named("gitlab-api").plain
    assert not [r for r in run.registrations if r.name.endswith("-trust")]


#: Commands write-runner-config.sh may run; each is wrapped to record its command line.
WRAPPED = ("awk", "sed", "grep", "head", "cut", "sha256sum", "mktemp", "install", "chmod", "chown", "mv", "cmp",
           "stat", "cat", "python3", "rm", "dirname", "basename", "tr", "env", "printf", "readlink")


def write_config_recording_argv(srv: Path, tmp_path: Path, content: str) -> tuple[subprocess.CompletedProcess, str]:
    """Run the script with every external command wrapped: returns what ran, one argv per line."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir(exist_ok=True)
    log = tmp_path / "argv.log"
    for name in WRAPPED:
        real = shutil.which(name)
        if real is None:
            continue
        wrapper = bin_dir / name
        wrapper.write_text(f'#!/bin/bash\nprintf "%s " "{name}" "$@" >> "$ARGV_LOG"; echo >> "$ARGV_LOG"\nexec {real} "$@"\n')
        wrapper.chmod(0o755)
    shell = f'mount --bind "$1" /srv && exec bash "$2" {DEST}'
    env = dict(os.environ, PATH=f"{bin_dir}:{os.environ['PATH']}", ARGV_LOG=str(log))
    result = subprocess.run(
        ["unshare", "-m", "--propagation", "private", "bash", "-c", shell, "sh", str(srv), str(SCRIPT)],
        input=content, capture_output=True, text=True, env=env,
    )
    return result, log.read_text() if log.exists() else ""


@needs_sandbox
def test_script_never_puts_a_token_on_a_command_line(tmp_path: Path):
    """Command lines are readable by every user of the host (/proc/<pid>/cmdline, ps)."""
    srv = tmp_path / "srv"
    srv.mkdir()
    first, argv = write_config_recording_argv(srv, tmp_path, rendered("glrt-first"))
    assert first.returncode == 0, first.stderr
    path = srv / "gitlab-runner/config/config.toml"
    path.write_text(path.read_text().replace('token = "glrt-first"', 'token = "glrt-renewed"\ntoken_obtained_at = 2026-07-01T00:00:00Z'))
    kept, argv = write_config_recording_argv(srv, tmp_path, rendered("glrt-first", concurrent=5))
    assert kept.returncode == 0 and "kept the token" in kept.stdout, kept.stdout + kept.stderr
    assert tomllib.loads(path.read_text())["runners"][0]["token"] == "glrt-renewed"
    assert "awk" in argv and "sha256sum" in argv, "the wrappers recorded nothing: the check would be empty"
    assert "glrt-" not in argv, "a runner token appeared on a command line:\n" + argv


@needs_sandbox
@pytest.mark.parametrize("planted", ["config.toml", ".config.toml.token.sha256"])
def test_script_refuses_a_link_planted_in_the_runner_folder(tmp_path: Path, planted: str):
    """The runner container writes /srv/gitlab-runner/config: a link there is never followed."""
    srv = tmp_path / "srv"
    (srv / "gitlab-runner/config").mkdir(parents=True)
    victim = tmp_path / "passwd"
    victim.write_text("root:x:0:0::/root:/bin/bash\n")
    (srv / "gitlab-runner/config" / planted).symlink_to(victim)
    result = write_config(srv, rendered("glrt-first"))
    assert result.returncode == 2 and "is a symbolic link" in result.stderr, result.stdout + result.stderr
    assert victim.read_text() == "root:x:0:0::/root:/bin/bash\n"
