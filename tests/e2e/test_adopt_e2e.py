"""Adoption of a host built by hand (issue 13, docs/adopt.md), for real on one disposable host.

The module first follows the hand procedure this program replaces (the seed document, copied
in the steps below; nothing is read from it at run time) on a fresh host, with these
substitutions: Debian's docker.io instead of get.docker.com (so dockerd is /usr/sbin/dockerd in
the hand-made override.conf), RSA 2048 instead of 4096 (time), the address clients use is
127.0.0.1, and the images are the harness's STAND-INS tagged as the procedure names them
(gitlab/gitlab-ce at the version the stack config pins, since the adoption keeps the version;
traefik:latest is the real Traefik; gitlab/gitlab-runner:latest the runner stand-in;
adferrand/letsencrypt-dns:latest and the demo backend the echo application). Data files with
known checksums go in the procedure's folders.

Then the program runs once with `adopt: true` on the host, and again. What is asserted:
every pre-existing data file is byte-identical afterwards (at its path, or, for the three files
the program replaces, in its timestamped copy), the containers that the program does not replace
kept running through the Docker restart (same container, same start time: live-restore), the
hand-made listener on 2376 refuses the hand-made client certificate and accepts the program's,
the old runner was unregistered after its running job finished, and the second run changes
nothing. `make adopt-check` (scripts/adopt_check.py) runs before, read-only.
"""

from __future__ import annotations

import hashlib
import json
import os
import socket
import ssl
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from types import SimpleNamespace

import pytest
import yaml

from components.config.gitlab import DEFAULT_RUNNER_VERSION
from components.config.services import DEFAULT_GITLAB_VERSION, DEFAULT_TRAEFIK_VERSION

from .conftest import DisposableHost, own_host
from .docker_engine import DockerEngine
from .images import ECHO_IMAGE
from .platform_program import HOST_NAME, run_program, stack_config
from .services_harness import StackState

pytestmark = pytest.mark.e2e

ROOT = Path(__file__).resolve().parents[2]
GITLAB_IMAGE = f"gitlab/gitlab-ce:{DEFAULT_GITLAB_VERSION}"
#: Images as the procedure names them -> the harness image they are a tag of.
HAND_TAGS = {
    "traefik:latest": f"traefik:{DEFAULT_TRAEFIK_VERSION}",
    "gitlab/gitlab-runner:latest": f"gitlab/gitlab-runner:{DEFAULT_RUNNER_VERSION}",
    "adferrand/letsencrypt-dns:latest": ECHO_IMAGE,
    "demo-prj/backend:latest": ECHO_IMAGE,
}
#: Data files the procedure's folders hold, with their size (random content, checksummed).
DATA_FILES = {
    "/srv/services/gitlab/config/gitlab-secrets.json": 2048,
    "/srv/services/gitlab/config/ssh_host_ed25519_key": 411,
    "/srv/services/gitlab/data/git-data/repositories/company/app.git/packed-refs": 4096,
    "/srv/services/gitlab/data/postgresql/data/PG_VERSION": 3,
    "/srv/services/gitlab/data/postgresql/data/base/16384/1259": 65536,
    "/srv/services/gitlab/logs/reconfigure/1700000000.log": 1024,
    "/srv/traefik/letsencrypt/acme.json": 8192,
    "/srv/traefik/dynamic-conf.yml": 300,
    "/srv/traefik/certs/dev.company.ru.cert.pem": 1800,
    "/srv/traefik/certs/dev.company.ru.privkey.pem": 1700,
    "/srv/demo-prj/db/data/base.bin": 131072,
    "/srv/demo-prj/backend/media/photo.jpg": 50000,
    "/srv/letsencrypt-dns/live/dev.company.ru/cert.pem": 1800,
    "/srv/letsencrypt-dns/live/dev.company.ru/privkey.pem": 1700,
}
#: Hand-made files the program replaces: each is kept as <path>.pre-adoption-<time>.
REPLACED = (
    "/srv/services/gitlab/config/gitlab.rb",
    "/srv/traefik/traefik.yml",
    "/srv/gitlab-runner/config/config.toml",
)
#: The procedure's copy of Staging's Docker client certificate for Traefik: the program's Traefik
#: step removes these paths (its review instance has its own), the adoption keeps copies first.
STAGING_CERTS = ("/srv/traefik/certs/staging/ca.pem", "/srv/traefik/certs/staging/cert.pem", "/srv/traefik/certs/staging/key.pem")
HAND_GITLAB_RB = """external_url "https://gitlab.company.ru"
nginx['listen_port'] = 80
nginx['listen_https'] = false
gitlab_rails['time_zone'] = 'Europe/Volgograd'
gitlab_rails['trusted_proxies'] = ['192.168.88.1', '192.168.88.2']
gitlab_rails['smtp_password'] = 'hand-made-smtp-secret'
registry_external_url 'https://registry.company.ru'
registry_nginx['listen_port'] = 5005
registry_nginx['listen_https'] = false
"""
HAND_TRAEFIK_YML = """entryPoints:
  web:
    address: ":80"
  websecure:
    address: ":443"
providers:
  file:
    filename: /etc/traefik/dynamic-conf.yml
"""
HAND_CONFIG_TOML = """concurrent = 1

[[runners]]
  name = "Production server gitlab runner"
  url = "https://gitlab.company.ru/"
  token = "hand-registered-runner-token-0001"
  executor = "docker"
  [runners.docker]
    image = "docker:stable"
    volumes = ["/var/run/docker.sock:/var/run/docker.sock", "/cache"]
"""
HAND_DOCKER = "/home/staging/.docker"
#: Containers the program does not replace: they must run through the adoption untouched.
KEEP_RUNNING = ("letsencrypt-dns", "demo-backend")
REPLACED_CONTAINERS = ("gitlab", "traefik", "gitlab-runner")


def _log(msg: str) -> None:
    sys.stderr.write(f"[e2e adopt] {msg}\n")
    sys.stderr.flush()


def sh(host: DisposableHost, command: str, timeout: float = 300, stdin: str | None = None) -> str:
    code, out, err = host.ssh(command, stdin=stdin, timeout=timeout)
    assert code == 0, f"{command[:300]!r} exited {code}: {out}{err}"
    return out.strip()


def digests(host: DisposableHost, paths) -> dict[str, str]:
    out = sh(host, "for f in " + " ".join(paths) + '; do echo "$f $(sha256sum < "$f" | cut -c1-64)"; done')
    return dict(line.split(" ", 1) for line in out.splitlines())


def container(host: DisposableHost, name: str) -> dict:
    return json.loads(sh(host, f"docker inspect {name}"))[0]


def tls_context(ca: str, cert: str, key: str) -> ssl.SSLContext:
    ctx = ssl.create_default_context(ssl.Purpose.SERVER_AUTH, cadata=ca)
    ctx.check_hostname = False  # the hand-made certificate's SAN is the procedure's; the CA is what matters
    with tempfile.TemporaryDirectory() as d:
        Path(d, "c.pem").write_text(cert)
        Path(d, "k.pem").write_text(key)
        ctx.load_cert_chain(str(Path(d, "c.pem")), str(Path(d, "k.pem")))
    return ctx


def ping(host: DisposableHost, ctx: ssl.SSLContext) -> str:
    with socket.create_connection((host.ssh_host, host.docker_port), timeout=15) as raw:
        with ctx.wrap_socket(raw, server_hostname=host.ssh_host) as s:
            s.sendall(b"GET /_ping HTTP/1.0\r\nHost: docker\r\n\r\n")
            data = b""
            while chunk := s.recv(65536):
                data += chunk
    return data.split(b"\r\n", 1)[0].decode()


def refused(host: DisposableHost, ctx: ssl.SSLContext) -> bool:
    try:
        ping(host, ctx)
    except (ssl.SSLError, ConnectionResetError, BrokenPipeError):
        return True
    return False


# -- the hand procedure ---------------------------------------------------------------------

def follow_the_procedure(host: DisposableHost, images) -> SimpleNamespace:
    t0 = time.monotonic()
    # Docker (docker.io in place of get.docker.com), overlay2 in daemon.json, the time zone.
    sh(host, "set -e; export DEBIAN_FRONTEND=noninteractive; apt-get -qq update >/dev/null; "
             "apt-get -qq install -y docker.io openssl >/dev/null; "
             "printf '{\\n  \"storage-driver\": \"overlay2\"\\n}\\n' > /etc/docker/daemon.json; systemctl restart docker; "
             "ln -sf /usr/share/zoneinfo/Europe/Volgograd /etc/localtime", timeout=900)
    _log(f"docker.io installed: {time.monotonic() - t0:.1f}s")
    # Docker over TCP with TLS: the procedure's openssl commands, files in /home/staging/.docker.
    sh(host, f"""set -e; mkdir -p /home/staging/docker-certs && cd /home/staging/docker-certs
openssl genrsa -aes256 -passout pass:hand-made -out ca-key.pem 2048 2>/dev/null
openssl req -new -x509 -days 365 -key ca-key.pem -passin pass:hand-made -sha256 -out ca.pem \
  -subj '/C=RU/ST=Volgograd-district/L=Volgograd/O=Company LLC/OU=IT/CN=127.0.0.1/emailAddress=mail@company.ru'
openssl genrsa -out server-key.pem 2048 2>/dev/null
openssl req -subj "/CN=127.0.0.1" -sha256 -new -key server-key.pem -out server.csr
echo subjectAltName = DNS:127.0.0.1,IP:127.0.0.1 >> extfile.cnf
echo extendedKeyUsage = serverAuth >> extfile.cnf
openssl x509 -req -days 365 -sha256 -in server.csr -CA ca.pem -CAkey ca-key.pem -passin pass:hand-made \
  -CAcreateserial -out server-cert.pem -extfile extfile.cnf 2>/dev/null
openssl genrsa -out key.pem 2048 2>/dev/null
openssl req -subj '/CN=client' -new -key key.pem -out client.csr
echo extendedKeyUsage = clientAuth > extfile-client.cnf
openssl x509 -req -days 365 -sha256 -in client.csr -CA ca.pem -CAkey ca-key.pem -passin pass:hand-made \
  -CAcreateserial -out cert.pem -extfile extfile-client.cnf 2>/dev/null
rm client.csr server.csr extfile.cnf extfile-client.cnf
mkdir -p {HAND_DOCKER} && mv /home/staging/docker-certs/* {HAND_DOCKER}/ && rm -rf /home/staging/docker-certs
mkdir -p /etc/systemd/system/docker.service.d
cat > /etc/systemd/system/docker.service.d/override.conf <<'EOF'
[Service]
ExecStart=
ExecStart=/usr/sbin/dockerd -H fd:// -H tcp://0.0.0.0:2376 --tlsverify --tlscacert={HAND_DOCKER}/ca.pem --tlscert={HAND_DOCKER}/server-cert.pem --tlskey={HAND_DOCKER}/server-key.pem
EOF
systemctl daemon-reload && systemctl restart docker.service && chmod 600 {HAND_DOCKER}/*""")
    hand = {n: sh(host, f"cat {HAND_DOCKER}/{n}") + "\n" for n in ("ca.pem", "cert.pem", "key.pem")}
    # The images, over the hand-made TLS listener (the way an operator's docker CLI would load them).
    engine = DockerEngine(
        "tcp://127.0.0.1:2376", ca=hand["ca.pem"], cert=hand["cert.pem"], key=hand["key.pem"],
        connect_to=(host.ssh_host, host.docker_port), timeout=600,
    )
    for name in {GITLAB_IMAGE, *HAND_TAGS.values()}:
        engine.load_image(images.export(name))
    sh(host, "set -e; " + "; ".join(f"docker tag {src} {tag}" for tag, src in HAND_TAGS.items()))
    # The folders, the configuration files and the data.
    sh(host, "set -e; mkdir -p /srv/services/gitlab/{config,data,logs} "
             "/srv/{gitlab-runner/config,demo-prj/{backend/media,db/data},letsencrypt-dns,traefik/{certs/staging,letsencrypt,logs}}")
    files = {p: os.urandom(n) for p, n in DATA_FILES.items()}
    for path, data in files.items():
        sh(host, f"mkdir -p $(dirname {path}) && base64 -d > {path}", stdin=__import__("base64").b64encode(data).decode())
    sh(host, "chmod 600 /srv/traefik/letsencrypt/acme.json /srv/services/gitlab/config/gitlab-secrets.json")
    for path, text in zip(REPLACED, (HAND_GITLAB_RB, HAND_TRAEFIK_YML, HAND_CONFIG_TOML)):
        sh(host, f"cat > {path}", stdin=text)
    sh(host, f"cp {HAND_DOCKER}/ca.pem {HAND_DOCKER}/cert.pem {HAND_DOCKER}/key.pem /srv/traefik/certs/staging/")
    # The containers, as the procedure runs them (GitLab: its compose file's service, by hand).
    sh(host, f"""set -e
docker run -d --restart always --name gitlab --hostname gitlab.company.ru \
  --volume /srv/services/gitlab/config:/etc/gitlab --volume /srv/services/gitlab/logs:/var/log/gitlab \
  --volume /srv/services/gitlab/data:/var/opt/gitlab {GITLAB_IMAGE} >/dev/null
docker run -d --restart always --name traefik \
  --volume /srv/traefik/traefik.yml:/etc/traefik/traefik.yml \
  --volume /srv/traefik/dynamic-conf.yml:/etc/traefik/dynamic-conf.yml \
  --volume /srv/traefik/letsencrypt:/letsencrypt --volume /srv/traefik/certs:/certs \
  --volume /srv/traefik/logs:/logs --volume /usr/share/zoneinfo:/usr/share/zoneinfo:ro \
  -p 8080:8080 -p 80:80 -p 443:443 -p 1023:1023 -e TZ=Europe/Volgograd traefik:latest >/dev/null
docker run -d --restart always --name gitlab-runner -v /srv/gitlab-runner/config:/etc/gitlab-runner \
  -v /var/run/docker.sock:/var/run/docker.sock -v /srv:/srv gitlab/gitlab-runner:latest >/dev/null
docker run --rm -v /srv/gitlab-runner/config:/etc/gitlab-runner gitlab/gitlab-runner:latest register \
  --non-interactive --executor docker --docker-image docker:stable \
  --docker-volumes /var/run/docker.sock:/var/run/docker.sock --url https://gitlab.company.ru/ \
  --registration-token hand-registration-token --description 'Production server gitlab runner' \
  --tag-list production --run-untagged=false --locked=false --access-level=ref_protected
docker run -d --name letsencrypt-dns --restart always --volume /srv/letsencrypt-dns:/etc/letsencrypt \
  --env TZ=Europe/Volgograd adferrand/letsencrypt-dns:latest >/dev/null
docker run -d --restart always --name demo-backend -v /srv/demo-prj/backend/media:/media demo-prj/backend:latest >/dev/null""")
    _log(f"hand procedure done: {time.monotonic() - t0:.1f}s")
    return SimpleNamespace(hand=hand, files={p: hashlib.sha256(d).hexdigest() for p, d in files.items()})


@pytest.fixture(scope="module")
def adopt_host(e2e_dockerd, e2e_image):
    yield from own_host(e2e_dockerd, e2e_image, "delivery-e2e-adopt", _log)


def adopt_config(host: DisposableHost) -> dict:
    """The e2e stack config with the GitLab integration on (so the program runs a runner on the
    host, created through the API: the stand-in provider gives it a glrt- token) and adopt: true."""
    from .services_platform import GITLAB_API_TOKEN

    cfg = stack_config(host, gitlabToken=GITLAB_API_TOKEN, gitlabIntegration="enabled", runnerScope={"group": "group"})
    cfg["hosts"][0]["adopt"] = True
    return cfg


@pytest.fixture(scope="module")
def adopted(adopt_host: DisposableHost, e2e_images):
    host = adopt_host
    built = follow_the_procedure(host, e2e_images)
    replaced_before = digests(host, REPLACED + STAGING_CERTS)
    dropin_before = digests(host, ["/etc/systemd/system/docker.service.d/override.conf"])
    # the preview: make adopt-check's script, read-only
    watched = "/srv /etc/docker /etc/systemd/system/docker.service.d"
    listing = f"find {watched} -path /srv/gitlab-runner/config/standin-calls.jsonl -prune -o -path /srv/services/gitlab/logs -prune -o -path /srv/traefik/logs -prune -o -printf '%p %s %T@ %m\\n' | sort"
    before_check = sh(host, listing), sh(host, "docker ps -a --format '{{.Names}} {{.ID}} {{.State}}' | sort")
    check = adopt_check(host)
    after_check = sh(host, listing), sh(host, "docker ps -a --format '{{.Names}} {{.ID}} {{.State}}' | sort")
    # a CI job of the hand-made runner still runs when the adoption starts: it must wait for it
    sh(host, "docker run -d --name runner-hand-job --label com.gitlab.gitlab-runner.managed=true "
             f"--entrypoint sleep {ECHO_IMAGE} 30 >/dev/null")
    kept = {n: container(host, n) for n in KEEP_RUNNING}
    unit_before = sh(host, "systemctl show -p ActiveEnterTimestamp --value docker")
    state = StackState()
    first = run_program(host, state, e2e_images, config=adopt_config(host), log=_log)
    _log(f"adoption run: {first.elapsed:.1f}s")
    return SimpleNamespace(
        host=host, built=built, state=state, images=e2e_images, first=first, check=check,
        before_check=before_check, after_check=after_check, replaced_before=replaced_before,
        dropin_before=dropin_before, kept=kept, unit_before=unit_before,
    )


def adopt_check(host: DisposableHost) -> subprocess.CompletedProcess:
    """scripts/adopt_check.py (what `make adopt-check HOST=allinone` runs) with a stack file of
    this host and its SSH key."""
    with tempfile.TemporaryDirectory() as d:
        cfg = adopt_config(host)
        stack = Path(d, "Pulumi.adopt.yaml")
        stack.write_text(yaml.safe_dump({"config": {f"delivery:{k}": v for k, v in cfg.items() if k != "sshPrivateKey"}}))
        key = Path(d, "id")
        key.write_text(host.private_key_pem)
        key.chmod(0o600)
        return subprocess.run(
            [sys.executable, str(ROOT / "scripts/adopt_check.py"), "--host", HOST_NAME, "--config", str(stack), "--identity", str(key)],
            capture_output=True, text=True, timeout=180,
        )


# -- the preview ------------------------------------------------------------------------------

def test_adopt_check_lists_what_it_found_and_what_up_will_do(adopted):
    out = adopted.check.stdout
    assert adopted.check.returncode == 0, adopted.check.stdout + adopted.check.stderr
    assert "hand-made docker drop-in /etc/systemd/system/docker.service.d/override.conf" in out, out
    assert "--tlscacert=/home/staging/.docker/ca.pem" in out
    for name in ("gitlab", "traefik", "gitlab-runner", "letsencrypt-dns"):
        assert f"hand-made {name} container" in out, out
    assert "live-restore false" in out and "turn live-restore on" in out
    assert "keep letsencrypt-dns running" in out
    assert "copy /srv/traefik/certs/staging/cert.pem to cert.pem.pre-adoption-" in out
    assert f"hand-made Docker TLS files in {HAND_DOCKER}" in out
    # the differences of gitlab.rb, with the hand-made secret hidden
    assert "-gitlab_rails['trusted_proxies'] = ['192.168.88.1', '192.168.88.2']" in out
    assert "hand-made-smtp-secret" not in out and "smtp_password'] = <hidden>" in out


def test_adopt_check_changed_nothing(adopted):
    assert adopted.after_check == adopted.before_check


# -- the adoption ---------------------------------------------------------------------------

def test_the_adoption_step_ran_first_and_reports_what_it_did(adopted):
    out = adopted.first.stdout(f"{HOST_NAME}-adopt")
    assert out.startswith("adopted: "), out
    assert "unregistered the old runners" in out and "live-restore on (reload, no restart)" in out
    waited = int(out.split("waited ", 1)[1].split("s", 1)[0])
    assert waited > 0, f"the adoption did not wait for the running job: {out}"
    job = container(adopted.host, "runner-hand-job")["State"]
    old_runner = sh(adopted.host, "docker ps -a -q --filter name=^gitlab-runner.pre-adoption-")
    assert job["Status"] == "exited" and job["ExitCode"] == 0, job  # the job ran to its end
    assert job["FinishedAt"] < container(adopted.host, old_runner)["State"]["FinishedAt"], "the runner stopped before its job"
    assert adopted.first.stdout(f"{HOST_NAME}-docker-config").endswith("; docker restarted")


def test_every_pre_existing_data_file_is_byte_identical(adopted):
    host = adopted.host
    assert digests(host, DATA_FILES) == adopted.built.files
    # the files the program replaced (or removed: Staging's old client certificate) are kept,
    # byte-identical, as timestamped copies next to them
    for path, digest in adopted.replaced_before.items():
        copies = sh(host, f"ls {path}.pre-adoption-*").split()
        assert len(copies) == 1, copies
        assert digests(host, copies) == {copies[0]: digest}
    assert "Managed by Pulumi" in sh(host, "head -1 /srv/services/gitlab/config/gitlab.rb")


def test_the_hand_made_drop_in_is_moved_aside_not_deleted(adopted):
    host = adopted.host
    listing = sh(host, "ls /etc/systemd/system/docker.service.d/").split()
    assert len(listing) == 2 and listing[0] == "10-delivery.conf" and listing[1].startswith("override.conf.pre-adoption-"), listing
    copy = sh(host, "ls /etc/systemd/system/docker.service.d/override.conf.pre-adoption-*")
    assert list(digests(host, [copy]).values()) == list(adopted.dropin_before.values())
    assert sh(host, "systemctl show -p ExecStart docker | grep -o 'argv\\[\\]=[^;]*'") == "argv[]=/usr/sbin/dockerd"
    # the hand-made certificates stay where they were (unused now)
    assert sh(host, f"ls {HAND_DOCKER}").split() == ["ca-key.pem", "ca.pem", "ca.srl", "cert.pem", "key.pem", "server-cert.pem", "server-key.pem"]


def test_containers_the_program_does_not_replace_ran_through_the_restart(adopted):
    host = adopted.host
    assert sh(host, "systemctl show -p ActiveEnterTimestamp --value docker") != adopted.unit_before  # restarted once
    assert sh(host, "docker info --format '{{.LiveRestoreEnabled}}'") == "true"
    for name, before in adopted.kept.items():
        now = container(host, name)
        assert (now["Id"], now["State"]["Running"], now["State"]["StartedAt"]) == (
            before["Id"], True, before["State"]["StartedAt"]
        ), f"{name} did not keep running"


def test_gitlab_traefik_and_runner_are_the_programs_on_the_same_data(adopted):
    host = adopted.host
    for name in REPLACED_CONTAINERS:
        now = container(host, name)
        labels = now["Config"]["Labels"]
        assert labels.get("delivery.managed-by") == "pulumi", (name, labels)
        assert now["State"]["Running"], name
        old = sh(host, f"docker ps -a --filter name=^{name}.pre-adoption- --format '{{{{.Names}}}} {{{{.State}}}}'").split()
        assert len(old) == 2 and old[1] == "exited", (name, old)
        assert container(host, old[0])["HostConfig"]["RestartPolicy"]["Name"] == "no"
    gitlab = container(host, "gitlab")
    # the same version: the image the hand-made container ran (the program names it by its ID)
    image_id = sh(host, f"docker image inspect -f '{{{{.Id}}}}' {GITLAB_IMAGE}")
    hand_gitlab = container(host, sh(host, "docker ps -a -q --filter name=^gitlab.pre-adoption-"))
    assert (hand_gitlab["Config"]["Image"], hand_gitlab["Image"]) == (GITLAB_IMAGE, image_id)
    assert gitlab["Image"] == image_id
    devices = {}
    for m in gitlab["Mounts"]:
        vol = json.loads(sh(host, f"docker volume inspect {m['Name']}"))[0]
        devices[m["Destination"]] = vol["Options"]["device"]
    assert devices == {
        "/etc/gitlab": "/srv/services/gitlab/config",
        "/var/opt/gitlab": "/srv/services/gitlab/data",
        "/var/log/gitlab": "/srv/services/gitlab/logs",
    }
    # the data GitLab finds is the hand-made instance's
    assert sh(host, "docker exec gitlab sha256sum /etc/gitlab/gitlab-secrets.json | cut -c1-64") == adopted.built.files[
        "/srv/services/gitlab/config/gitlab-secrets.json"
    ]
    # with a database there, the initial root password was not installed
    assert sh(host, "ls /srv/services/gitlab/config/delivery-root-password.rb 2>/dev/null || echo absent") == "absent"


def test_the_old_runner_was_unregistered_and_the_new_one_has_an_api_token(adopted):
    calls = [json.loads(line)["args"] for line in sh(adopted.host, "cat /srv/gitlab-runner/config/standin-calls.jsonl").splitlines()]
    assert calls[0][0] == "register" and "--registration-token" in calls[0]
    assert ["unregister", "--all-runners"] in calls
    toml = sh(adopted.host, "cat /srv/gitlab-runner/config/config.toml")
    assert "hand-registered-runner-token" not in toml and 'token = "glrt-' in toml


def test_the_old_client_certificate_is_refused_and_the_programs_accepted(adopted):
    host, hand = adopted.host, adopted.built.hand
    assert refused(host, tls_context(adopted.first.outputs["operatorClient"]["caPem"], hand["cert.pem"], hand["key.pem"]))
    op = adopted.first.outputs["operatorClient"]
    assert ping(host, tls_context(op["caPem"], op["certPem"], op["keyPem"])) == "HTTP/1.0 200 OK"


def test_a_second_run_changes_nothing(adopted):
    host = adopted.host
    unit = sh(host, "systemctl show -p ActiveEnterTimestamp -p MainPID docker")
    ids = sh(host, "docker ps -a --format '{{.Names}} {{.ID}} {{.State}}' | sort")
    again = run_program(host, adopted.state, adopted.images, config=adopt_config(host), log=_log)
    _log(f"second run: {again.elapsed:.1f}s")
    outputs = {r.name: r.stdout for r in again.mocks.runs}
    assert outputs.pop(f"{HOST_NAME}-engine").startswith("unchanged: docker.io ")
    assert outputs.pop("gitlab-server-ready") == "ready: gitlab"
    # the upgrade gate checks the running version on every run: the same version, nothing done
    assert outputs.pop("gitlab-upgrade-pre-upgrade") == f"unchanged: GitLab {DEFAULT_GITLAB_VERSION}"
    assert outputs == {n: "unchanged" for n in outputs}
    assert {e.action for e in again.mocks.applier.events} == {"same"}
    assert sh(host, "systemctl show -p ActiveEnterTimestamp -p MainPID docker") == unit
    assert [line.split()[:2] for line in sh(host, "docker ps -a --format '{{.Names}} {{.ID}} {{.State}}' | sort").splitlines()] == [
        line.split()[:2] for line in ids.splitlines()
    ]
    assert digests(host, DATA_FILES) == adopted.built.files
