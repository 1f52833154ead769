"""GitLab's initial root password file exists only while GitLab has no database: it is installed
by its own step only while the database is absent, removed once GitLab is up (healthy, so the
database is seeded), and never installed again; gitlab.rb reads it only while it exists."""

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
    GITLAB_RB,
    ROOT_PASSWORD_IN_CONTAINER,
    ROOT_PASSWORD_RB,
    render_root_password_rb,
    ruby,
)

INSTALL = ROOT / "components" / "host" / "scripts" / "install-files.sh"
FORGET = ROOT / "components" / "services" / "scripts" / "forget-initial-root-password.sh"


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


def test_the_file_is_forgotten_once_gitlab_is_up():
    run = production()
    forget = run.named("gitlab-server-forget-root-password")
    assert "forget-initial-root-password.sh" in forget.plain["create"], forget.urn
    assert script_args(forget)[:2] == ["gitlab", ROOT_PASSWORD_RB], forget.urn
    assert run.named("gitlab-server-container").urn in forget.dependencies, forget.urn
    assert not forget.plain.get("stdin"), "nothing secret is needed to delete the file"


def test_a_password_change_touches_neither_gitlab_rb_nor_the_forget_step():
    other = run_stack(production_config(gitlabRootPassword="Another-passw0rd-1"), secrets=PRODUCTION_SECRETS)
    base = production()
    for name in ("gitlab-server-files", "gitlab-server-forget-root-password"):
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


# -- forget-initial-root-password.sh, for real (a fake docker reports the container's health) -----
def fake_docker(tmp_path: Path, statuses: list[str]) -> str:
    """A `docker` that answers `docker inspect` with the next of `statuses` (the last repeats)."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir(exist_ok=True)
    state = tmp_path / "docker-calls"
    state.write_text("0")
    lines = "\n".join(f'  {i}) echo {s} ;;' for i, s in enumerate(statuses[:-1]))
    (bin_dir / "docker").write_text(
        "#!/bin/bash\n"
        f'[ "$1" = inspect ] || exit 2\nn=$(cat {state}); echo $((n + 1)) > {state}\n'
        f'case $n in\n{lines}\n  *) echo {statuses[-1]} ;;\nesac\n'
    )
    (bin_dir / "docker").chmod(0o755)
    return str(bin_dir)


def test_the_file_is_removed_once_gitlab_is_healthy(srv: Path, tmp_path: Path):
    host_path(srv, ROOT_PASSWORD_RB).write_text(render_root_password_rb(GITLAB_ROOT_PASSWORD))
    docker = fake_docker(tmp_path, ["starting", "starting", "healthy"])
    r = in_srv(srv, FORGET, "gitlab", ROOT_PASSWORD_RB, "60", "0", path=docker)
    assert r.returncode == 0 and r.stdout.strip() == f"removed {ROOT_PASSWORD_RB}", r.stdout + r.stderr
    assert not host_path(srv, ROOT_PASSWORD_RB).exists()
    assert (tmp_path / "docker-calls").read_text().strip() == "3", "it waited for healthy"


def test_the_file_stays_and_the_step_fails_when_gitlab_never_gets_healthy(srv: Path, tmp_path: Path):
    host_path(srv, ROOT_PASSWORD_RB).write_text("x")
    docker = fake_docker(tmp_path, ["unhealthy"])
    r = in_srv(srv, FORGET, "gitlab", ROOT_PASSWORD_RB, "2", "1", path=docker)
    assert r.returncode == 1 and "is not healthy after 2s" in r.stderr and "run `pulumi up` again" in r.stderr, r.stderr
    assert host_path(srv, ROOT_PASSWORD_RB).exists()


def test_nothing_to_forget_is_fine(srv: Path, tmp_path: Path):
    r = in_srv(srv, FORGET, "gitlab", ROOT_PASSWORD_RB, "60", "0", path=fake_docker(tmp_path, ["healthy"]))
    assert (r.returncode, r.stdout.strip()) == (0, "absent"), r.stderr


@pytest.mark.parametrize("args", [("gitlab", "/etc/shadow", "60"), ("gitlab", ROOT_PASSWORD_RB, "soon"), ("gitlab; reboot", ROOT_PASSWORD_RB, "60")])
def test_bad_arguments_are_refused(srv: Path, tmp_path: Path, args):
    r = in_srv(srv, FORGET, *args, path=fake_docker(tmp_path, ["healthy"]))
    assert r.returncode == 2, r.stdout + r.stderr
