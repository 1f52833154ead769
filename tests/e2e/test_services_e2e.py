"""The platform's services for real (issues "Services end to end" and "Review apps cannot touch
production routes"): both stacks on three disposable hosts (tests/e2e/services_platform.py),
real Traefik (edge and review instances), a real ACME CA and DNS (pebble, challtestsrv), the
GitLab and gitlab-runner stand-ins, review apps started by the template's own deploy script.

Every request goes to the ports Production publishes on 127.0.0.1, with the TLS server name of
the host asked for (curl --resolve style), and is verified against pebble's root: the
certificates are real ACME certificates for those names.
"""

from __future__ import annotations

import http.client
import json
import os
import re
import socket
import ssl
import sys
import time
from pathlib import Path
from typing import Any, Optional

import pytest
from cryptography import x509
from cryptography.x509.oid import ExtensionOID, NameOID

from .conftest import DisposableHost
from .docker_engine import DockerEngine
from .services_platform import (
    APP_PORT,
    DOMAIN,
    SIGN_IN_LIMIT,
    Services,
    bring_up,
    container_states,
    load_image,
    start_echo,
)

pytestmark = pytest.mark.e2e

ROOT = Path(__file__).resolve().parents[2]
GITLAB = f"gitlab.{DOMAIN}"
REGISTRY = f"registry.{DOMAIN}"
APP = f"app.{DOMAIN}"
DASHBOARD = f"traefik.{DOMAIN}"
WILDCARD = f"*.dev.{DOMAIN}"


def _log(msg: str) -> None:
    sys.stderr.write(f"[e2e-services] {msg}\n")
    sys.stderr.flush()


@pytest.fixture(scope="module")
def services(e2e_dockerd, e2e_image) -> Services:
    svc = bring_up(e2e_dockerd, e2e_image, _log)
    _log(f"timings: {json.dumps({k: round(v, 1) for k, v in svc.timings.items()})}")
    yield svc
    svc.stop()


# -- clients --------------------------------------------------------------------------------------
def tls_context(svc: Services) -> ssl.SSLContext:
    """Trusts what a client of the platform trusts: the ACME CA's issuing root only."""
    return ssl.create_default_context(cadata=svc.acme.issuer_roots_pem)


def https(svc: Services, host: str, path: str = "/", *, method: str = "GET", headers: Optional[dict] = None,
          timeout: float = 20) -> tuple[int, dict[str, str], bytes, x509.Certificate]:
    """One HTTPS request to Production's :443 (published on 127.0.0.1) for `host`."""
    port = svc.production.published[443]
    sock = socket.create_connection(("127.0.0.1", port), timeout=timeout)
    tls = tls_context(svc).wrap_socket(sock, server_hostname=host)
    cert = x509.load_der_x509_certificate(tls.getpeercert(binary_form=True))
    conn = http.client.HTTPConnection(host, port, timeout=timeout)
    conn.sock = tls
    conn.request(method, path, headers={"Host": host, **(headers or {})})
    resp = conn.getresponse()
    body = resp.read()
    conn.close()
    return resp.status, {k.lower(): v for k, v in resp.getheaders()}, body, cert


def http_plain(svc: Services, host: str, path: str, timeout: float = 20) -> tuple[int, dict[str, str]]:
    conn = http.client.HTTPConnection("127.0.0.1", svc.production.published[80], timeout=timeout)
    conn.request("GET", path, headers={"Host": host})
    resp = conn.getresponse()
    resp.read()
    conn.close()
    return resp.status, {k.lower(): v for k, v in resp.getheaders()}


def ok(response):
    """A response when it is a 200, else None (for eventually)."""
    return response if response[0] == 200 else None


def eventually(what: str, probe, timeout: float = 120, interval: float = 2):
    """probe() until it returns a truthy value (bounded); the last exception or value is reported."""
    deadline = time.monotonic() + timeout
    last: Any = None
    while time.monotonic() < deadline:
        try:
            value = probe()
            if value:
                return value
            last = value
        except (OSError, ssl.SSLError, http.client.HTTPException, AssertionError) as e:
            last = e
        time.sleep(interval)
    raise AssertionError(f"{what}: not after {timeout:.0f}s (last: {last!r})")


def sans(cert: x509.Certificate) -> list[str]:
    return cert.extensions.get_extension_for_oid(ExtensionOID.SUBJECT_ALTERNATIVE_NAME).value.get_values_for_type(x509.DNSName)


def issuer_cn(cert: x509.Certificate) -> str:
    return cert.issuer.get_attributes_for_oid(NameOID.COMMON_NAME)[0].value


def echo(body: bytes) -> dict:
    return json.loads(body)


def header(record: dict, name: str) -> Optional[str]:
    return next((v for k, v in record["headers"] if k.lower() == name.lower()), None)


def operator_engine(svc: Services, host: str) -> DockerEngine:
    prod = next(u for u in svc.ups if u.stack == "production")
    client = prod.outputs["operatorClient"]
    h = svc.hosts[host]
    return DockerEngine(f"tcp://{h.ip}:2376", ca=client["caPem"], cert=client["certPem"], key=client["keyPem"],
                        connect_to=("127.0.0.1", h.published[2376]))


def client_gateway(svc: Services) -> str:
    """The address Traefik sees for requests from this machine (the harness bridge's gateway)."""
    return svc.daemon.bridge_cidr.split("/")[0]


# -- GitLab, registry, SSH, apps through the edge --------------------------------------------------
def test_gitlab_answers_through_the_edge_with_forwarded_headers(services):
    status, _, body, cert = eventually("GitLab over HTTPS", lambda: ok(https(services, GITLAB, "/users/sign_in")))
    record = echo(body)
    assert status == 200 and record["service"] == "gitlab", record
    assert record["host"] == GITLAB
    assert header(record, "X-Forwarded-Proto") == "https"
    assert header(record, "X-Forwarded-For") == client_gateway(services)
    assert GITLAB in sans(cert)


def test_encoded_slashes_reach_gitlab_byte_for_byte(services):
    _, _, body, _ = https(services, GITLAB, "/api/v4/projects/group%2Fapp/repository/files/a%2Fb.txt?ref=main")
    assert echo(body)["raw_path"] == "/api/v4/projects/group%2Fapp/repository/files/a%2Fb.txt?ref=main"


@pytest.mark.parametrize("host", [GITLAB, REGISTRY, APP, DASHBOARD])
def test_each_name_has_a_certificate_for_it_from_the_acme_ca_by_http01(services, host):
    _, _, _, cert = eventually(f"{host} over HTTPS", lambda: https(services, host, "/"))
    assert host in sans(cert)
    assert "Pebble" in issuer_cn(cert), issuer_cn(cert)
    log = services.acme.log_text("pebble")
    assert f"validate w/ HTTP: http://{host}:80/.well-known/acme-challenge/" in log, f"no HTTP-01 validation of {host} in pebble's log"


def test_registry_answers_through_the_edge(services):
    status, _, body, _ = https(services, REGISTRY, "/v2/")
    record = echo(body)
    assert status == 200 and record["service"] == "registry" and record["port"] == 5005
    assert header(record, "X-Forwarded-Proto") == "https"


def test_production_app_published_on_productions_own_address_answers(services):
    """Defect: with userland-proxy off, a container could not reach a port published on its own
    host's address; the app here is published on Production's address as productionApps says."""
    engine = operator_engine(services, "production")
    if engine.inspect("container", "demo-app") is None:
        start_echo(engine, services.platform.images, "demo-app", labels={}, publish=(services.production.ip, APP_PORT), app_name="demo")
    status, _, body, cert = eventually("the production app", lambda: ok(https(services, APP, "/hello")), timeout=60)
    assert status == 200 and echo(body)["app"] == "demo"
    assert APP in sans(cert)


def test_http_redirects_to_https_but_answers_acme_challenges(services):
    status, headers = http_plain(services, GITLAB, "/explore")
    assert status in (301, 308) and headers["location"] == f"https://{GITLAB}/explore"
    status, headers = http_plain(services, GITLAB, "/.well-known/acme-challenge/unknown-token")
    assert status not in (301, 302, 307, 308), "the challenge path must be answered on :80, not redirected"


def test_tcp_1023_reaches_gitlabs_ssh(services):
    with socket.create_connection(("127.0.0.1", services.production.published[1023]), timeout=10) as s:
        s.settimeout(10)
        assert s.recv(64).startswith(b"SSH-2.0-GitLab-standin")


def test_dashboard_needs_credentials(services):
    import base64

    status, _, _, _ = https(services, DASHBOARD, "/dashboard/")
    assert status == 401
    token = base64.b64encode(f"admin:{services.dashboard_password}".encode()).decode()
    status, _, _, _ = https(services, DASHBOARD, "/dashboard/", headers={"Authorization": f"Basic {token}"})
    assert status == 200


# -- rate limits (traefikRateLimits; docs/operations.md, "Rate limits") ---------------------------------
def test_a_burst_over_the_sign_in_limit_gets_429_while_other_traffic_passes(services):
    period = SIGN_IN_LIMIT["period"]
    time.sleep(period + 1)  # a full bucket, whatever earlier tests asked
    statuses = [https(services, GITLAB, "/users/sign_in")[0] for _ in range(3 * SIGN_IN_LIMIT["burst"])]
    assert statuses[: SIGN_IN_LIMIT["burst"]] == [200] * SIGN_IN_LIMIT["burst"], statuses
    assert statuses.count(429) >= SIGN_IN_LIMIT["burst"], statuses
    # Meanwhile the same client's ordinary requests pass: other routes have their own limits.
    for host, path in ((GITLAB, "/explore"), (GITLAB, "/api/v4/version"), (REGISTRY, "/v2/")):
        status, _, body, _ = https(services, host, path)
        assert status == 200 and echo(body)["raw_path"] == path, (host, path, status)
    # And the sign-in page answers again once the bucket refills.
    eventually("the sign-in page after the burst", lambda: https(services, GITLAB, "/users/sign_in")[0] == 200,
               timeout=3 * period, interval=1)


# -- the readiness gate ------------------------------------------------------------------------------
def test_gitlab_api_work_waited_for_the_readiness_gate(services):
    first = services.ups[0]
    assert services.ready_at is not None, "the stand-in was never switched to ready"
    calls = first.mocks.gitlab_calls
    assert calls, "the production stack made no GitLab API call"
    early = [c for c in calls if c.at < services.ready_at]
    assert not early, f"GitLab API work before GitLab was ready: {early[:3]}"
    gate = first.mocks.run_named("gitlab-server-ready")
    assert gate.stdout == "ready: gitlab"
    # The gate was running, polling a not-ready GitLab, until the stand-in turned ready.
    assert gate.started < services.ready_at <= gate.started + gate.elapsed


# -- the wildcard certificate and review apps ---------------------------------------------------
def test_wildcard_certificate_is_issued_by_dns01_and_served_for_review_hosts(services):
    _, _, _, cert = eventually("a review host over HTTPS", lambda: https(services, f"nothing-here.dev.{DOMAIN}", "/"))
    assert WILDCARD in sans(cert) and f"dev.{DOMAIN}" in sans(cert)
    assert "Pebble" in issuer_cn(cert)
    # lego's exec provider ran the configured script in the edge's container, which set the
    # TXT record pebble validated (pebble logs no DNS-01 detail; its test DNS does).
    log = services.acme.log_text("challtestsrv")
    assert f'Added DNS-01 TXT challenge for Host "_acme-challenge.dev.{DOMAIN}."' in log


def review_job(services: Services, job_name: str, ref: str) -> str:
    """Run a job of templates/review-app.yml, as rendered for this platform, on Staging: the
    template's own script against Staging's real Docker. Only `docker login/logout/pull/push`
    are answered by a wrapper (no registry here); the image is already in the daemon."""
    import shlex

    import test_review_app_template as template  # tests/test_review_app_template.py

    rendered = template.render({"review_domain": f"dev.{DOMAIN}"})
    job = template.ci.jobs_of(rendered)[job_name]
    staging = services.hosts["staging"]
    env = template.ci.job_environment(rendered, job, template.ci.predefined("push", ref, protected=False, STAGING_HOST_ADDRESS=staging.ip))
    script = template.ci.job_script_text(job, shell="sh")
    wrapper = "#!/bin/sh\ncase \"$1\" in login|logout|pull|push) echo \"wrapper: docker $1 skipped (no registry)\" >&2; exit 0 ;; esac\nexec /usr/bin/docker \"$@\"\n"
    exports = "".join(f"export {k}={shlex.quote(v)}\n" for k, v in env.items())
    setup = (
        "set -e; d=/tmp/review-job; rm -rf $d; mkdir -p $d/bin; cd $d\n"
        f"cat > $d/bin/docker <<'EOF'\n{wrapper}EOF\nchmod +x $d/bin/docker\n"
        f"cat > $d/job.sh <<'EOF'\n{script}EOF\n"
        f"cat > $d/env <<'EOF'\n{exports}EOF\n"
        ". $d/env; export PATH=$d/bin:/usr/bin:/bin CI_PROJECT_DIR=$d HOME=$d; exec sh $d/job.sh\n"
    )
    proc = staging.exec(setup, check=False, timeout=180)
    assert proc.returncode == 0, f"{job_name} failed:\n{proc.stdout}{proc.stderr}"
    return env["REVIEW_IMAGE"] if "REVIEW_IMAGE" in env else ""


def review_image(services: Services, ref: str) -> str:
    import test_review_app_template as template

    rendered = template.render({"review_domain": f"dev.{DOMAIN}"})
    job = template.ci.jobs_of(rendered)["review:deploy"]
    env = template.ci.job_environment(rendered, job, template.ci.predefined("push", ref, protected=False))
    return env["REVIEW_IMAGE"].replace("$CI_REGISTRY_IMAGE", env["CI_REGISTRY_IMAGE"]).replace(
        "$CI_COMMIT_REF_SLUG", env["CI_COMMIT_REF_SLUG"]).replace("$CI_COMMIT_SHORT_SHA", env["CI_COMMIT_SHORT_SHA"])


def test_a_review_app_deployed_by_the_template_is_served_and_gone_after_stop(services):
    from .images import ECHO_IMAGE

    ref = "feature/login-form"
    host = f"feature-login-form.dev.{DOMAIN}"
    staging = operator_engine(services, "staging")
    load_image(staging, services.platform.images, ECHO_IMAGE, tag=review_image(services, ref))
    t0 = time.monotonic()
    review_job(services, "review:deploy", ref)
    status, _, body, cert = eventually("the review app", lambda: (r := https(services, host, "/x"))[0] == 200 and r)
    services.timings["review_app_served_after_deploy"] = time.monotonic() - t0
    record = echo(body)
    assert record["host"] == host and record["raw_path"] == "/x"
    assert WILDCARD in sans(cert)
    review_job(services, "review:stop", ref)
    eventually("the review route to disappear", lambda: https(services, host, "/x")[0] == 404, timeout=60)


def test_staging_daemon_refuses_a_client_certificate_from_another_ca(services):
    from .test_docker_host_e2e import other_ca_client

    cert, key = other_ca_client()
    h = services.hosts["staging"]
    prod = next(u for u in services.ups if u.stack == "production")
    engine = DockerEngine(f"tcp://{h.ip}:2376", ca=prod.outputs["operatorClient"]["caPem"], cert=cert, key=key,
                          connect_to=("127.0.0.1", h.published[2376]))
    assert not engine.ping()
    assert operator_engine(services, "staging").ping()


# -- trust domains on the real daemons -------------------------------------------------------------
def tls_of(services: Services, stack: str, name: str) -> dict:
    from .services_harness import TLS_HANDLERS  # noqa: F401 - the state holds pulumi-tls outputs

    for (typ, rname), (_, _, state) in services.platform.state(stack).tls.items():
        if rname == name:
            return state
    raise KeyError(name)


def _pem(value: Any) -> str:
    from .real_mocks import plain

    return plain(value)


@pytest.mark.parametrize("host, accepted", [("production", False), ("services", False), ("staging", True)])
def test_the_review_traefiks_certificate_opens_staging_only(services, host, accepted):
    cert = _pem(tls_of(services, "production", "docker-staging-ca-client-review-traefik-cert")["certPem"])
    key = _pem(tls_of(services, "production", "docker-staging-ca-client-review-traefik-key")["privateKeyPem"])
    prod = next(u for u in services.ups if u.stack == "production")
    h = services.hosts[host]
    engine = DockerEngine(f"tcp://{h.ip}:2376", ca=prod.outputs["operatorClient"]["caPem"], cert=cert, key=key,
                          connect_to=("127.0.0.1", h.published[2376]))
    assert engine.ping() is accepted


@pytest.mark.parametrize("host", ["production", "services"])
def test_no_certificate_in_the_staging_stacks_outputs_opens_production_or_services(services, host):
    staging_up = next(u for u in services.ups if u.stack == "staging")
    client = staging_up.outputs["operatorClient"]
    prod = next(u for u in services.ups if u.stack == "production")
    h = services.hosts[host]
    engine = DockerEngine(f"tcp://{h.ip}:2376", ca=prod.outputs["operatorClient"]["caPem"], cert=client["certPem"],
                          key=client["keyPem"], connect_to=("127.0.0.1", h.published[2376]))
    assert engine.ping() is False
    assert "BEGIN" not in json.dumps({k: v for k, v in staging_up.outputs.items() if k != "operatorClient" and k != "dockerCaCertPem"})


# -- hostile labels on Staging cannot touch production routes ---------------------------------------
def production_routes_hold(services: Services) -> None:
    import base64

    status, _, body, cert = https(services, GITLAB, "/users/sign_in")
    assert status == 200 and echo(body)["service"] == "gitlab" and GITLAB in sans(cert), "GitLab"
    status, _, body, cert = https(services, REGISTRY, "/v2/")
    assert status == 200 and echo(body)["service"] == "registry" and REGISTRY in sans(cert), "registry"
    status, _, body, cert = https(services, APP, "/")
    assert status == 200 and echo(body)["app"] == "demo" and APP in sans(cert), "production app"
    status, _, _, cert = https(services, DASHBOARD, "/dashboard/")
    assert status == 401 and DASHBOARD in sans(cert), "dashboard without credentials"
    status, _, _, _ = https(services, DASHBOARD, "/api/rawdata")
    assert status == 401, "Traefik's API without credentials"
    with socket.create_connection(("127.0.0.1", services.production.published[1023]), timeout=10) as s:
        s.settimeout(10)
        assert s.recv(64).startswith(b"SSH-2.0-GitLab-standin"), "GitLab SSH on 1023"


HOSTILE = {
    "gitlab-host": {"traefik.http.routers.h1.rule": f"Host(`{GITLAB}`)", "traefik.http.routers.h1.priority": "10000",
                    "traefik.http.routers.h1.tls": "true", "traefik.http.routers.h1.entrypoints": "websecure"},
    "registry-host": {"traefik.http.routers.h2.rule": f"Host(`{REGISTRY}`)", "traefik.http.routers.h2.priority": "10000"},
    "app-host": {"traefik.http.routers.h3.rule": f"Host(`{APP}`)", "traefik.http.routers.h3.priority": "10000"},
    "tcp-catch-all-tls": {"traefik.tcp.routers.h4.rule": "HostSNI(`*`)", "traefik.tcp.routers.h4.entrypoints": "websecure",
                          "traefik.tcp.services.h4.loadbalancer.server.port": "8080"},
    "api-internal": {"traefik.http.routers.h5.rule": f"Host(`{DASHBOARD}`) || PathPrefix(`/api`)",
                     "traefik.http.routers.h5.service": "api@internal", "traefik.http.routers.h5.priority": "10000"},
    "tcp-catch-all-review": {"traefik.tcp.routers.h6.rule": "HostSNI(`*`)", "traefik.tcp.routers.h6.entrypoints": "review",
                             "traefik.tcp.services.h6.loadbalancer.server.port": "8080"},
}


@pytest.mark.parametrize("case", list(HOSTILE))
def test_hostile_labels_on_staging_cannot_touch_production_routes(services, case):
    eventually("production routes before", lambda: production_routes_hold(services) or True)
    staging = operator_engine(services, "staging")
    name = f"hostile-{case}"
    own = f"{name}.dev.{DOMAIN}"
    labels = {
        "traefik.enable": "true",
        **HOSTILE[case],
        # A route of its own, to know when the review instance has read this container.
        f"traefik.http.routers.{case}-own.rule": f"Host(`{own}`)",
        f"traefik.http.routers.{case}-own.entrypoints": "review",
        f"traefik.http.routers.{case}-own.service": f"{case}-own",
        f"traefik.http.services.{case}-own.loadbalancer.server.port": "8080",
    }
    cid = start_echo(staging, services.platform.images, name, labels=labels, publish=(services.hosts["staging"].ip, 0))
    try:
        eventually("the hostile container to be read", lambda: (r := https(services, own, "/"))[0] == 200 and echo(r[2])["app"] == name)
        production_routes_hold(services)
        _, logs = staging.request("GET", f"/containers/{cid}/logs", query={"stdout": "1", "stderr": "1"})
        hosts = set(re.findall(rb"host=(\S+)", logs))
        assert hosts and all(h.decode().endswith(f".dev.{DOMAIN}") for h in hosts), f"the hostile container received {hosts}"
    finally:
        staging.request("DELETE", f"/containers/{cid}", query={"force": "1"}, expect=(204, 404))


# -- convergence -----------------------------------------------------------------------------------
def test_a_second_up_of_both_stacks_changes_nothing_and_restarts_nothing(services):
    engines = {h: operator_engine(services, h) for h in services.hosts}
    before = {h: container_states(e) for h, e in engines.items()}
    t0 = time.monotonic()
    ups = [services.up("production"), services.up("staging")]
    services.timings["converged_rerun"] = time.monotonic() - t0
    changed = [(u.stack, e.typ, e.name, e.action) for u in ups for e in u.mocks.applier.events if e.action != "same"]
    assert not changed, changed
    assert not [d for u in ups for d in u.deleted], "a second run deleted resources"
    steps = [(u.stack, r.name, r.stdout) for u in ups for r in u.mocks.runs
             if not (r.stdout.startswith("unchanged") or r.stdout == "ready: gitlab")]
    assert not steps, f"remote steps that changed something: {steps}"
    after = {h: container_states(e) for h, e in engines.items()}
    assert after == before
    _log(f"figures: {json.dumps({k: round(v, 1) for k, v in services.timings.items()})}; resources: "
         + ", ".join(f"{u.stack} {len(u.mocks.resources)}" for u in ups))


# -- what a change restarts (docs/operations.md, "What a change restarts") -------------------------
# After every other test of the module (they change the production stack's config). Each change
# is one `pulumi up` of the production stack; the claims of the churn table for that key are
# compared with container IDs and StartedAt on Production and Services before and after it.
STANDIN_CALLS = "/srv/services/gitlab/logs/standin-calls.jsonl"


def reconfigure_calls(services: Services) -> list[dict]:
    out = services.hosts["services"].exec(f"cat {STANDIN_CALLS} 2>/dev/null || true").stdout
    calls = [json.loads(line) for line in out.splitlines() if line.strip()]
    return [c for c in calls if c["program"] == "gitlab-ctl" and c["args"][:1] == ["reconfigure"]]


def change(services: Services, key: str, value: Any) -> tuple[set, set, dict]:
    """Set `key` in the production stack, run it; return (what the table claims for the
    containers on these hosts, what happened to them, the run's step outputs by name)."""
    from churn_table import churn_table  # tests/churn_table.py

    engines = {h: operator_engine(services, h) for h in ("production", "services")}
    before = {h: container_states(e) for h, e in engines.items()}
    reconfigured = len(reconfigure_calls(services))
    services.production_config[key] = value
    t0 = time.monotonic()
    up = services.up("production")
    services.timings[f"change_{key}"] = time.monotonic() - t0
    measured = set()
    for h, engine in engines.items():
        after = container_states(engine)
        for name, (cid, started) in before[h].items():
            now = after.get(name)
            if now is None or now[0] != cid:
                measured.add((name, "replaced"))
            elif now[1] != started:
                measured.add((name, "restarted in place"))
    calls = reconfigure_calls(services)[reconfigured:]
    if calls:
        measured.add(("gitlab", "reconfigured in place"))
    present = {name for states in before.values() for name in states}
    claimed = {(name, effect) for name, effect in churn_table()[key] if name in present}
    _log(f"change of {key}: {sorted(measured)} in {services.timings[f'change_{key}']:.1f}s")
    return claimed, measured, {r.name: r.stdout for r in up.mocks.runs}


def gitlab_answers_through_the_edge(services: Services) -> None:
    eventually("GitLab through the edge", lambda: ok(https(services, GITLAB, "/explore")), timeout=60)


def test_change_runner_config_toml_rewrites_the_file_and_the_runner_reloads_it(services):
    claimed, measured, steps = change(services, "runners", {"production-runner": {"concurrent": 3}})
    assert claimed == measured == set()
    assert steps["gitlab-runner-production-config"].startswith("changed: /srv/gitlab-runner/config/config.toml")
    # the stand-in, as gitlab-runner does, notices the new file by itself (it polls once a second)
    def reloaded():
        logs = services.production.exec("docker logs gitlab-runner 2>&1").stdout
        assert "reloaded concurrent=3 " in logs, logs[-2000:]
        return True

    eventually("the runner's reload of config.toml", reloaded, timeout=30, interval=1)


def test_change_timezone_reconfigures_gitlab_in_place(services):
    claimed, measured, steps = change(services, "timezone", "Asia/Tokyo")
    assert ("gitlab", "reconfigured in place") in claimed
    assert measured == claimed
    assert steps["gitlab-server-reconfigure"] == "reconfigured: gitlab"
    call = reconfigure_calls(services)[-1]
    host = services.hosts["services"]
    rb = "/srv/services/gitlab/config/gitlab.rb"
    # The reconfigure ran after the new gitlab.rb was in place (same kernel clock).
    assert call["at"] >= float(host.exec(f"stat -c %.9Y {rb}").stdout.strip()), call
    if "gitlab_rb_sha256" in call:  # the stand-in of this tree (the harness's tag is shared by sessions)
        assert call["gitlab_rb_sha256"] == host.exec(f"sha256sum {rb}").stdout.split()[0]
    assert "Asia/Tokyo" in services.hosts["services"].exec("cat /srv/services/gitlab/config/gitlab.rb").stdout
    gitlab_answers_through_the_edge(services)


@pytest.mark.parametrize("key", ["dnsExecScript", "acmeEmail"])
def test_change_of_dns_credentials_or_acme_email_restarts_the_edge_once_in_place(services, key):
    value = services.production_config[key] + "# changed\n" if key == "dnsExecScript" else "ops2@platform.test"
    claimed, measured, steps = change(services, key, value)
    assert claimed == {("traefik", "restarted in place")}
    assert measured == claimed
    assert steps["traefik-restart"] == "restarted: traefik"
    gitlab_answers_through_the_edge(services)
