"""adopt-host.sh run for real in a private mount namespace (`unshare -rm`), on the parts that
need no Docker daemon (a `docker` shim on PATH answers that none runs): the hand-made
docker.service drop-in is listed by `check` without being touched, renamed (kept, byte-identical)
by `apply`, and a host with nothing hand-made is `unchanged`. The containers' part runs on the
disposable host: tests/e2e/test_adopt_e2e.py."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

from tools import unavailable

from components.operations.adoption import SCRIPT

OVERRIDE = (
    "[Service]\nExecStart=\nExecStart=/usr/bin/dockerd -H fd:// -H tcp://0.0.0.0:2376 --tlsverify "
    "--tlscacert=/home/staging/.docker/ca.pem --tlscert=/home/staging/.docker/server-cert.pem "
    "--tlskey=/home/staging/.docker/server-key.pem\n"
)
MOUNTS = {"etc-docker": "/etc/docker", "etc-systemd-system": "/etc/systemd/system", "var-lib": "/var/lib", "srv": "/srv", "home": "/home"}


@pytest.fixture
def box(tmp_path: Path) -> Path:
    if shutil.which("unshare") is None or subprocess.run(["unshare", "-rm", "true"], capture_output=True).returncode != 0:
        unavailable("unprivileged user and mount namespaces (unshare -rm) are not available")
    for d, target in MOUNTS.items():
        if not Path(target).is_dir():
            unavailable(f"{target} does not exist on this machine")
        (tmp_path / d).mkdir()
    (tmp_path / "bin").mkdir()
    (tmp_path / "bin/docker").write_text("#!/bin/bash\nexit 1\n")  # no daemon answers
    (tmp_path / "bin/docker").chmod(0o755)
    return tmp_path


def adopt(box: Path, mode: str) -> subprocess.CompletedProcess:
    binds = "; ".join(f'mount --bind "{box / d}" {target}' for d, target in MOUNTS.items())
    return subprocess.run(
        ["unshare", "-rm", "bash", "-c", f'set -e; {binds}; exec bash "{SCRIPT}" "$@"', "adopt",
         mode, "gitlab,traefik", "gitlab/gitlab-ce:18.5.1-ce.0", "1800", "dev.company.ru"],
        input="", capture_output=True, text=True, timeout=60,
        env={"PATH": f"{box / 'bin'}:/usr/sbin:/usr/bin:/sbin:/bin"},
    )


def test_nothing_hand_made_is_unchanged(box: Path):
    done = adopt(box, "apply")
    assert (done.returncode, done.stdout) == (0, "unchanged\n"), done.stderr


def test_check_lists_the_hand_made_drop_in_and_touches_nothing(box: Path):
    dropins = box / "etc-systemd-system/docker.service.d"
    dropins.mkdir()
    (dropins / "override.conf").write_text(OVERRIDE)
    (dropins / "10-delivery.conf").write_text("[Service]\nExecStart=\nExecStart=/usr/sbin/dockerd\n")
    done = adopt(box, "check")
    assert done.returncode == 0, done.stderr
    assert "hand-made docker drop-in /etc/systemd/system/docker.service.d/override.conf" in done.stdout
    assert "10-delivery.conf" not in done.stdout  # the program's own
    assert "rename /etc/systemd/system/docker.service.d/override.conf to override.conf.pre-adoption-" in done.stdout
    assert sorted(p.name for p in dropins.iterdir()) == ["10-delivery.conf", "override.conf"]


def test_apply_renames_the_drop_in_and_keeps_daemon_json_then_is_unchanged(box: Path):
    dropins = box / "etc-systemd-system/docker.service.d"
    dropins.mkdir()
    (dropins / "override.conf").write_text(OVERRIDE)
    (box / "etc-docker/daemon.json").write_text('{\n  "storage-driver": "overlay2"\n}\n')
    done = adopt(box, "apply")
    assert done.returncode == 0, done.stderr
    assert done.stdout.startswith("adopted: "), done.stdout
    [kept] = list(dropins.iterdir())
    assert kept.name.startswith("override.conf.pre-adoption-") and kept.read_text() == OVERRIDE
    [copy] = [p for p in (box / "etc-docker").iterdir() if p.name.startswith("daemon.json.pre-adoption-")]
    assert copy.read_text() == (box / "etc-docker/daemon.json").read_text()
    # once configure-docker.sh has recorded its files, nothing is left to adopt
    (box / "var-lib/delivery").mkdir()
    (box / "var-lib/delivery/docker-config.applied").write_text("0" * 64 + "\n")
    again = adopt(box, "apply")
    assert (again.returncode, again.stdout) == (0, "unchanged\n"), again.stderr
