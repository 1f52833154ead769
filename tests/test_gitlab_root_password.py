"""GitLab's initial root password file exists only while GitLab has no database: it is installed
by its own step only while the database is absent, deleted by the container itself right after
the reconfigure that seeded the database (the image's GITLAB_POST_RECONFIGURE_SCRIPT), and never
installed again; gitlab.rb reads it only while it exists."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest

from conftest import GITLAB_ROOT_PASSWORD, ROOT, run_stack, production_config, PRODUCTION_SECRETS
from service_files import bundle, production, script_args
from tools import require_tool

from components.host.host_files import install_args
from components.host.remote_script import FileSpec, tar_base64
from components.services.gitlab_server import (
    DATABASE_MARKER,
    FORGET_ROOT_PASSWORD,
    GITLAB_RB,
    ROOT_PASSWORD_IN_CONTAINER,
    ROOT_PASSWORD_RB,
    render_root_password_rb,
    ruby,
)

INSTALL = ROOT / "components" / "host" / "scripts" / "install-files.sh"


# -- the graph (mocks) ----------------------------------------------------------------------------
def test_the_configuration_step_carries_no_password():
    run = production()
    files = run.named("gitlab-server-files")
    assert ROOT_PASSWORD_RB not in bundle(files), files.urn
    assert all(GITLAB_ROOT_PASSWORD not in text for _, text in bundle(files).values()), files.urn


def test_the_password_has_its_own_step_through_secret_stdin_until_the_database_exists():
    run = production()
    step = run.named("gitlab-server-root-password")
    assert step.secret("stdin"), step.urn
    mode, text = bundle(step)[ROOT_PASSWORD_RB]
    assert (mode, text) == (0o600, render_root_password_rb(GITLAB_ROOT_PASSWORD))
    assert f"gitlab_rails['initial_root_password'] = {ruby(GITLAB_ROOT_PASSWORD)}" in text.splitlines()
    assert f"until={DATABASE_MARKER}" in script_args(step), step.urn
    assert DATABASE_MARKER == "/srv/services/gitlab/data/postgresql/data/PG_VERSION"


def test_gitlab_starts_after_the_password_step():
    run = production()
    assert run.named("gitlab-server-root-password").urn in run.named("gitlab-server-container").dependencies


def test_gitlab_rb_reads_the_password_file_only_while_it_exists():
    run = production()
    text = bundle(run.named("gitlab-server-files"))[GITLAB_RB][1]
    path = ruby(ROOT_PASSWORD_IN_CONTAINER)
    assert f"from_file {path} if File.exist?({path})" in text.splitlines()


def test_the_container_deletes_the_file_after_the_reconfigure_that_seeds_the_database():
    """The gitlab-ce image's /assets/wrapper evals GITLAB_POST_RECONFIGURE_SCRIPT after
    `gitlab-ctl reconfigure` on every start (and stops before it when reconfigure fails)."""
    container = production().named("gitlab-server-container")
    envs = dict(e.split("=", 1) for e in container.plain["envs"])
    assert envs["GITLAB_POST_RECONFIGURE_SCRIPT"] == FORGET_ROOT_PASSWORD == f"rm -f -- {ROOT_PASSWORD_IN_CONTAINER}", container.urn
    assert GITLAB_ROOT_PASSWORD not in str(container.plain), container.urn


def test_a_password_change_touches_neither_gitlab_rb_nor_the_container():
    other = run_stack(production_config(gitlabRootPassword="Another-passw0rd-1"), secrets=PRODUCTION_SECRETS)
    base = production()
    for name in ("gitlab-server-files", "gitlab-server-container"):
        assert other.named(name).plain == base.named(name).plain, name


# -- install-files.sh until=PATH, for real --------------------------------------------------------
@pytest.fixture
def srv(tmp_path: Path) -> Path:
    unshare = require_tool("unshare")
    if subprocess.run([unshare, "-rm", "true"], capture_output=True).returncode != 0:
        pytest.skip("no user/mount namespaces here")
    root = tmp_path / "srv"
    (root / "services/gitlab/config").mkdir(parents=True)
    (root / "services/gitlab/data").mkdir(parents=True)
    return root


def in_srv(srv: Path, script: Path, *args: str, stdin: str = "", path: str = "") -> subprocess.CompletedProcess:
    inner = f'mount --bind "$0" /srv && exec bash "$1" "${{@:2}}"'
    env = dict(os.environ, LC_ALL="C", PATH=f"{path}:{os.environ['PATH']}" if path else os.environ["PATH"])
    return subprocess.run(
        ["unshare", "-rm", "bash", "-c", inner, str(srv), str(script), *args],
        input=stdin, capture_output=True, text=True, env=env, timeout=60,
    )


def password_bundle() -> str:
    return tar_base64([FileSpec(ROOT_PASSWORD_RB, 0o600, render_root_password_rb(GITLAB_ROOT_PASSWORD))])


def host_path(srv: Path, path: str) -> Path:
    return srv / path.removeprefix("/srv/")


def test_before_the_database_exists_the_password_file_is_installed(srv: Path):
    r = in_srv(srv, INSTALL, *install_args(until=DATABASE_MARKER), stdin=password_bundle())
    assert r.returncode == 0 and r.stdout.strip() == f"changed: {ROOT_PASSWORD_RB}", r.stdout + r.stderr
    assert host_path(srv, ROOT_PASSWORD_RB).stat().st_mode & 0o777 == 0o600


def test_once_the_database_exists_the_password_file_is_removed_not_installed(srv: Path):
    in_srv(srv, INSTALL, *install_args(until=DATABASE_MARKER), stdin=password_bundle())
    marker = host_path(srv, DATABASE_MARKER)
    marker.parent.mkdir(parents=True)
    marker.write_text("16\n")
    r = in_srv(srv, INSTALL, *install_args(until=DATABASE_MARKER), stdin=password_bundle())
    assert r.returncode == 0 and f"{ROOT_PASSWORD_RB} (removed" in r.stdout, r.stdout + r.stderr
    assert not host_path(srv, ROOT_PASSWORD_RB).exists()
    again = in_srv(srv, INSTALL, *install_args(until=DATABASE_MARKER), stdin=password_bundle())
    assert (again.returncode, again.stdout.strip()) == (0, "unchanged"), again.stdout + again.stderr
    assert not host_path(srv, ROOT_PASSWORD_RB).exists()


def test_a_link_in_place_of_the_marker_counts_as_the_database(srv: Path, tmp_path: Path):
    """GitLab writes its data folder: a dangling link there must not bring the password back."""
    marker = host_path(srv, DATABASE_MARKER)
    marker.parent.mkdir(parents=True)
    marker.symlink_to(tmp_path / "nowhere")
    r = in_srv(srv, INSTALL, *install_args(until=DATABASE_MARKER), stdin=password_bundle())
    assert r.returncode == 0 and not host_path(srv, ROOT_PASSWORD_RB).exists(), r.stdout + r.stderr


# -- the container's removal command, for real (its /etc/gitlab stood in by a private tmpfs) -------
def test_the_removal_command_deletes_the_file_and_only_it(tmp_path: Path):
    unshare = require_tool("unshare")
    if subprocess.run([unshare, "-rm", "true"], capture_output=True).returncode != 0:
        pytest.skip("no user/mount namespaces here")
    inner = (
        "mount -t tmpfs tmpfs /etc && mkdir /etc/gitlab && echo secret > /etc/gitlab/delivery-root-password.rb "
        "&& echo cfg > /etc/gitlab/gitlab.rb && eval \"$GITLAB_POST_RECONFIGURE_SCRIPT\" && ls -A /etc/gitlab "
        "&& eval \"$GITLAB_POST_RECONFIGURE_SCRIPT\" && echo again-fine"
    )
    env = dict(os.environ, GITLAB_POST_RECONFIGURE_SCRIPT=FORGET_ROOT_PASSWORD)
    r = subprocess.run([unshare, "-rm", "bash", "-c", inner], capture_output=True, text=True, env=env, timeout=60)
    assert r.returncode == 0, r.stderr
    assert r.stdout.split() == ["gitlab.rb", "again-fine"], r.stdout
