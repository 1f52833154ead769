#!/usr/bin/env python3
"""gitlab-ctl, gitlab-backup, gitlab-rake and gitlab-healthcheck of the GitLab STAND-IN (not
GitLab): every call is appended to /var/log/gitlab/standin-calls.jsonl (program name and
arguments), then:

* gitlab-healthcheck: GET http://127.0.0.1/-/health, exit 0 when it answers 200;
* gitlab-backup create: writes /var/opt/gitlab/backups/<epoch>_<Y_m_d>_<version>_gitlab_backup.tar
  holding /var/opt/gitlab (but its backups folder) and prints its name as GitLab does;
* gitlab-backup restore BACKUP=<id>: extracts that archive over /var/opt/gitlab;
* gitlab-ctl reconfigure: recorded with the SHA-256 of /etc/gitlab/gitlab.rb it would apply;
* everything else (stop, start, registry-garbage-collect, gitlab-rake ...):
  recorded only, exit 0.
"""

import hashlib
import json
import os
import sys
import tarfile
import time
import urllib.request

CALLS = "/var/log/gitlab/standin-calls.jsonl"
GITLAB_RB = "/etc/gitlab/gitlab.rb"
DATA = "/var/opt/gitlab"
BACKUPS = f"{DATA}/backups"
VERSION = os.environ.get("GITLAB_STANDIN_VERSION", "0.0.0-ce.0")


def record(prog: str, args: list) -> None:
    entry = {"at": time.time(), "program": prog, "args": args}
    if prog == "gitlab-ctl" and args[:1] == ["reconfigure"]:
        # What a reconfigure would apply: the SHA-256 of /etc/gitlab/gitlab.rb at the call.
        try:
            with open(GITLAB_RB, "rb") as f:
                entry["gitlab_rb_sha256"] = hashlib.sha256(f.read()).hexdigest()
        except OSError:
            entry["gitlab_rb_sha256"] = None
    os.makedirs(os.path.dirname(CALLS), exist_ok=True)
    with open(CALLS, "a") as f:
        f.write(json.dumps(entry) + "\n")


def healthcheck() -> int:
    try:
        with urllib.request.urlopen("http://127.0.0.1/-/health", timeout=10) as r:
            return 0 if r.status == 200 else 1
    except OSError:
        return 1


def backup_create() -> int:
    os.makedirs(BACKUPS, exist_ok=True)
    now = time.time()
    name = f"{int(now)}_{time.strftime('%Y_%m_%d', time.gmtime(now))}_{VERSION.removesuffix('-ce.0')}"
    path = f"{BACKUPS}/{name}_gitlab_backup.tar"
    with tarfile.open(path + ".part", "w") as tar:
        for entry in sorted(os.listdir(DATA)):
            if entry != "backups":
                tar.add(os.path.join(DATA, entry), arcname=entry)
    os.replace(path + ".part", path)
    os.chmod(path, 0o600)
    print(f"Backup {name} is done.")
    return 0


def backup_restore(args: list) -> int:
    backup = next((a.split("=", 1)[1] for a in args if a.startswith("BACKUP=")), None)
    if backup is None:
        print("BACKUP=<id> is required by the stand-in", file=sys.stderr)
        return 2
    path = f"{BACKUPS}/{backup}_gitlab_backup.tar"
    if not os.path.exists(path):
        print(f"The backup file {path} does not exist!", file=sys.stderr)
        return 1
    with tarfile.open(path) as tar:
        tar.extractall(DATA)
    print(f"Restore of {backup} is done.")
    return 0


def main() -> int:
    prog, args = os.path.basename(sys.argv[0]), sys.argv[1:]
    record(prog, args)
    if prog == "gitlab-healthcheck":
        return healthcheck()
    if prog == "gitlab-backup" and args[:1] == ["create"]:
        return backup_create()
    if prog == "gitlab-backup" and args[:1] == ["restore"]:
        return backup_restore(args[1:])
    return 0


if __name__ == "__main__":
    sys.exit(main())
