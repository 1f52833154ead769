"""scripts/install-files.sh, run for real with bash in a private mount namespace whose /srv is a
temporary folder: atomic writes, modes, idempotence, ensure/prune/remove, refusals."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest

from conftest import ROOT
from tools import require_tool

from components.host.host_files import Ensure, install_args
from components.host.remote_script import FileSpec, tar_base64

SCRIPT = ROOT / "components" / "host" / "scripts" / "install-files.sh"


@pytest.fixture
def srv(tmp_path: Path) -> Path:
    unshare = require_tool("unshare")
    probe = subprocess.run([unshare, "-rm", "true"], capture_output=True)
    if probe.returncode != 0:
        pytest.skip("no user/mount namespaces here: " + probe.stderr.decode(errors="replace"))
    root = tmp_path / "srv"
    root.mkdir()
    return root


def install(srv: Path, files: list[FileSpec], *args: str) -> subprocess.CompletedProcess:
    """Run the script as root of a user namespace, with `srv` mounted at /srv."""
    stdin = tar_base64(files) if files else ""
    inner = f'mount --bind "$0" /srv && exec bash "$1" "${{@:2}}"'
    return subprocess.run(
        ["unshare", "-rm", "bash", "-c", inner, str(srv), str(SCRIPT), *args],
        input=stdin,
        capture_output=True,
        text=True,
        env=dict(os.environ, LC_ALL="C"),
    )


def test_files_are_written_with_their_modes_and_reported(srv: Path):
    r = install(srv, [FileSpec("/srv/traefik/traefik.yml", 0o644, "a: 1\n"), FileSpec("/srv/traefik/certs/key.pem", 0o400, "KEY\n")])
    assert r.returncode == 0, r.stderr
    assert r.stdout.startswith("changed: ") and "/srv/traefik/traefik.yml" in r.stdout
    assert (srv / "traefik/traefik.yml").read_text() == "a: 1\n"
    assert (srv / "traefik/certs/key.pem").stat().st_mode & 0o777 == 0o400


def test_a_second_run_changes_nothing_and_keeps_the_inode(srv: Path):
    files = [FileSpec("/srv/traefik/traefik.yml", 0o644, "a: 1\n")]
    install(srv, files)
    inode = (srv / "traefik/traefik.yml").stat().st_ino
    r = install(srv, files)
    assert (r.returncode, r.stdout.strip()) == (0, "unchanged"), r.stderr
    assert (srv / "traefik/traefik.yml").stat().st_ino == inode


def test_a_changed_file_is_replaced_by_rename(srv: Path):
    install(srv, [FileSpec("/srv/traefik/traefik.yml", 0o644, "a: 1\n")])
    inode = (srv / "traefik/traefik.yml").stat().st_ino
    r = install(srv, [FileSpec("/srv/traefik/traefik.yml", 0o644, "a: 2\n")])
    assert r.stdout.strip() == "changed: /srv/traefik/traefik.yml", r.stderr
    assert (srv / "traefik/traefik.yml").read_text() == "a: 2\n"
    assert (srv / "traefik/traefik.yml").stat().st_ino != inode, "atomic: a new file renamed into place"
    assert not [p for p in (srv / "traefik").iterdir() if p.name.startswith(".")], "no temp file left"


def test_ensure_creates_once_and_never_touches_the_content(srv: Path):
    args = install_args(ensure=[Ensure("/srv/traefik/letsencrypt/acme.json", 0o600)])
    assert install(srv, [], *args).returncode == 0
    acme = srv / "traefik/letsencrypt/acme.json"
    assert acme.read_text() == "" and acme.stat().st_mode & 0o777 == 0o600
    acme.write_text('{"letsencrypt": {}}')
    acme.chmod(0o644)
    r = install(srv, [], *args)
    assert acme.read_text() == '{"letsencrypt": {}}', "Traefik's state is kept"
    assert acme.stat().st_mode & 0o777 == 0o600 and "acme.json" in r.stdout


def test_prune_removes_files_not_in_the_bundle_and_keeps_ensured_ones(srv: Path):
    dns = srv / "traefik/secrets/dns"
    dns.mkdir(parents=True)
    (dns / "OLD_TOKEN").write_text("x")
    (dns / "stamp").write_text("")
    args = install_args(ensure=[Ensure("/srv/traefik/secrets/dns/stamp", 0o644)], prune=["/srv/traefik/secrets/dns"])
    r = install(srv, [FileSpec("/srv/traefik/secrets/dns/CF_DNS_API_TOKEN", 0o400, "t")], *args)
    assert r.returncode == 0, r.stderr
    assert sorted(p.name for p in dns.iterdir()) == ["CF_DNS_API_TOKEN", "stamp"]


def test_remove_deletes_a_file_no_longer_managed(srv: Path):
    (srv / "traefik/dynamic").mkdir(parents=True)
    (srv / "traefik/dynamic/dashboard.yml").write_text("x")
    r = install(srv, [], *install_args(remove=["/srv/traefik/dynamic/dashboard.yml"]))
    assert r.returncode == 0 and not (srv / "traefik/dynamic/dashboard.yml").exists()


@pytest.mark.parametrize(
    "files,args,why",
    [
        ([FileSpec("/etc/passwd", 0o644, "x\n")], (), "not under /srv/"),
        ([FileSpec("/srv/a/../../etc/x", 0o644, "x\n")], (), "'..'"),
        ([FileSpec("/srv/traefik/empty.yml", 0o644, "")], (), "empty file"),
        ([], ("prune=/etc",), "not under /srv/"),
        ([], ("ensure=/srv/x:rw",), "bad mode"),
        ([], ("chmod=/srv/x",), "unknown argument"),
    ],
)
def test_bad_requests_are_refused_before_anything_is_written(srv: Path, files, args, why):
    r = install(srv, [FileSpec("/srv/traefik/ok.yml", 0o644, "ok\n"), *files], *args)
    assert r.returncode == 2 and why in r.stderr, r.stderr
    assert not (srv / "traefik/ok.yml").exists()


# -- symbolic links: never followed (a service can plant them in the folders it writes) ------------
@pytest.fixture
def victim(tmp_path: Path) -> Path:
    """A file outside /srv that a planted link points at (think /etc/shadow)."""
    target = tmp_path / "outside" / "shadow"
    target.parent.mkdir()
    target.write_text("root:$6$hash:19000:0:99999:7:::\n")
    target.chmod(0o640)
    return target


def untouched(victim: Path) -> bool:
    return victim.read_text() == "root:$6$hash:19000:0:99999:7:::\n" and victim.stat().st_mode & 0o777 == 0o640


def test_an_ensured_file_that_is_a_link_is_refused_and_its_target_untouched(srv: Path, victim: Path):
    (srv / "traefik/letsencrypt").mkdir(parents=True)
    (srv / "traefik/letsencrypt/acme.json").symlink_to(victim)
    r = install(srv, [FileSpec("/srv/traefik/traefik.yml", 0o644, "a: 1\n")], *install_args(ensure=[Ensure("/srv/traefik/letsencrypt/acme.json", 0o600)]))
    assert r.returncode == 2, r.stdout + r.stderr
    assert "refusing /srv/traefik/letsencrypt/acme.json: /srv/traefik/letsencrypt/acme.json is a symbolic link" in r.stderr
    assert untouched(victim), "the link's target was chmod-ed or written"
    assert not (srv / "traefik/traefik.yml").exists(), "nothing is written when a link is found"


def test_a_dangling_link_in_place_of_an_ensured_file_is_refused(srv: Path, tmp_path: Path):
    (srv / "traefik/letsencrypt").mkdir(parents=True)
    target = tmp_path / "outside-nologin"
    (srv / "traefik/letsencrypt/acme.json").symlink_to(target)
    r = install(srv, [], *install_args(ensure=[Ensure("/srv/traefik/letsencrypt/acme.json", 0o600)]))
    assert r.returncode == 2 and "is a symbolic link" in r.stderr, r.stderr
    assert not target.exists(), "the link's target was created"


def test_a_managed_file_that_is_a_link_is_refused(srv: Path, victim: Path):
    (srv / "services/gitlab/config").mkdir(parents=True)
    (srv / "services/gitlab/config/gitlab.rb").symlink_to(victim)
    r = install(srv, [FileSpec("/srv/services/gitlab/config/gitlab.rb", 0o600, "external_url 'x'\n")])
    assert r.returncode == 2 and "gitlab.rb is a symbolic link" in r.stderr, r.stderr
    assert untouched(victim)


@pytest.mark.parametrize(
    "files, args",
    [
        ([FileSpec("/srv/traefik/letsencrypt/sub/x.yml", 0o644, "x\n")], ()),
        ([], ("ensure=/srv/traefik/letsencrypt/sub/acme.json:0600",)),
        ([], ("prune=/srv/traefik/letsencrypt/sub",)),
        ([], ("remove=/srv/traefik/letsencrypt/sub/shadow",)),
    ],
    ids=["file", "ensure", "prune", "remove"],
)
def test_a_linked_folder_on_the_way_is_refused(srv: Path, victim: Path, files, args):
    (srv / "traefik/letsencrypt").mkdir(parents=True)
    (srv / "traefik/letsencrypt/sub").symlink_to(victim.parent, target_is_directory=True)
    r = install(srv, files, *args)
    assert r.returncode == 2 and "/srv/traefik/letsencrypt/sub is a symbolic link" in r.stderr, r.stderr
    assert untouched(victim) and sorted(p.name for p in victim.parent.iterdir()) == ["shadow"]


def test_links_elsewhere_in_a_service_folder_are_left_alone(srv: Path, victim: Path):
    """Only the paths the step manages matter: a link beside them is neither followed nor refused."""
    (srv / "traefik/letsencrypt").mkdir(parents=True)
    (srv / "traefik/letsencrypt/other").symlink_to(victim)
    args = install_args(ensure=[Ensure("/srv/traefik/letsencrypt/acme.json", 0o600)], prune=["/srv/traefik/letsencrypt"])
    r = install(srv, [], *args)
    assert r.returncode == 0, r.stderr
    assert (srv / "traefik/letsencrypt/other").is_symlink() and untouched(victim)


def test_an_ensured_file_with_another_name_is_not_chmod_ed(srv: Path, victim: Path):
    """A hard link has no link to see: the step checks the file it opened has one name only."""
    (srv / "traefik/letsencrypt").mkdir(parents=True)
    os.link(victim, srv / "traefik/letsencrypt/acme.json")
    r = install(srv, [], *install_args(ensure=[Ensure("/srv/traefik/letsencrypt/acme.json", 0o600)]))
    assert r.returncode == 2 and "the file has other names (hard links)" in r.stderr, r.stderr
    assert untouched(victim)
