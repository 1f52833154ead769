"""Backup and restore, for real, on three disposable hosts on the private bridge
(docs/operations.md, "Backups", "Restore"):

* `source`: a Services host (Debian's docker.io, the GitLab STAND-IN as container `gitlab` with
  the program's three bind volumes), with GitLab data and config files written by the test;
* `repo`: the off-host restic repository, reached over SFTP (its sshd, user `backup`);
* `target`: a fresh Services host (docker.io, the stand-in with empty data, another gitlab.rb).

The program's own install step (scripts/install-backup.sh, over SSH, with the stdin the Backup
component builds: components.operations.backup.backup_files on the parsed stack config) installs
real restic (Debian's package) and the units on source and target. The backup is taken by the
timer's unit (`systemctl start` of the service delivery-backup-gitlab.timer triggers); the source's
data is then wiped; scripts/restore-gitlab.sh restores the newest snapshot onto target; every file
under config/ and data/ is compared (SHA-256, mode, owner). GitLab's commands run against the
stand-in, which records them: it proves the wiring around GitLab, not GitLab.

Also: the pre-upgrade step on the source (scripts/gitlab-pre-upgrade.sh) runs the backup unit
before an allowed upgrade and refuses one that skips a stop; a failing backup fails its unit and
calls the webhook (an HTTP listener of the test on the bridge's gateway).
"""

from __future__ import annotations

import http.server
import json
import os
import subprocess
import sys
import tempfile
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from types import SimpleNamespace

import pulumi
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ed25519

from components.config import load_stack_config
from components.config.services import DEFAULT_GITLAB_VERSION
from components.host.remote_script import script_command, tar_base64
from components.operations.backup import INSTALL_SCRIPT, RESTORE, RESTORE_SCRIPT, Secrets, backup_files, service_name, sets_for
from components.config.backup import SftpTarget
from components.operations.upgrade import SCRIPT as PRE_UPGRADE, stops_argument

from .conftest import DisposableHost, start_host, stop_host
from .platform_program import HOST_KEY_TYPE, OPERATOR_ADDRESS

pytestmark = pytest.mark.e2e

GITLAB_IMAGE = f"gitlab/gitlab-ce:{DEFAULT_GITLAB_VERSION}"
OLD_TAG = "gitlab/gitlab-ce:18.2.8-ce.0"
PASSWORD = "e2e-restic-password-Zq8"
SRV = "/srv/services/gitlab"
CALLS = f"{SRV}/logs/standin-calls.jsonl"


def _log(msg: str) -> None:
    sys.stderr.write(f"[e2e backup] {msg}\n")
    sys.stderr.flush()


def bridge_ip(host: DisposableHost) -> str:
    return host.daemon.docker("inspect", "-f", "{{.NetworkSettings.IPAddress}}", host.container).stdout.strip()


def sh(host: DisposableHost, command: str, timeout: float = 300, stdin: str | None = None) -> str:
    return host.exec(command, stdin=stdin, timeout=timeout).stdout.strip()


def program_step(host: DisposableHost, script, *args: str, stdin: str = "") -> tuple[int, str, str]:
    """A script of the program over SSH, as its remote.Command runs it (one trailing newline of
    stdout and stderr trimmed, as pulumi-command does)."""
    code, out, err = host.ssh(script_command(script, *args), stdin=stdin, timeout=600)
    return code, out.removesuffix("\n"), err.removesuffix("\n")


class Hook(http.server.BaseHTTPRequestHandler):
    received: list = []

    def do_POST(self):  # noqa: N802 - http.server's name
        body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
        Hook.received.append((self.path, json.loads(body)))
        self.send_response(204)
        self.end_headers()

    def log_message(self, *args):  # quiet
        pass


def services_host(host: DisposableHost, images, image_tag: str) -> None:
    """Debian's docker.io and the GitLab stand-in as the program runs GitLab (bind volumes).
    restic, openssh-client and curl come in the same apt run (one index download instead of
    three, the wall time's largest part): install-backup.sh then finds them installed and runs
    no apt (its apt branch is the same as the other install scripts')."""
    sh(host, "export DEBIAN_FRONTEND=noninteractive; apt-get -qq update && "
             "apt-get -qq install --no-install-recommends docker.io restic openssh-client curl >/dev/null", timeout=900)  # fmt: skip
    with tempfile.NamedTemporaryFile(suffix=".tar") as f:
        for chunk in images.export(GITLAB_IMAGE):
            f.write(chunk)
        f.flush()
        host.daemon.docker("cp", f.name, f"{host.container}:/tmp/gitlab-image.tar", timeout=300)
    sh(host, f"docker load -q -i /tmp/gitlab-image.tar && rm /tmp/gitlab-image.tar && docker tag {GITLAB_IMAGE} {image_tag} && docker rmi {GITLAB_IMAGE} >/dev/null")
    sh(host, f"install -d -m 0755 {SRV}/config {SRV}/data {SRV}/logs")


def start_gitlab(host: DisposableHost, image_tag: str) -> None:
    sh(host, f"docker run -d --name gitlab --restart always -v {SRV}/config:/etc/gitlab -v {SRV}/data:/var/opt/gitlab "
             f"-v {SRV}/logs:/var/log/gitlab {image_tag} >/dev/null")  # fmt: skip


def checksums(host: DisposableHost) -> dict[str, str]:
    """path -> 'sha256 mode uid:gid' of every file under config/ and data/."""
    meta = dict(line.split("\t", 1) for line in sh(host, f"cd {SRV} && find config data -type f -printf '%p\\t%m %U:%G\\n'").splitlines())
    sums = dict(line.split("  ", 1)[::-1] for line in sh(host, f"cd {SRV} && find config data -type f -print0 | xargs -0 sha256sum").splitlines())
    assert set(meta) == set(sums), (meta, sums)
    return {path: f"{sums[path]} {meta[path]}" for path in meta}


def calls(host: DisposableHost) -> list[list[str]]:
    return [[c["program"], *c["args"]] for c in map(json.loads, sh(host, f"cat {CALLS} 2>/dev/null || true").splitlines())]


@pytest.fixture(scope="module")
def platform(e2e_dockerd, e2e_image, e2e_images):
    t0 = time.monotonic()
    started: list[DisposableHost] = []
    server = http.server.ThreadingHTTPServer((OPERATOR_ADDRESS, 0), Hook)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        prefixes = ("delivery-e2e-bk-source", "delivery-e2e-bk-repo", "delivery-e2e-bk-target")
        with ThreadPoolExecutor(3) as pool:
            futures = [pool.submit(start_host, e2e_dockerd, e2e_image, name_prefix=prefix) for prefix in prefixes]
            for f in futures:  # every host that came up is stopped at the end, even if another failed
                try:
                    started.append(f.result())
                except Exception:
                    pass
        if len(started) != 3:
            pytest.fail("a disposable host did not come up", pytrace=False)
        source, repo, target = started
        _log(f"hosts up in {time.monotonic() - t0:.1f}s")
        for h in started:  # the program reaches each host on the bridge, port 22
            h.ssh_host, h.ssh_port = bridge_ip(h), 22
        # the SFTP repository: user restic, key only
        key = ed25519.Ed25519PrivateKey.generate()
        key_pem = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.OpenSSH, serialization.NoEncryption()).decode()
        public = key.public_key().public_bytes(serialization.Encoding.OpenSSH, serialization.PublicFormat.OpenSSH).decode()
        sh(repo, "useradd -m -s /bin/bash restic && install -d -o restic -g restic -m 0700 /srv/restic /home/restic/.ssh && "
                 "install -o restic -g restic -m 0600 /dev/stdin /home/restic/.ssh/authorized_keys", stdin=public + "\n")  # fmt: skip
        with ThreadPoolExecutor(2) as pool:
            list(pool.map(lambda h: services_host(h, e2e_images, OLD_TAG), (source, target)))
        _log(f"hosts, docker.io and the stand-in ready in {time.monotonic() - t0:.1f}s")
        hook_url = f"http://{OPERATOR_ADDRESS}:{server.server_address[1]}/backup-failed"
        repository = f"sftp:restic@{repo.ssh_host}:/srv/restic"
        known_hosts = f"{repo.ssh_host} {repo.host_keys[HOST_KEY_TYPE]}"
        yield SimpleNamespace(
            source=source, repo=repo, target=target, key_pem=key_pem, hook_url=hook_url, repository=repository,
            known_hosts=known_hosts, started=t0,
        )  # fmt: skip
    finally:
        server.shutdown()
        if os.environ.get("DELIVERY_E2E_KEEP") != "1":
            for h in started:
                stop_host(e2e_dockerd, h.container, h.volume)


def install_backups(p: SimpleNamespace, host: DisposableHost) -> tuple[int, str, str]:
    """The Backup component's install step for `host` as the services host of the stack config."""
    from conftest import PRODUCTION_SECRETS, production_config  # tests/conftest.py

    cfg = production_config(
        hosts=[{"name": "services", "address": host.ssh_host, "hostKey": host.host_keys[HOST_KEY_TYPE], "roles": ["gitlab"]},
               {"name": "production", "address": "192.0.2.1", "hostKey": host.host_keys[HOST_KEY_TYPE], "roles": ["traefik"]}],
        backupRepository=p.repository, backupPassword=PASSWORD, backupSftpPrivateKey=p.key_pem,
        backupSftpKnownHosts=p.known_hosts, backupWebhookUrl=p.hook_url, backupKeep=2,
    )  # fmt: skip
    pulumi.runtime.set_all_config(
        {f"delivery:{k}": v if isinstance(v, str) else json.dumps(v) for k, v in cfg.items()},
        secret_keys=[f"delivery:{k}" for k in PRODUCTION_SECRETS if k in cfg],
    )
    stack = load_stack_config(project="delivery", stack="production")
    services = stack.platform.hosts[0]
    assert stack.backup is not None
    user, _, rest = p.repository.removeprefix("sftp:").partition("@")
    secrets = Secrets(
        repository=p.repository, password=PASSWORD, sftp=SftpTarget(user, rest.split(":", 1)[0], 22),
        sftp_key=p.key_pem, webhook_url=p.hook_url,
    )  # fmt: skip
    files = backup_files(services, stack.backup, secrets, sets_for(services), check=True)
    return program_step(host, INSTALL_SCRIPT, stdin=tar_base64(files))


def test_backup_by_the_timer_unit_restored_onto_a_fresh_host_with_every_file_identical(platform):
    p = platform
    source, target = p.source, p.target
    # GitLab's state on the source: repositories, database dump, uploads (binary), config, secrets
    sh(source, f"""set -e
        mkdir -p {SRV}/data/git-data/repositories/group/app.git/objects/ab {SRV}/data/postgresql/data {SRV}/data/gitlab-rails/uploads/'with space'
        head -c 300000 /dev/urandom > {SRV}/data/git-data/repositories/group/app.git/objects/ab/cdef0123
        echo 'ref: refs/heads/main' > {SRV}/data/git-data/repositories/group/app.git/HEAD
        head -c 50000 /dev/urandom > {SRV}/data/postgresql/data/base.dump && echo 16 > {SRV}/data/postgresql/data/PG_VERSION
        head -c 20000 /dev/urandom > {SRV}/data/gitlab-rails/uploads/'with space'/logo.png
        chmod 0640 {SRV}/data/gitlab-rails/uploads/'with space'/logo.png && chown 998:998 {SRV}/data/postgresql/data/base.dump
        echo "external_url 'https://gitlab.company.ru'" > {SRV}/config/gitlab.rb && chmod 0600 {SRV}/config/gitlab.rb
        printf '{{"gitlab_rails": {{"secret_key_base": "%s"}}}}\\n' "$(head -c 32 /dev/urandom | base64)" > {SRV}/config/gitlab-secrets.json
        chmod 0600 {SRV}/config/gitlab-secrets.json""")
    start_gitlab(source, OLD_TAG)

    t0 = time.monotonic()
    code, out, err = install_backups(p, source)
    assert code == 0, out + err
    assert out.startswith("changed:") and "delivery-backup-gitlab.timer enabled" in out and "repository initialised" in out, out
    code, again, err = install_backups(p, source)
    assert (code, again) == (0, "unchanged"), again + err
    _log(f"install-backup.sh: {time.monotonic() - t0:.1f}s (restic {sh(source, 'restic version')})")

    # the backup the timer triggers
    assert sh(source, "systemctl show -p Unit --value delivery-backup-gitlab.timer") == service_name("gitlab")
    assert sh(source, "systemctl is-active delivery-backup-gitlab.timer delivery-backup-check.timer") == "active\nactive"
    assert "*-*-* 02:30:00" in sh(source, "systemctl show -p TimersCalendar --value delivery-backup-gitlab.timer")
    t0 = time.monotonic()
    sh(source, f"systemctl start {service_name('gitlab')}", timeout=600)
    assert sh(source, f"systemctl show -p Result --value {service_name('gitlab')}") == "success"
    _log(f"backup by the unit: {time.monotonic() - t0:.1f}s")
    creates = [c for c in calls(source) if c[:2] == ["gitlab-backup", "create"]]
    assert creates == [["gitlab-backup", "create", "STRATEGY=copy"]], calls(source)
    archives = sh(source, f"ls {SRV}/data/backups").split()
    assert len(archives) == 1 and archives[0].endswith("_gitlab_backup.tar"), archives
    snapshots = json.loads(sh(source, "/usr/local/lib/delivery/backup.sh restic snapshots --json --tag gitlab"))
    assert len(snapshots) == 1 and snapshots[0]["hostname"] == "services", snapshots
    assert sorted(snapshots[0]["paths"]) == sorted([f"{SRV}/data/backups/{archives[0]}", f"{SRV}/config/gitlab-secrets.json", f"{SRV}/config/gitlab.rb"])
    # the repository is on the other host, encrypted
    assert {"config", "data", "index", "keys", "snapshots"} <= set(sh(p.repo, "ls /srv/restic").split())
    before = checksums(source)
    assert len(before) >= 8, before

    # wipe the source: its data is gone
    sh(source, f"docker rm -f gitlab >/dev/null && rm -rf {SRV}/config {SRV}/data")

    # a fresh Services host: GitLab up with empty data and the program's own gitlab.rb
    sh(target, f"echo \"external_url 'https://fresh.example'\" > {SRV}/config/gitlab.rb && chmod 0600 {SRV}/config/gitlab.rb")
    start_gitlab(target, OLD_TAG)
    code, out, err = install_backups(p, target)
    assert code == 0, out + err
    t0 = time.monotonic()
    code, out, err = program_step(target, RESTORE_SCRIPT)
    assert code == 0, out + err
    assert out.startswith(f"restored GitLab backup {archives[0].removesuffix('_gitlab_backup.tar')}"), out
    _log(f"restore: {time.monotonic() - t0:.1f}s")
    after = checksums(target)
    assert after == before, {k: (before.get(k), after.get(k)) for k in set(before) | set(after) if before.get(k) != after.get(k)}
    backup_id = archives[0].removesuffix("_gitlab_backup.tar")
    assert [c for c in calls(target) if c[0] != "gitlab-healthcheck"] == [
        ["gitlab-ctl", "reconfigure"],
        ["gitlab-ctl", "stop", "puma"],
        ["gitlab-ctl", "stop", "sidekiq"],
        ["gitlab-backup", "restore", f"BACKUP={backup_id}", "force=yes"],
        ["gitlab-ctl", "reconfigure"],
        ["gitlab-ctl", "restart"],
        ["gitlab-rake", "gitlab:check", "SANITIZE=true"],
    ]
    # the installed copy is the program's script; a re-run changes nothing
    assert sh(target, f"cat {RESTORE}") == RESTORE_SCRIPT.read_text().strip()
    code, out, err = program_step(target, RESTORE_SCRIPT)
    assert (code, out) == (0, f"unchanged: GitLab backup {backup_id} is restored here already"), out + err
    assert checksums(target) == before


def test_pre_upgrade_backs_up_before_an_allowed_upgrade_and_refuses_a_skipped_stop(platform):
    p = platform
    target = p.target  # restored above: GitLab 18.2.8 (the stand-in tagged so) with backups installed
    count = lambda: len(json.loads(sh(target, "/usr/local/lib/delivery/backup.sh restic snapshots --json --tag gitlab")))  # noqa: E731
    before = count()
    code, out, err = program_step(target, PRE_UPGRADE, "gitlab", stops_argument(), service_name("gitlab"), stdin="18.8.1-ce.0\n")
    assert code == 1 and "skips the required upgrade stop 18.5" in err, out + err
    assert count() == before
    code, out, err = program_step(target, PRE_UPGRADE, "gitlab", stops_argument(), service_name("gitlab"), stdin="18.5.1-ce.0\n")
    assert code == 0, out + err
    assert out == "backed up (delivery-backup-gitlab.service) before upgrading GitLab from 18.2.8-ce.0 to 18.5.1-ce.0", out
    assert count() == before + 1


def test_a_failed_backup_fails_its_unit_and_calls_the_webhook(platform):
    p = platform
    target = p.target
    Hook.received.clear()
    sh(target, "docker stop gitlab >/dev/null")  # gitlab-backup create cannot run
    code = target.exec(f"systemctl start {service_name('gitlab')}", check=False, timeout=600).returncode
    assert code != 0
    assert sh(target, f"systemctl is-failed {service_name('gitlab')} || true") == "failed"
    deadline = time.monotonic() + 60
    while not Hook.received and time.monotonic() < deadline:
        time.sleep(0.5)
    assert Hook.received == [("/backup-failed", {"host": "services", "unit": service_name("gitlab"), "result": "failed"})]
    _log(f"module wall time so far: {time.monotonic() - p.started:.1f}s")
