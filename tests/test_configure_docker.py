"""configure-docker.sh run for real in a private mount namespace (`unshare -rm`): /etc/docker,
/etc/systemd/system and /var/lib are folders of the test, and `systemctl`, `dockerd`, `docker`
and `journalctl` are recording shims on PATH. What is checked is the script's own logic: which
files it writes, when it restarts Docker, and that a run interrupted between writing the files
and restarting Docker is completed by the next run (issue 14, finding 9). The same interruption
on a real host, with a real daemon: tests/e2e/test_docker_host_e2e.py."""

from __future__ import annotations

import hashlib
import shutil
import subprocess
from pathlib import Path

import pytest

from tools import unavailable

from components.host.docker_host import DAEMON_JSON, DROP_IN, TLS_DIR
from components.host.remote_script import SCRIPTS, FileSpec, tar_base64

SCRIPT = SCRIPTS / "configure-docker.sh"

SHIMS = {
    # `systemctl daemon-reload` is the first thing the script does to restart Docker: with
    # $SANDBOX/kill-at-reload present, the shim kills the script there (SIGKILL, no trap runs),
    # exactly between "files written" and "Docker restarted".
    "systemctl": r"""#!/bin/bash
echo "systemctl $*" >> "$SANDBOX/calls"
case $1 in
  is-active) [ -e "$SANDBOX/active" ] ;;
  daemon-reload) if [ -e "$SANDBOX/kill-at-reload" ]; then rm -f "$SANDBOX/kill-at-reload"; kill -9 "$PPID"; sleep 5; fi ;;
  restart) sha256sum /etc/docker/tls/server-cert.pem | cut -c1-64 > "$SANDBOX/serving"; touch "$SANDBOX/active" ;;
  *) ;;
esac
""",
    "dockerd": "#!/bin/bash\necho 'Usage: dockerd [OPTIONS]'\n",
    "docker": "#!/bin/bash\n[ -e \"$SANDBOX/active\" ] && echo 20.10.24\n",
    "journalctl": "#!/bin/bash\nexit 0\n",
}


def files(server_cert: str) -> list[FileSpec]:
    return [
        FileSpec(DAEMON_JSON, 0o644, '{"hosts": ["unix:///var/run/docker.sock", "tcp://0.0.0.0:2376"]}\n'),
        FileSpec(DROP_IN, 0o644, "[Service]\nExecStart=\nExecStart=/usr/sbin/dockerd\n"),
        FileSpec(f"{TLS_DIR}/ca.pem", 0o444, "CA\n"),
        FileSpec(f"{TLS_DIR}/server-cert.pem", 0o444, server_cert),
        FileSpec(f"{TLS_DIR}/server-key.pem", 0o400, "KEY\n"),
    ]


@pytest.fixture
def sandbox(tmp_path: Path):
    unshare = shutil.which("unshare")
    if unshare is None or subprocess.run([unshare, "-rm", "true"], capture_output=True).returncode != 0:
        unavailable("unprivileged user and mount namespaces (unshare -rm) are not available")
    for mountpoint in ("/etc/docker", "/etc/systemd/system", "/var/lib"):
        if not Path(mountpoint).is_dir():  # bind mounts need an existing folder (docker.io makes /etc/docker)
            unavailable(f"{mountpoint} does not exist on this machine (make deps installs docker.io)")
    for d in ("etc-docker", "etc-systemd-system", "var-lib", "bin"):
        (tmp_path / d).mkdir()
    for name, text in SHIMS.items():
        (tmp_path / "bin" / name).write_text(text)
        (tmp_path / "bin" / name).chmod(0o755)
    (tmp_path / "active").touch()  # Docker runs, with whatever it was started with before
    return tmp_path


def run(sandbox: Path, server_cert: str) -> subprocess.CompletedProcess:
    inner = (
        "set -e; "
        'mount --bind "$SANDBOX/etc-docker" /etc/docker; '
        'mount --bind "$SANDBOX/etc-systemd-system" /etc/systemd/system; '
        'mount --bind "$SANDBOX/var-lib" /var/lib; '
        f'exec bash "{SCRIPT}"'
    )
    env = {"PATH": f"{sandbox / 'bin'}:/usr/sbin:/usr/bin:/sbin:/bin", "SANDBOX": str(sandbox)}
    return subprocess.run(
        ["unshare", "-rm", "bash", "-c", inner],
        input=tar_base64(files(server_cert)),
        capture_output=True,
        text=True,
        env=env,
        timeout=60,
    )


def restarts(sandbox: Path) -> int:
    calls = (sandbox / "calls").read_text().splitlines() if (sandbox / "calls").exists() else []
    return sum(1 for c in calls if c.startswith("systemctl restart"))


def serving(sandbox: Path) -> str:
    return (sandbox / "serving").read_text().strip()


def sha(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()


def test_first_run_writes_restarts_and_records_then_a_rerun_is_unchanged(sandbox: Path):
    first = run(sandbox, "CERT-1\n")
    assert first.returncode == 0, first.stderr
    assert first.stdout.strip().endswith("docker restarted"), first.stdout
    assert (sandbox / "etc-docker/tls/server-cert.pem").read_text() == "CERT-1\n"
    assert (sandbox / "var-lib/delivery/docker-config.applied").read_text().strip()
    assert (restarts(sandbox), serving(sandbox)) == (1, sha("CERT-1\n"))
    again = run(sandbox, "CERT-1\n")
    assert (again.returncode, again.stdout.strip()) == (0, "unchanged"), again.stderr
    assert restarts(sandbox) == 1


def test_a_run_killed_between_writing_and_restarting_is_completed_by_the_next(sandbox: Path):
    assert run(sandbox, "CERT-1\n").returncode == 0
    recorded = (sandbox / "var-lib/delivery/docker-config.applied").read_text()
    (sandbox / "kill-at-reload").touch()
    killed = run(sandbox, "CERT-2\n")
    assert killed.returncode != 0, killed.stdout
    # the new files are in place, Docker was not restarted: it still serves the first certificate
    assert (sandbox / "etc-docker/tls/server-cert.pem").read_text() == "CERT-2\n"
    assert (restarts(sandbox), serving(sandbox)) == (1, sha("CERT-1\n"))
    assert (sandbox / "var-lib/delivery/docker-config.applied").read_text() == recorded
    # the next run with the same config finishes the job instead of saying "unchanged"
    resumed = run(sandbox, "CERT-2\n")
    assert resumed.returncode == 0, resumed.stderr
    assert resumed.stdout.strip() == "completed: docker restarted with the files already in place"
    assert "completing an interrupted change" in resumed.stderr
    assert (restarts(sandbox), serving(sandbox)) == (2, sha("CERT-2\n"))
    # ... and only then is it converged
    third = run(sandbox, "CERT-2\n")
    assert (third.returncode, third.stdout.strip(), restarts(sandbox)) == (0, "unchanged", 2)
