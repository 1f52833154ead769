"""Tests of templates/review-app.yml, the review-app template application projects include.

The template is rendered with sample inputs (GitLab CI/CD `spec:inputs` interpolation),
validated against GitLab's CI schema, its rules are evaluated per kind of pipeline, its
scripts go through shellcheck (POSIX sh: the docker CLI image has no bash) and are run with
a stub `docker`/`git`. The Traefik labels the deploy job really produces are checked against
the contract (templates/review_app_contract.py) and against a Traefik static config with
`check_labels_against_traefik`, which is meant to be re-pointed at the config the Traefik
component renders.
"""

from __future__ import annotations

import importlib.util
import re
import shutil
from pathlib import Path

import jsonschema
import pytest
import yaml

from schema_files import PUBLISHED_SCHEMAS

ROOT = Path(__file__).resolve().parents[1]
TEMPLATE = ROOT / "templates" / "review-app.yml"
PIPELINE_DOC = ROOT / "docs" / "pipeline.md"
TRAEFIK_STATIC_SCHEMA = PUBLISHED_SCHEMAS / "traefik-v3.json"


def _load(name: str, path: Path):
    spec = importlib.util.spec_from_file_location(name, path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


ci = _load("_pipeline_helpers", Path(__file__).with_name("test_pipeline.py"))
contract = _load("review_app_contract", ROOT / "templates" / "review_app_contract.py")

DOMAIN = "example.com"
REVIEW_DOMAIN = contract.review_domain_for(DOMAIN)  # dev.example.com
STAGING_ADDRESS = "192.0.2.20"  # documentation address, never contacted
SAMPLE_INPUTS = {"review_domain": REVIEW_DOMAIN}
INPUT_RE = re.compile(r"\$\[\[\s*inputs\.([A-Za-z0-9_-]+)\s*\]\]")


# --------------------------------------------------------------------------------------------
# Rendering
# --------------------------------------------------------------------------------------------


def template_documents() -> tuple[dict, str]:
    text = TEMPLATE.read_text(encoding="utf-8")
    header, separator, body = text.partition("\n---\n")
    assert separator, "the spec: header must be its own YAML document"
    return yaml.safe_load(header), body


def render(inputs: dict | None = None) -> dict:
    """Interpolate $[[ inputs.x ]] as GitLab does: given values, then defaults."""
    header, body = template_documents()
    spec = header["spec"]["inputs"]
    values = {}
    for name, definition in spec.items():
        definition = definition or {}
        if inputs and name in inputs:
            value = inputs[name]
        else:
            assert "default" in definition, f"required input {name} not given"
            value = definition["default"]
        if definition.get("type") == "number":
            assert isinstance(value, (int, float)), name
        if "regex" in definition:
            assert re.search(definition["regex"], str(value)), f"{name}={value!r} fails its regex"
        values[name] = str(value)
    unknown = set(inputs or {}) - set(spec)
    assert not unknown, f"unknown inputs {unknown}"
    return yaml.safe_load(INPUT_RE.sub(lambda m: values[m.group(1)], body))


@pytest.fixture(scope="module")
def rendered() -> dict:
    return render(SAMPLE_INPUTS)


@pytest.fixture(scope="module")
def jobs(rendered) -> dict[str, dict]:
    return ci.jobs_of(rendered)


def feature_push(ref="feature/login-form", **extra):
    return ci.predefined("push", ref, protected=False, STAGING_HOST_ADDRESS=STAGING_ADDRESS, **extra)


# --------------------------------------------------------------------------------------------
# Schema, inputs, rules
# --------------------------------------------------------------------------------------------


def test_header_and_rendered_body_validate_against_gitlab_schema(rendered):
    header, body = template_documents()
    assert ci.schema_errors(header) == []
    assert ci.schema_errors(rendered) == []
    # Also with every input overridden.
    assert ci.schema_errors(render({**SAMPLE_INPUTS, "app_port": 3000, "middlewares": "",
                                    "auto_stop_in": "3 days", "subdomain": "shop-$CI_COMMIT_REF_SLUG"})) == []


def test_every_input_is_declared_and_used():
    header, body = template_documents()
    used = set(INPUT_RE.findall(body))
    declared = set(header["spec"]["inputs"])
    assert used == declared
    defaults = {k: (v or {}).get("default") for k, v in header["spec"]["inputs"].items()}
    assert defaults["auto_stop_in"] == "1 week"
    assert defaults["traefik_entrypoint"] == contract.REVIEW_ENTRYPOINT
    assert tuple(filter(None, defaults["middlewares"].split(","))) == contract.REVIEW_MIDDLEWARES
    assert "default" not in header["spec"]["inputs"]["review_domain"], "review_domain must be given"


@pytest.mark.parametrize("bad", ["*.dev.example.com", "https://dev.example.com", "dev", "Dev.Example.com", "dev.example.com/"])
def test_review_domain_input_regex_rejects_non_domains(bad):
    regex = template_documents()[0]["spec"]["inputs"]["review_domain"]["regex"]
    assert not re.search(regex, bad)


def test_every_image_is_pinned(jobs):
    problems = {name: ci.pinned_problem(ci.image_name(job)) for name, job in jobs.items()}
    assert {k: v for k, v in problems.items() if v} == {}


def test_jobs_run_on_the_staging_runner(jobs):
    assert {name: job["tags"] for name, job in jobs.items()} == {name: ["staging"] for name in jobs}


TEMPLATE_SCENARIOS = {
    "push-feature": (ci.predefined("push", "feature/x", protected=False),
                     {"review:build": "on_success", "review:deploy": "on_success", "review:stop": "manual"}),
    "mr-feature": (ci.predefined("merge_request_event", "feature/x", protected=False, mr=True),
                   {"review:build": "on_success", "review:deploy": "on_success", "review:stop": "manual"}),
    "push-master": (ci.predefined("push", "master", protected=True), {}),
    "push-tag": (ci.predefined("push", "v1.2.0", protected=True, CI_COMMIT_TAG="v1.2.0"), {}),
    "schedule": (ci.predefined("schedule", "master", protected=True),
                 {"review:cleanup:branches": "on_success", "review:cleanup": "on_success"}),
}


@pytest.mark.parametrize("scenario", sorted(TEMPLATE_SCENARIOS))
def test_jobs_per_trigger(rendered, jobs, scenario):
    env, expected = TEMPLATE_SCENARIOS[scenario]
    present = ci.pipeline_jobs(rendered, env)
    assert present == expected
    for name in present:
        for need in jobs[name].get("needs", []):
            assert need in present, f"{name} needs {need}"


def test_environment_with_stop_job_and_auto_stop(jobs):
    deploy = jobs["review:deploy"]
    environment = deploy["environment"]
    assert environment["name"] == "review/$CI_COMMIT_REF_SLUG"
    assert environment["url"] == f"https://$CI_COMMIT_REF_SLUG.{REVIEW_DOMAIN}"
    assert environment["auto_stop_in"] == "1 week"
    stop = jobs[environment["on_stop"]]
    assert stop["environment"] == {"name": environment["name"], "action": "stop"}
    assert stop["variables"]["GIT_STRATEGY"] == "none", "the branch may be gone when it stops"
    assert stop["stage"] == deploy["stage"]


def test_every_job_script_passes_shellcheck(jobs, tmp_path):
    for name, job in sorted(jobs.items()):
        ci.shellcheck_job(job, name, tmp_path, shell="sh")


def test_nothing_prints_the_job_token(jobs):
    for name, job in jobs.items():
        for line in ci.flatten(job.get("before_script")) + ci.flatten(job.get("script")):
            assert not re.search(r"set\s+-[a-z]*x", line)
            assert not re.search(r"echo[^\n]*\$\{?(CI_JOB_TOKEN|CI_REPOSITORY_URL|CI_REGISTRY_PASSWORD)", line), name
            assert "-p \"$CI_JOB_TOKEN\"" not in line and "--password " not in line, name


# --------------------------------------------------------------------------------------------
# Running the scripts with a stub docker
# --------------------------------------------------------------------------------------------

DOCKER_STUB = r"""
import shutil
if argv[:1] == ['login']:
    record['stdin'] = sys.stdin.read()
elif argv[:1] == ['run'] and '--label-file' in argv:
    record['labels'] = open(argv[argv.index('--label-file') + 1]).read()
elif argv[:1] == ['inspect']:
    print(os.environ.get('STUB_RUNNING', 'true'))
elif argv[:1] == ['ps'] and os.environ.get('STUB_DOCKER_PS'):
    sys.stdout.write(open(os.environ['STUB_DOCKER_PS']).read())
"""

GIT_STUB = r"""
sys.stdout.write(os.environ.get('STUB_GIT_HEADS', ''))
record['rc'] = int(os.environ.get('STUB_GIT_RC', '0'))
"""


@pytest.fixture
def stubs(tmp_path):
    bin_dir = tmp_path / "bin"
    ci.write_stub(bin_dir, "docker", DOCKER_STUB)
    ci.write_stub(bin_dir, "git", GIT_STUB)
    ci.write_stub(bin_dir, "sleep", "")
    workdir = tmp_path / "work"
    workdir.mkdir()
    return workdir, bin_dir


# The docker and git images are Alpine: their `sh` is BusyBox ash. Use it when installed
# (apt-get install busybox), else the system's POSIX sh.
SH = ["busybox", "sh"] if shutil.which("busybox") else ["sh"]


def run(rendered, job, env, stubs):
    workdir, bin_dir = stubs
    return ci.run_job(job, ci.job_environment(rendered, job, env), workdir, bin_dir, shell="sh", interpreter=SH)


def parse_labels(text: str) -> dict[str, str]:
    labels = {}
    for line in text.splitlines():
        if line.strip() and not line.startswith("#"):
            key, _, value = line.partition("=")
            assert key not in labels, f"duplicate label {key}"
            labels[key] = value
    return labels


def deploy_labels(rendered, jobs, stubs, env=None):
    env = env or feature_push()
    result, calls = run(rendered, jobs["review:deploy"], env, stubs)
    assert result.returncode == 0, result.stdout + result.stderr
    docker_run = [c for c in calls if c["cmd"] == "docker" and c["argv"][0] == "run"]
    assert len(docker_run) == 1
    return parse_labels(docker_run[0]["labels"]), docker_run[0]["argv"], calls, result


def test_build_pushes_to_the_project_registry_with_stdin_login(rendered, jobs, stubs):
    env = feature_push()
    result, calls = run(rendered, jobs["review:build"], env, stubs)
    assert result.returncode == 0, result.stderr
    docker = [c for c in calls if c["cmd"] == "docker"]
    login, build, push = docker
    assert login["argv"][:1] == ["login"] and "--password-stdin" in login["argv"]
    assert login["stdin"] == env["CI_JOB_TOKEN"]
    image = f"{env['CI_REGISTRY_IMAGE']}/review:{env['CI_COMMIT_REF_SLUG']}-{env['CI_COMMIT_SHORT_SHA']}"
    assert build["argv"][0] == "build" and image in build["argv"]
    assert f"{contract.LABEL_PROJECT}={env['CI_PROJECT_PATH']}" in build["argv"]
    assert push["argv"] == ["push", image]
    assert all(env["CI_JOB_TOKEN"] not in arg for c in calls for arg in c["argv"])
    assert env["CI_JOB_TOKEN"] not in result.stdout + result.stderr


def test_deploy_runs_the_branch_container_with_contract_labels(rendered, jobs, stubs):
    env = feature_push()
    labels, argv, calls, result = deploy_labels(rendered, jobs, stubs, env)
    name = contract.CONTAINER_NAME_FORMAT.format(
        project_path_slug=env["CI_PROJECT_PATH_SLUG"], ref_slug=env["CI_COMMIT_REF_SLUG"])
    assert argv[argv.index("--name") + 1] == name
    # Published on Staging's address: Traefik on Production uses the bound IP and port.
    assert argv[argv.index("--publish") + 1] == f"{STAGING_ADDRESS}::{8080}"
    assert argv[-1] == f"{env['CI_REGISTRY_IMAGE']}/review:{env['CI_COMMIT_REF_SLUG']}-{env['CI_COMMIT_SHORT_SHA']}"
    assert labels[contract.LABEL_PROJECT] == env["CI_PROJECT_PATH"]
    assert labels[contract.LABEL_REF] == env["CI_COMMIT_REF_NAME"]
    assert check_labels_against_contract(labels, REVIEW_DOMAIN) == []
    router = review_routers(labels)
    assert list(router) == [name]
    assert router[name]["rule"] == f"Host(`{env['CI_COMMIT_REF_SLUG']}.{REVIEW_DOMAIN}`)"
    assert labels[f"traefik.http.services.{name}.loadbalancer.server.port"] == "8080"
    assert env["CI_JOB_TOKEN"] not in result.stdout + result.stderr
    # The old container of the branch is replaced.
    removed = [c["argv"] for c in calls if c["cmd"] == "docker" and c["argv"][:1] == ["rm"]]
    assert removed == [["rm", "--force", name]]


def test_deploy_without_middlewares_and_other_port(stubs):
    rendered = render({**SAMPLE_INPUTS, "middlewares": "", "app_port": 3000})
    labels, argv, _, _ = deploy_labels(rendered, ci.jobs_of(rendered), stubs)
    assert not [k for k in labels if k.endswith(".middlewares")]
    assert argv[argv.index("--publish") + 1] == f"{STAGING_ADDRESS}::3000"
    assert check_labels_against_contract(labels, REVIEW_DOMAIN, middlewares=()) == []


@pytest.mark.parametrize("env_change, message", [
    ({"STAGING_HOST_ADDRESS": ""}, "STAGING_HOST_ADDRESS"),
    ({"CI_COMMIT_REF_SLUG": "a" * 64}, "longer than 63"),
    ({"CI_COMMIT_REF_SLUG": "Feature_X"}, "not one DNS label"),
])
def test_deploy_refuses_bad_settings(rendered, jobs, stubs, env_change, message):
    env = {**feature_push(), **env_change}
    result, calls = run(rendered, jobs["review:deploy"], env, stubs)
    assert result.returncode != 0 and message in result.stderr
    assert not [c for c in calls if c["cmd"] == "docker" and c["argv"][:1] == ["run"]]


def test_deploy_fails_when_the_container_does_not_stay_up(rendered, jobs, stubs):
    result, _ = run(rendered, jobs["review:deploy"], {**feature_push(), "STUB_RUNNING": "false"}, stubs)
    assert result.returncode != 0 and "is not running" in result.stderr


def test_stop_removes_the_branch_container(rendered, jobs, stubs):
    env = feature_push()
    result, calls = run(rendered, jobs["review:stop"], env, stubs)
    assert result.returncode == 0, result.stderr
    name = f"review-{env['CI_PROJECT_PATH_SLUG']}-{env['CI_COMMIT_REF_SLUG']}"
    assert ["rm", "--force", name] in [c["argv"] for c in calls if c["cmd"] == "docker"]


HEADS = (
    "1111111111111111111111111111111111111111\trefs/heads/master\n"
    "2222222222222222222222222222222222222222\trefs/heads/feature/live\n"
    "3333333333333333333333333333333333333333\trefs/heads/fix-1\n"
)


def test_cleanup_removes_only_containers_whose_branch_is_gone(rendered, jobs, stubs):
    workdir, _ = stubs
    env = ci.predefined("schedule", "master", protected=True, STUB_GIT_HEADS=HEADS)
    result, calls = run(rendered, jobs["review:cleanup:branches"], env, stubs)
    assert result.returncode == 0, result.stderr
    ls_remote = [c["argv"] for c in calls if c["cmd"] == "git"]
    assert ls_remote == [["ls-remote", "--heads", env["CI_REPOSITORY_URL"]]]
    assert (workdir / "branches.txt").read_text().split("\n") == ["master", "feature/live", "fix-1", ""]
    assert env["CI_JOB_TOKEN"] not in result.stdout + result.stderr

    ps = workdir / "ps.txt"
    ps.write_text(
        "review-acme-shop-web-feature-live feature/live\n"
        "review-acme-shop-web-feature-gone feature/gone\n"
        "review-acme-shop-web-fix-1 fix-1\n"
        "review-acme-shop-web-fix fix\n"
    )
    (workdir / "stub.log").write_text("")
    result, calls = run(rendered, jobs["review:cleanup"], {**env, "STUB_DOCKER_PS": str(ps)}, stubs)
    assert result.returncode == 0, result.stderr
    docker = [c["argv"] for c in calls if c["cmd"] == "docker"]
    assert docker[0][:2] == ["ps", "--all"]
    assert f"label={contract.LABEL_PROJECT}={env['CI_PROJECT_PATH']}" in docker[0]
    removed = [argv[-1] for argv in docker if argv[:1] == ["rm"]]
    assert removed == ["review-acme-shop-web-feature-gone", "review-acme-shop-web-fix"]
    prune = [argv for argv in docker if argv[:2] == ["image", "prune"]]
    assert prune and f"label={contract.LABEL_PROJECT}={env['CI_PROJECT_PATH']}" in prune[0]


@pytest.mark.parametrize("heads, rc", [("", 0), (HEADS, 128)])
def test_cleanup_refuses_to_work_without_a_branch_list(rendered, jobs, stubs, heads, rc):
    env = ci.predefined("schedule", "master", protected=True, STUB_GIT_HEADS=heads, STUB_GIT_RC=str(rc))
    result, _ = run(rendered, jobs["review:cleanup:branches"], env, stubs)
    assert result.returncode != 0


def test_adoption_snippet_in_docs_is_valid():
    text = PIPELINE_DOC.read_text(encoding="utf-8")
    blocks = re.findall(r"```yaml\n# application project: \.gitlab-ci\.yml\n(.*?)```", text, re.S)
    assert blocks, "docs/pipeline.md must show an application project's .gitlab-ci.yml"
    header, _ = template_documents()
    for block in blocks:
        app = yaml.safe_load(block)
        assert ci.schema_errors(app) == []
        includes = [i for i in app["include"] if i.get("file") == "/templates/review-app.yml"]
        assert includes, "the snippet must include /templates/review-app.yml"
        for include in includes:
            assert set(include["inputs"]) <= set(header["spec"]["inputs"])
            render(include["inputs"])


# --------------------------------------------------------------------------------------------
# Labels against the contract and against Traefik's static config
# --------------------------------------------------------------------------------------------


def review_routers(labels: dict[str, str]) -> dict[str, dict[str, str]]:
    routers: dict[str, dict[str, str]] = {}
    for key, value in labels.items():
        match = re.match(r"^traefik\.http\.routers\.([^.]+)\.(.+)$", key)
        if match:
            routers.setdefault(match.group(1), {})[match.group(2)] = value
    return routers


def _host_problems(host: str, review_domain: str) -> list[str]:
    suffix = "." + review_domain
    if not host.endswith(suffix):
        return [f"host {host} is not under {review_domain}"]
    label = host[: -len(suffix)]
    if not contract.DNS_LABEL_RE.match(label):
        return [f"host {host}: {label!r} is not exactly one DNS label, the wildcard *.{review_domain} does not cover it"]
    return []


def check_labels_against_contract(labels: dict[str, str], review_domain: str,
                                  middlewares=contract.REVIEW_MIDDLEWARES) -> list[str]:
    """Problems of a review container's labels against templates/review_app_contract.py."""
    problems = []
    if labels.get(contract.LABEL_ENABLE) != "true":
        problems.append("traefik.enable=true missing (exposedByDefault is false)")
    routers = review_routers(labels)
    if len(routers) != 1:
        return problems + [f"expected one router, got {sorted(routers)}"]
    (name, router), = routers.items()
    if not contract.ROUTER_NAME_RE.match(name):
        problems.append(f"router name {name!r} is not a valid Traefik name")
    rule = contract.HOST_RULE_RE.match(router.get("rule", ""))
    if not rule:
        problems.append(f"rule {router.get('rule')!r} is not a Traefik v3 Host(`...`) rule")
    else:
        problems += _host_problems(rule.group("host"), review_domain)
    if router.get("entrypoints") != contract.REVIEW_ENTRYPOINT:
        problems.append(f"entrypoints {router.get('entrypoints')!r} != {contract.REVIEW_ENTRYPOINT!r}")
    if any(k == "tls" or k.startswith("tls.") for k in router):
        problems.append("review routers set no tls: the edge ends TLS, the review entrypoint is plain HTTP")
    if tuple(filter(None, router.get("middlewares", "").split(","))) != tuple(middlewares):
        problems.append(f"middlewares {router.get('middlewares')!r} != {middlewares}")
    service = router.get("service", name)
    port = labels.get(f"traefik.http.services.{service}.loadbalancer.server.port", "")
    if not port.isdigit():
        problems.append(f"service {service} has no loadbalancer.server.port")
    return problems


def _address_port(address: str) -> str:
    return address.rsplit(":", 1)[-1].split("/", 1)[0]


def _covers(certificate_domain: str, host: str) -> bool:
    if certificate_domain.startswith("*."):
        head, _, rest = host.partition(".")
        return bool(head) and rest == certificate_domain[2:]
    return certificate_domain == host


HOST_REGEXP_RE = re.compile(r"^HostRegexp\(`(?P<re>[^`]+)`\)$")


def check_labels_against_traefik(labels: dict[str, str], review_static: dict, edge_static: dict,
                                 edge_dynamic: dict, *, certificate_domains=()) -> list[str]:
    """Problems that keep the platform's two Traefik instances from serving the review container.

    review_static: the review instance's static config (its Docker provider, its entrypoints);
    edge_static / edge_dynamic: the edge's static config and file-provider routes, which must
    forward the container's host to the review instance with a certificate that covers it;
    certificate_domains: domains of certificates in the edge's store that its configs do not
    show (a delivered file certificate).
    """
    problems = []
    review_eps = review_static.get("entryPoints") or {}
    providers = review_static.get("providers") or {}
    docker = providers.get("docker")
    if not isinstance(docker, dict):
        return ["review instance: providers.docker is missing: review containers on Staging are never discovered"]
    if set(providers) != {"docker"}:
        problems.append(f"review instance: providers {sorted(providers)}: it must read labels only")
    if review_static.get("api") is not None or review_static.get("certificatesResolvers"):
        problems.append("review instance: no api/dashboard and no ACME")
    endpoint = docker.get("endpoint", "")
    if not endpoint.startswith(contract.DOCKER_ENDPOINT_SCHEME) or not endpoint.endswith(f":{contract.DOCKER_ENDPOINT_PORT}"):
        problems.append(f"docker endpoint {endpoint!r} is not Staging's TLS daemon (tcp://...:{contract.DOCKER_ENDPOINT_PORT})")
    tls = docker.get("tls") or {}
    missing_tls = [key for key in contract.DOCKER_PROVIDER_TLS_KEYS if not tls.get(key)]
    if missing_tls:
        problems.append(f"docker provider tls lacks {missing_tls}: no mutual TLS to Staging")
    if docker.get("useBindPortIP") is not contract.DOCKER_PROVIDER_USE_BIND_PORT_IP:
        problems.append("useBindPortIP must be true: Traefik reaches review apps through Staging's bound port")
    if docker.get("exposedByDefault", True) is not contract.DOCKER_PROVIDER_EXPOSED_BY_DEFAULT:
        problems.append("exposedByDefault must be false: every container on Staging would be exposed")
    if docker.get("constraints"):
        problems.append("docker provider constraints are set: review labels do not satisfy any")
    if labels.get(contract.LABEL_ENABLE) != "true":
        problems.append("traefik.enable=true missing")

    edge_eps = edge_static.get("entryPoints") or {}
    edge_routers = ((edge_dynamic.get("http") or {}).get("routers") or {})
    edge_services = ((edge_dynamic.get("http") or {}).get("services") or {})
    for name, router in review_routers(labels).items():
        eps = [e.strip() for e in router.get("entrypoints", "").split(",") if e.strip()]
        if not eps:
            problems.append(f"router {name}: no entrypoints")
        for ep in eps:
            if ep not in review_eps:
                problems.append(f"router {name}: entrypoint {ep!r} is not one of the review instance's {sorted(review_eps)}")
        if any(k == "tls" or k.startswith("tls.") for k in router):
            problems.append(f"router {name}: tls set, but the review entrypoint is plain HTTP: it would never match")
        rule = contract.HOST_RULE_RE.match(router.get("rule", ""))
        if not rule:
            problems.append(f"router {name}: rule {router.get('rule')!r} is not v3 Host(`...`)")
            continue
        host = rule.group("host")
        forwarding = []
        for edge_name, edge_router in edge_routers.items():
            m = HOST_REGEXP_RE.match(edge_router.get("rule", ""))
            service = edge_services.get(edge_router.get("service", ""), {})
            urls = [srv.get("url", "") for srv in (service.get("loadBalancer") or {}).get("servers", [])]
            if m and re.fullmatch(m.group("re"), host) and any(f"//{contract.REVIEW_CONTAINER}:" in u for u in urls):
                forwarding.append((edge_name, edge_router))
        if not forwarding:
            problems.append(f"router {name}: no edge router forwards {host} to {contract.REVIEW_CONTAINER}")
            continue
        edge_name, edge_router = forwarding[0]
        for ep in edge_router.get("entryPoints", []):
            if _address_port((edge_eps.get(ep) or {}).get("address", "")) != "443":
                problems.append(f"edge router {edge_name}: entrypoint {ep} is not the :443 one")
        edge_tls = edge_router.get("tls")
        if edge_tls is None:
            problems.append(f"edge router {edge_name}: no tls, HTTPS requests would not match")
            continue
        resolver = edge_tls.get("certResolver")
        if resolver and resolver not in (edge_static.get("certificatesResolvers") or {}):
            problems.append(f"edge router {edge_name}: certresolver {resolver} unknown")
        known = list(certificate_domains)
        for domain in edge_tls.get("domains", []) or []:
            known += [domain.get("main", "")] + list(domain.get("sans", []) or [])
        if not any(_covers(d, host) for d in known):
            problems.append(f"edge router {edge_name}: no certificate in the edge's store covers {host} (known: {known})")
        for middleware in filter(None, (m.strip() for m in router.get("middlewares", "").split(","))):
            if not middleware.endswith("@docker") and "@" in middleware:
                problems.append(f"router {name}: middleware {middleware} does not exist on the review instance (docker provider only)")
    return problems


def contract_configs(domain: str = DOMAIN) -> tuple[dict, dict, dict]:
    """The review instance's static config, the edge's static and dynamic configs, written to
    the contract (the Traefik components' side)."""
    review_domain = contract.review_domain_for(domain)
    review_static = {
        "entryPoints": {contract.REVIEW_ENTRYPOINT: {"address": contract.REVIEW_ENTRYPOINT_ADDRESS}},
        "providers": {
            "docker": {
                "endpoint": f"tcp://{STAGING_ADDRESS}:{contract.DOCKER_ENDPOINT_PORT}",
                "exposedByDefault": False,
                "useBindPortIP": True,
                "watch": True,
                "tls": {"ca": "/certs/ca.pem", "cert": "/certs/cert.pem", "key": "/certs/key.pem"},
            },
        },
    }
    edge_static = {
        "entryPoints": {
            contract.ENTRYPOINT_WEB: {
                "address": contract.ENTRYPOINT_ADDRESSES[contract.ENTRYPOINT_WEB],
                "http": {"redirections": {"entryPoint": {"to": contract.ENTRYPOINT_WEBSECURE, "scheme": "https"}}},
            },
            contract.ENTRYPOINT_WEBSECURE: {"address": contract.ENTRYPOINT_ADDRESSES[contract.ENTRYPOINT_WEBSECURE]},
        },
        "providers": {"file": {"directory": "/etc/traefik/dynamic", "watch": True}},
        "certificatesResolvers": {
            "letsencrypt-dns": {"acme": {"email": "ops@example.com", "storage": "/acme/acme.json",
                                         "dnsChallenge": {"provider": "cloudflare"}}},
        },
    }
    escaped = review_domain.replace(".", r"\.")
    edge_dynamic = {"http": {
        "routers": {"review-apps": {
            "entryPoints": [contract.ENTRYPOINT_WEBSECURE],
            "rule": f"HostRegexp(`^[a-z0-9]([a-z0-9-]{{0,61}}[a-z0-9])?\\.{escaped}$`)",
            "service": "review-apps",
            "tls": {"certResolver": "letsencrypt-dns",
                    "domains": [{"main": review_domain, "sans": [contract.wildcard_for(review_domain)]}]},
        }},
        "services": {"review-apps": {"loadBalancer": {"servers": [{"url": f"http://{contract.REVIEW_CONTAINER}:80"}]}}},
    }}
    return review_static, edge_static, edge_dynamic


def test_contract_static_configs_are_valid_traefik_v3_static_configs():
    import json

    schema = json.loads(TRAEFIK_STATIC_SCHEMA.read_text(encoding="utf-8"))
    review_static, edge_static, _ = contract_configs()
    for static in (review_static, edge_static):
        errors = [e.message for e in jsonschema.Draft7Validator(schema).iter_errors(static)]
        assert errors == []


def test_template_labels_are_served_by_the_contract_traefik(rendered, jobs, stubs):
    labels, *_ = deploy_labels(rendered, jobs, stubs)
    assert check_labels_against_traefik(labels, *contract_configs()) == []


def test_file_provider_wildcard_certificate_is_accepted(rendered, jobs, stubs):
    labels, *_ = deploy_labels(rendered, jobs, stubs)
    review_static, edge_static, edge_dynamic = contract_configs()
    edge_dynamic["http"]["routers"]["review-apps"]["tls"] = {}
    del edge_static["certificatesResolvers"]
    assert check_labels_against_traefik(labels, review_static, edge_static, edge_dynamic)  # no certificate: must fail
    assert check_labels_against_traefik(labels, review_static, edge_static, edge_dynamic,
                                        certificate_domains=[f"*.{REVIEW_DOMAIN}"]) == []


BROKEN_TRAEFIK = {
    "review entrypoint renamed": lambda r, es, ed: r["entryPoints"].update(http=r["entryPoints"].pop("review")),
    "edge not on 443": lambda r, es, ed: es["entryPoints"]["websecure"].update(address=":8443"),
    "no docker provider": lambda r, es, ed: r["providers"].pop("docker"),
    "review instance with a file provider": lambda r, es, ed: r["providers"].update(file={"directory": "/x"}),
    "review instance with the api": lambda r, es, ed: r.update(api={"dashboard": True}),
    "useBindPortIP off": lambda r, es, ed: r["providers"]["docker"].update(useBindPortIP=False),
    "exposedByDefault on": lambda r, es, ed: r["providers"]["docker"].update(exposedByDefault=True),
    "plain docker endpoint": lambda r, es, ed: r["providers"]["docker"].update(endpoint="unix:///var/run/docker.sock"),
    "no client certificate": lambda r, es, ed: r["providers"]["docker"]["tls"].pop("cert"),
    "wildcard of another domain": lambda r, es, ed: ed["http"]["routers"]["review-apps"]["tls"].update(
        domains=[{"main": "example.org", "sans": ["*.example.org"]}]),
    "edge forwards nothing": lambda r, es, ed: ed["http"]["routers"].pop("review-apps"),
    "edge forwards elsewhere": lambda r, es, ed: ed["http"]["services"]["review-apps"]["loadBalancer"].update(
        servers=[{"url": "http://gitlab:80"}]),
    "edge regexp of another domain": lambda r, es, ed: ed["http"]["routers"]["review-apps"].update(
        rule=r"HostRegexp(`^[a-z0-9-]+\.example\.org$`)"),
}


@pytest.mark.parametrize("case", sorted(BROKEN_TRAEFIK))
def test_broken_traefik_config_is_caught(rendered, jobs, stubs, case):
    labels, *_ = deploy_labels(rendered, jobs, stubs)
    configs = contract_configs()
    BROKEN_TRAEFIK[case](*configs)
    assert check_labels_against_traefik(labels, *configs)


def test_a_file_provider_middleware_is_caught(rendered, jobs, stubs):
    labels, *_ = deploy_labels(rendered, jobs, stubs)
    (name,) = review_routers(labels)
    labels[f"traefik.http.routers.{name}.middlewares"] = "security-headers@file"
    assert check_labels_against_traefik(labels, *contract_configs())


BROKEN_LABELS = {
    "v2 multi-host rule": ("rule", "Host(`a.dev.example.com`,`b.dev.example.com`)"),
    "v2 HostRegexp": ("rule", "HostRegexp(`{sub:[a-z]+}.dev.example.com`)"),
    "no backticks": ("rule", "Host(a.dev.example.com)"),
    "two labels under wildcard": ("rule", "Host(`a.b.dev.example.com`)"),
    "other domain": ("rule", "Host(`a.example.org`)"),
    "unknown entrypoint": ("entrypoints", "websecur"),
    "the edge's entrypoint": ("entrypoints", "websecure"),
    "tls on the plain entrypoint": ("tls", "true"),
}


@pytest.mark.parametrize("case", sorted(BROKEN_LABELS))
def test_broken_labels_are_caught(rendered, jobs, stubs, case):
    labels, *_ = deploy_labels(rendered, jobs, stubs)
    (name,) = review_routers(labels)
    key, value = BROKEN_LABELS[case]
    labels[f"traefik.http.routers.{name}.{key}"] = value
    assert check_labels_against_contract(labels, REVIEW_DOMAIN)
    assert check_labels_against_traefik(labels, *contract_configs())


# --------------------------------------------------------------------------------------------
# The template against the Traefik this program really renders (both wildcard methods)
# --------------------------------------------------------------------------------------------

PROGRAM_DOMAIN = "company.ru"  # the example stack's domain (tests/conftest.py)
PROGRAM_STAGING = "192.168.88.3"  # its reviewAppsDaemon address; never contacted


def program_traefik(method: str) -> tuple[dict, dict, dict, list[str]]:
    """The review instance's static config, the edge's static config, its merged dynamic config
    and file-provider certificate domains, as the production stack sends them to Production."""
    import service_files as sf

    overrides = {} if method == "traefik" else {
        "wildcardMethod": "dnsrobocert", "dnsProvider": "yandex", "dnsCredentials": {"auth_token": "MOCK-dns-token-0123456789"},
    }
    run = sf.production(**overrides)
    files = sf.bundle(run.named("traefik-files"))
    review_static = yaml.safe_load(sf.bundle(run.named("traefik-review-files"))["/srv/traefik/review/traefik.yml"][1])
    edge_static = yaml.safe_load(files["/srv/traefik/traefik.yml"][1])
    dynamic: dict = {}
    for path, (_, text) in sorted(files.items()):
        if path.startswith("/srv/traefik/dynamic/"):
            for section, content in (yaml.safe_load(text) or {}).items():
                for kind, entries in content.items():
                    merged = dynamic.setdefault(section, {}).setdefault(kind, {} if isinstance(entries, dict) else [])
                    merged.update(entries) if isinstance(entries, dict) else merged.extend(entries)
    certificate_domains: list[str] = []
    if dynamic.get("tls", {}).get("certificates"):
        # The files come from dnsrobocert: the domains are those of its rendered config.yml.
        wildcard_files = sf.bundle(run.named("wildcard-certificate-files"))
        for cert in yaml.safe_load(wildcard_files["/srv/letsencrypt-dns/config/config.yml"][1])["certificates"]:
            certificate_domains += cert["domains"]
        assert certificate_domains, "dnsrobocert's config.yml was not found in the graph"
    return review_static, edge_static, dynamic, certificate_domains


@pytest.fixture(scope="module")
def program_rendered() -> dict:
    return render({"review_domain": contract.review_domain_for(PROGRAM_DOMAIN)})


@pytest.mark.parametrize("method", ["traefik", "dnsrobocert"])
def test_template_labels_are_served_by_the_programs_traefik(program_rendered, stubs, method):
    review_static, edge_static, dynamic, certificate_domains = program_traefik(method)
    env = ci.predefined("push", "feature/login-form", protected=False, STAGING_HOST_ADDRESS=PROGRAM_STAGING)
    labels, argv, *_ = deploy_labels(program_rendered, ci.jobs_of(program_rendered), stubs, env)
    problems = check_labels_against_traefik(labels, review_static, edge_static, dynamic, certificate_domains=certificate_domains)
    assert problems == []
    # The container publishes its port on the very daemon the review instance watches.
    assert review_static["providers"]["docker"]["endpoint"] == f"tcp://{PROGRAM_STAGING}:2376"
    assert any(a.startswith(f"{PROGRAM_STAGING}::") for a in argv), argv


def test_programs_edge_without_the_wildcard_certificate_is_caught(program_rendered, stubs):
    review_static, edge_static, dynamic, _ = program_traefik("traefik")
    dynamic["http"]["routers"]["review-apps"]["tls"].pop("domains")
    env = ci.predefined("push", "feature/login-form", protected=False, STAGING_HOST_ADDRESS=PROGRAM_STAGING)
    labels, *_ = deploy_labels(program_rendered, ci.jobs_of(program_rendered), stubs, env)
    assert any("no certificate" in p for p in check_labels_against_traefik(labels, review_static, edge_static, dynamic))
