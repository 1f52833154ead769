"""Tests of .gitlab-ci.yml, the pipeline of this infrastructure project.

The file is validated against GitLab's own CI schema (tests/schemas/published/ci.json), its rules are
evaluated for every kind of pipeline (merge request, push to each branch, schedules), every job
script goes through shellcheck, and the Pulumi jobs' scripts are run with stub `pulumi`/`make`
commands to prove what they call and that no secret reaches the job log.

The helpers at the top are shared with tests/test_review_app_template.py (it loads this file).
"""

from __future__ import annotations

import copy
import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import jsonschema
import pytest
import yaml

from schema_files import PUBLISHED_SCHEMAS

ROOT = Path(__file__).resolve().parents[1]
CI_FILE = ROOT / ".gitlab-ci.yml"
CI_SCHEMA = PUBLISHED_SCHEMAS / "ci.json"

STACKS = ("production", "staging")
RUNNER_TAGS = {"production", "staging"}
# Top-level keys of a .gitlab-ci.yml that are not jobs.
GLOBAL_KEYWORDS = {
    "default", "include", "stages", "variables", "workflow", "spec", "image", "services",
    "cache", "before_script", "after_script",
}
# Secret-looking variable names that must never be defined in a CI file.
SECRET_NAME_RE = re.compile(r"PASSPHRASE|PASSWORD|SECRET|TOKEN|PRIVATE|(^|_)KEY$|ACCESS_KEY", re.I)


# --------------------------------------------------------------------------------------------
# Helpers (also used by tests/test_review_app_template.py)
# --------------------------------------------------------------------------------------------


def ci_validator() -> jsonschema.Draft7Validator:
    schema = json.loads(CI_SCHEMA.read_text(encoding="utf-8"))
    jsonschema.Draft7Validator.check_schema(schema)
    return jsonschema.Draft7Validator(schema)


def schema_errors(document: dict) -> list[str]:
    return [
        f"{'/'.join(str(p) for p in error.absolute_path) or '<root>'}: {error.message[:300]}"
        for error in ci_validator().iter_errors(document)
    ]


def _deep_merge(base: dict, override: dict) -> dict:
    """GitLab's `extends` merge: hashes merge deeply, everything else is replaced."""
    merged = copy.deepcopy(base)
    for key, value in override.items():
        if isinstance(value, dict) and isinstance(merged.get(key), dict):
            merged[key] = _deep_merge(merged[key], value)
        else:
            merged[key] = copy.deepcopy(value)
    return merged


def resolve_job(config: dict, name: str, _seen: tuple = ()) -> dict:
    assert name not in _seen, f"extends cycle through {name}"
    job = config[name]
    parents = job.get("extends", [])
    if isinstance(parents, str):
        parents = [parents]
    resolved: dict = {}
    for parent in parents:
        assert parent in config, f"{name} extends unknown {parent}"
        resolved = _deep_merge(resolved, resolve_job(config, parent, _seen + (name,)))
    own = {k: v for k, v in job.items() if k != "extends"}
    return _deep_merge(resolved, own)


def jobs_of(config: dict) -> dict[str, dict]:
    """Every visible job with `extends` applied and global defaults filled in."""
    defaults = config.get("default", {}) or {}
    jobs = {}
    for name, value in config.items():
        if name in GLOBAL_KEYWORDS or name.startswith(".") or not isinstance(value, dict):
            continue
        job = resolve_job(config, name)
        for key in ("image", "before_script", "after_script", "tags", "cache"):
            if key not in job and key in defaults:
                job[key] = copy.deepcopy(defaults[key])
        jobs[name] = job
    return jobs


def flatten(script) -> list[str]:
    if script is None:
        return []
    if isinstance(script, str):
        return [script]
    lines: list[str] = []
    for item in script:
        lines.extend(flatten(item))
    return lines


def image_name(job: dict) -> str | None:
    image = job.get("image")
    if isinstance(image, dict):
        return image.get("name")
    return image


def pinned_problem(image: str | None) -> str | None:
    """None if the image is pinned by an explicit version tag (or a digest)."""
    if not image:
        return "no image"
    if "$" in image:
        return f"{image}: unresolved variable"
    if re.search(r"@sha256:[0-9a-f]{64}$", image):
        return None
    last = image.rsplit("/", 1)[-1]
    if ":" not in last:
        return f"{image}: no tag (means :latest)"
    tag = last.split(":", 1)[1]
    if tag == "latest" or "latest" in tag.split("-"):
        return f"{image}: latest tag"
    if not re.match(r"^v?\d+\.\d+(\.\d+)?", tag):
        return f"{image}: tag {tag!r} is not an explicit version"
    return None


def expand(value: str, env: dict[str, str]) -> str:
    """GitLab's variable expansion of $VAR / ${VAR} inside variable values."""
    return re.sub(
        r"\$\{?([A-Za-z_][A-Za-z0-9_]*)\}?", lambda m: env.get(m.group(1), ""), str(value)
    )


def job_environment(config: dict, job: dict, ci_env: dict[str, str]) -> dict[str, str]:
    env = dict(ci_env)
    for source in (config.get("variables") or {}, job.get("variables") or {}):
        for key, value in source.items():
            if isinstance(value, dict):
                value = value.get("value", "")
            env[key] = expand(value, env)
    return env


# ---- a small evaluator of GitLab `rules:if` expressions -------------------------------------

_TOKEN_RE = re.compile(
    r"\s*(?:(?P<var>\$[A-Za-z_][A-Za-z0-9_]*)|(?P<str>\"[^\"]*\"|'[^']*')"
    r"|(?P<op>==|!=|=~|!~|&&|\|\||\(|\))|(?P<null>null)|(?P<re>/(?:\\/|[^/])*/))"
)


def _tokens(expression: str) -> list[tuple[str, str]]:
    tokens, pos = [], 0
    expression = expression.strip()
    while pos < len(expression):
        match = _TOKEN_RE.match(expression, pos)
        assert match and match.end() > pos, f"cannot parse rule {expression!r} at {pos}"
        kind = match.lastgroup
        tokens.append((kind, match.group(kind)))
        pos = match.end()
        while pos < len(expression) and expression[pos].isspace():
            pos += 1
    return tokens


def evaluate_if(expression: str, env: dict[str, str]) -> bool:
    """Evaluate `$A == "x" && ($B || $C != "y")` the way GitLab does (&& binds tighter)."""
    tokens = _tokens(expression)
    pos = 0

    def value(token):
        kind, text = token
        if kind == "var":
            return env.get(text[1:])
        if kind == "str":
            return text[1:-1]
        if kind == "null":
            return None
        if kind == "re":
            return re.compile(text[1:-1])
        raise AssertionError(f"unexpected {text!r} in {expression!r}")

    def primary():
        nonlocal pos
        if tokens[pos] == ("op", "("):
            pos += 1
            result = disjunction()
            assert tokens[pos] == ("op", ")"), expression
            pos += 1
            return result
        left = value(tokens[pos])
        pos += 1
        if pos < len(tokens) and tokens[pos][1] in ("==", "!=", "=~", "!~"):
            op = tokens[pos][1]
            right = value(tokens[pos + 1])
            pos += 2
            if op == "==":
                return left == right
            if op == "!=":
                return left != right
            matched = left is not None and bool(right.search(left))
            return matched if op == "=~" else not matched
        return bool(left)

    def conjunction():
        nonlocal pos
        result = primary()
        while pos < len(tokens) and tokens[pos] == ("op", "&&"):
            pos += 1
            result = primary() and result
        return result

    def disjunction():
        nonlocal pos
        result = conjunction()
        while pos < len(tokens) and tokens[pos] == ("op", "||"):
            pos += 1
            result = conjunction() or result
        return result

    result = disjunction()
    assert pos == len(tokens), f"trailing tokens in {expression!r}"
    return result


def rules_outcome(rules: list | None, env: dict[str, str]) -> str | None:
    """`when` of the first matching rule; None if the job is not added."""
    if rules is None:
        return "on_success"
    for rule in rules:
        if "if" in rule and not evaluate_if(rule["if"], env):
            continue
        when = rule.get("when", "on_success")
        return None if when == "never" else when
    return None


def pipeline_jobs(config: dict, env: dict[str, str]) -> dict[str, str] | None:
    """{job: when} of the pipeline GitLab would create; None if workflow:rules refuse it."""
    workflow = (config.get("workflow") or {}).get("rules")
    if workflow is not None and rules_outcome(workflow, env) is None:
        return None
    jobs = {}
    for name, job in jobs_of(config).items():
        outcome = rules_outcome(job.get("rules"), env)
        if outcome is not None:
            jobs[name] = outcome
    return jobs


def predefined(source: str, ref: str, *, protected: bool, mr: bool = False, **extra) -> dict:
    """Predefined CI/CD variables of a pipeline, enough for rules and scripts."""
    slug = re.sub(r"[^a-z0-9]", "-", ref.lower())[:63].strip("-")
    env = {
        "CI": "true",
        "GITLAB_CI": "true",
        "CI_PIPELINE_SOURCE": source,
        "CI_COMMIT_REF_NAME": ref,
        "CI_COMMIT_REF_SLUG": slug,
        "CI_COMMIT_REF_PROTECTED": "true" if protected else "false",
        "CI_COMMIT_SHA": "0123456789abcdef0123456789abcdef01234567",
        "CI_COMMIT_SHORT_SHA": "01234567",
        "CI_DEFAULT_BRANCH": "master",
        "CI_PROJECT_PATH": "acme/shop-web",
        "CI_PROJECT_PATH_SLUG": "acme-shop-web",
        "CI_PROJECT_URL": "https://gitlab.example.com/acme/shop-web",
        "CI_REGISTRY": "registry.example.com",
        "CI_REGISTRY_IMAGE": "registry.example.com/acme/shop-web",
        "CI_REGISTRY_USER": "gitlab-ci-token",
        "CI_JOB_TOKEN": "glcbt-job-token-must-not-leak",
        "CI_REPOSITORY_URL": "https://gitlab-ci-token:glcbt-job-token-must-not-leak@gitlab.example.com/acme/shop-web.git",
    }
    if mr:
        env["CI_MERGE_REQUEST_IID"] = "7"
        env["CI_MERGE_REQUEST_SOURCE_BRANCH_NAME"] = ref
        env["CI_MERGE_REQUEST_TARGET_BRANCH_NAME"] = "development"
    else:
        env["CI_COMMIT_BRANCH"] = ref
    env.update(extra)
    return env


def shellcheck_binary() -> str | None:
    binary = shutil.which("shellcheck")
    if binary is None:
        if os.environ.get("DELIVERY_REQUIRE_TOOLS") == "1":
            pytest.fail("shellcheck is required (DELIVERY_REQUIRE_TOOLS=1) but not installed")
        pytest.skip("shellcheck not installed (apt-get install -y shellcheck)")
    return binary


def job_script_text(job: dict, *, shell: str) -> str:
    """What the runner executes: before_script and script in one shell, errexit on."""
    prologue = "set -eo pipefail\n" if shell == "bash" else "set -e\n"
    lines = flatten(job.get("before_script")) + flatten(job.get("script"))
    return f"#!/usr/bin/env {shell}\n{prologue}" + "\n".join(lines) + "\n"


def shellcheck_job(job: dict, name: str, tmp_path: Path, *, shell: str) -> None:
    binary = shellcheck_binary()
    parts = {"script": job_script_text(job, shell=shell)}
    if job.get("after_script"):
        parts["after_script"] = f"#!/usr/bin/env {shell}\n" + "\n".join(flatten(job["after_script"])) + "\n"
    for part, text in parts.items():
        path = tmp_path / f"{re.sub(r'[^A-Za-z0-9]', '_', name)}.{part}.{shell}"
        path.write_text(text, encoding="utf-8")
        result = subprocess.run(
            [binary, f"--shell={shell}", "--severity=style", "--format=gcc", str(path)],
            capture_output=True, text=True, check=False,
        )
        assert result.returncode == 0, f"shellcheck {name} ({part}):\n{result.stdout}{result.stderr}\n{text}"


def write_stub(bin_dir: Path, name: str, body: str) -> None:
    """A Python stub command that appends {"cmd", "argv", ...} JSON lines to $STUB_LOG."""
    bin_dir.mkdir(parents=True, exist_ok=True)
    path = bin_dir / name
    path.write_text(
        f"#!{sys.executable}\n"
        "import json, os, sys\n"
        "argv = sys.argv[1:]\n"
        "record = {'cmd': os.path.basename(sys.argv[0]), 'argv': argv}\n"
        f"{body}\n"
        "with open(os.environ['STUB_LOG'], 'a') as log:\n"
        "    log.write(json.dumps(record) + '\\n')\n"
        "sys.exit(record.get('rc', 0))\n",
        encoding="utf-8",
    )
    path.chmod(0o755)


def run_job(job: dict, env: dict[str, str], workdir: Path, bin_dir: Path, *, shell: str,
            interpreter: list[str] | None = None):
    """Run a job's before_script + script like the runner does, with stubs first in PATH."""
    script = workdir / "job.sh"
    script.write_text(job_script_text(job, shell=shell), encoding="utf-8")
    log = workdir / "stub.log"
    log.touch()
    run_env = {
        **env,
        "PATH": f"{bin_dir}:{os.environ.get('PATH', '/usr/bin:/bin')}",
        "HOME": str(workdir),
        "STUB_LOG": str(log),
        "CI_PROJECT_DIR": str(workdir),
    }
    result = subprocess.run(
        [*(interpreter or [shell]), str(script)], cwd=workdir, env=run_env, capture_output=True, text=True,
        stdin=subprocess.DEVNULL, timeout=120, check=False,
    )
    calls = [json.loads(line) for line in log.read_text(encoding="utf-8").splitlines() if line]
    return result, calls


# --------------------------------------------------------------------------------------------
# Fixtures
# --------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def config() -> dict:
    return yaml.safe_load(CI_FILE.read_text(encoding="utf-8"))


@pytest.fixture(scope="module")
def jobs(config) -> dict[str, dict]:
    return jobs_of(config)


SCENARIOS = {
    "mr-protected-source": (predefined("merge_request_event", "infra/new-runner", protected=True, mr=True),
                            {"test": "on_success", "preview:production": "on_success",
                             "preview:staging": "on_success"}),
    "mr-unprotected-source": (predefined("merge_request_event", "feature-x", protected=False, mr=True),
                              {"test": "on_success", "preview:unavailable": "on_success"}),
    "push-feature": (predefined("push", "feature-x", protected=False), {"test": "on_success"}),
    "push-development": (predefined("push", "development", protected=True),
                         {"test": "on_success", "up:staging": "on_success"}),
    "push-master": (predefined("push", "master", protected=True),
                    {"test": "on_success", "up:production": "manual"}),
    "schedule-master": (predefined("schedule", "master", protected=True),
                        {"test": "on_success", "drift:production": "on_success"}),
    "schedule-development": (predefined("schedule", "development", protected=True),
                             {"test": "on_success", "drift:staging": "on_success"}),
    "schedule-master-renew": (predefined("schedule", "master", protected=True, DELIVERY_SCHEDULE="renew-certificates"),
                              {"test": "on_success", "renew:production": "on_success", "renew:staging": "on_success"}),
    "web-master": (predefined("web", "master", protected=True), {"test": "on_success"}),
}


# --------------------------------------------------------------------------------------------
# Schema and structure
# --------------------------------------------------------------------------------------------


def test_gitlab_ci_validates_against_gitlab_schema(config):
    assert schema_errors(config) == []


def test_schema_check_rejects_a_broken_job(config):
    broken = copy.deepcopy(config)
    broken["test"]["scriptt"] = broken["test"].pop("script")
    assert schema_errors(broken), "the schema check must catch a misspelled job key"


def test_evaluator_understands_precedence():
    env = {"A": "1", "B": "x"}
    assert evaluate_if('$A == "1" && $B == "y" || $B == "x"', env)
    assert not evaluate_if('$A == "2" && ($B == "y" || $B == "x")', env)
    assert evaluate_if("$MISSING == null && $A", env)
    assert evaluate_if('$B =~ /^x$/', env)


def test_every_job_image_is_pinned(config, jobs):
    assert config.get("image") is None or pinned_problem(image_name(config)) is None
    problems = {name: pinned_problem(image_name(job)) for name, job in jobs.items()}
    assert {k: v for k, v in problems.items() if v} == {}


def test_every_job_runs_on_a_known_runner_tag(jobs):
    for name, job in jobs.items():
        tags = job.get("tags")
        assert tags and set(tags) <= RUNNER_TAGS, f"{name}: tags {tags}"


def test_jobs_that_touch_state_run_only_on_the_protected_production_runner(jobs):
    for name, job in jobs.items():
        text = "\n".join(flatten(job.get("before_script")) + flatten(job.get("script")))
        if re.search(r"(^|[;&|(]\s*)pulumi\s", text, re.M):
            assert job["tags"] == ["production"], name


@pytest.mark.parametrize("scenario", sorted(SCENARIOS))
def test_pipeline_contents_per_trigger(config, scenario):
    env, expected = SCENARIOS[scenario]
    assert pipeline_jobs(config, env) == expected


def test_branch_push_with_open_merge_request_creates_no_duplicate_pipeline(config):
    env = predefined("push", "feature-x", protected=False, CI_OPEN_MERGE_REQUESTS="acme/infra!7")
    assert pipeline_jobs(config, env) is None


@pytest.mark.parametrize("scenario", sorted(SCENARIOS))
def test_needs_point_to_jobs_of_the_same_pipeline(config, jobs, scenario):
    env, _ = SCENARIOS[scenario]
    present = pipeline_jobs(config, env)
    for name in present:
        for need in jobs[name].get("needs", []):
            need = need["job"] if isinstance(need, dict) else need
            assert need in present, f"{scenario}: {name} needs {need}, absent from that pipeline"


def test_stages_of_jobs_are_declared(config, jobs):
    stages = set(config["stages"]) | {".pre", ".post"}
    for name, job in jobs.items():
        assert job.get("stage", "test") in stages, name


# --------------------------------------------------------------------------------------------
# The Pulumi jobs
# --------------------------------------------------------------------------------------------


def _stack_jobs(config, jobs, command_re):
    found = {}
    for name, job in jobs.items():
        env = job_environment(config, job, {})
        for line in flatten(job.get("script")):
            if re.search(r"(^|[;&|(]\s*)" + command_re, line, re.M):
                stack = re.search(r"--stack\s+\"?([^\s\"]+)", expand(line, env))
                assert stack, f"{name}: pulumi without --stack: {line}"
                found.setdefault(stack.group(1), []).append((name, job, expand(line, env)))
    return found


def test_preview_per_stack_in_merge_requests_with_artifact_in_the_mr(config, jobs):
    previews = _stack_jobs(config, jobs, r"pulumi preview\b(?!.*--expect-no-changes)")
    assert set(previews) == set(STACKS)
    for stack, entries in previews.items():
        assert len(entries) == 1, stack
        name, job, line = entries[0]
        assert "--diff" in line and "--show-secrets" not in line
        for rule in job["rules"]:
            if rule.get("when") != "never":
                assert 'merge_request_event"' in rule["if"], f"{name}: {rule}"
        artifacts = job["artifacts"]
        assert artifacts.get("expose_as"), f"{name}: preview not exposed in the merge request"
        assert artifacts.get("when") == "always", f"{name}: keep the output when preview fails"
        paths = artifacts["paths"]
        # expose_as only works with literal paths.
        assert all("$" not in p for p in paths), paths
        assert f"preview-{stack}.txt" in paths
        assert f'> "preview-{stack}.txt"' in line


def test_up_jobs(config, jobs):
    ups = _stack_jobs(config, jobs, r"pulumi up\b(?!.*--refresh)")  # the renewal jobs refresh: below
    assert set(ups) == set(STACKS)
    expectations = {"staging": ("development", "on_success"), "production": ("master", "manual")}
    for stack, entries in ups.items():
        assert len(entries) == 1, stack
        name, job, line = entries[0]
        branch, when = expectations[stack]
        assert "--yes" in line and "--show-secrets" not in line
        assert job["tags"] == ["production"]
        assert job["environment"]["name"] == stack
        assert job["resource_group"] == f"pulumi-{stack}"
        assert job.get("interruptible") is False
        active = [r for r in job["rules"] if r.get("when") != "never"]
        assert len(active) == 1, name
        assert f'$CI_COMMIT_BRANCH == "{branch}"' in active[0]["if"]
        assert active[0].get("when", "on_success") == when
    production = ups["production"][0][1]
    assert production["environment"].get("deployment_tier") == "production"
    # A manual job that is not allowed to fail blocks the pipeline until someone deploys.
    assert production["rules"][0].get("allow_failure") in (None, False)


def test_drift_check_per_stack_only_on_schedules(config, jobs):
    drifts = _stack_jobs(config, jobs, r"pulumi preview\b.*--expect-no-changes")
    assert set(drifts) == set(STACKS)
    branch = {"production": "master", "staging": "development"}
    for stack, entries in drifts.items():
        name, job, line = entries[0]
        assert "--refresh" in line, "without --refresh a preview compares code with state, not with the hosts"
        assert job.get("allow_failure") in (None, False)
        for rule in job["rules"]:
            assert '$CI_PIPELINE_SOURCE == "schedule"' in rule["if"]
            assert f'$CI_COMMIT_BRANCH == "{branch[stack]}"' in rule["if"]


def test_tests_run_every_tier_but_e2e_with_tools_required(jobs):
    test = jobs["test"]
    # `make test` = system-deps + venv + every tier; its e2e tier needs a privileged host.
    assert flatten(test["script"]) == ["make system-deps", "make test-unit"]
    assert test["variables"]["DELIVERY_REQUIRE_TOOLS"] == "1"
    assert "DELIVERY_E2E" not in test["variables"]
    assert test["needs"] == []
    makefile = (ROOT / "Makefile").read_text(encoding="utf-8")
    for target in ("system-deps", "test-unit", "venv"):
        assert re.search(rf"^{target}:", makefile, re.M), f"Makefile has no {target} target"


def test_venv_is_built_by_make_venv(jobs):
    for name, job in jobs.items():
        text = flatten(job.get("before_script")) + flatten(job.get("script"))
        if any(re.search(r"(^|[;&|(]\s*)(pulumi\s|make test)", line, re.M) for line in text):
            assert "make venv" in text, name


# --------------------------------------------------------------------------------------------
# Secrets
# --------------------------------------------------------------------------------------------


def test_no_secret_in_the_file_and_nothing_prints_secrets(config, jobs):
    raw = CI_FILE.read_text(encoding="utf-8")
    for source in [config.get("variables") or {}] + [job.get("variables") or {} for job in jobs.values()]:
        for key in source:
            assert not SECRET_NAME_RE.search(key), f"secret-looking variable {key} defined in the file"
    for name, job in jobs.items():
        for line in flatten(job.get("before_script")) + flatten(job.get("script")) + flatten(job.get("after_script")):
            assert not re.search(r"set\s+(-[a-z]*x|-o\s+xtrace)", line), f"{name}: xtrace prints secrets"
            assert "--show-secrets" not in line, name
            assert not re.search(r"(^|[;&|]\s*)(env|printenv|export -p|set)\s*($|[;&|>])", line, re.M), name
            assert not re.search(r"(echo|printf)[^\n]*\$\{?PULUMI_CONFIG_PASSPHRASE", line), name
            assert not re.search(r"(echo|printf)[^\n]*\$\{?(AWS_SECRET_ACCESS_KEY|CI_JOB_TOKEN)\b", line), name
    assert "CI_DEBUG_TRACE" not in raw


# --------------------------------------------------------------------------------------------
# shellcheck and stubbed runs
# --------------------------------------------------------------------------------------------


def test_every_job_script_passes_shellcheck(jobs, tmp_path):
    for name, job in sorted(jobs.items()):
        shellcheck_job(job, name, tmp_path, shell="bash")


PULUMI_STUB = """
if argv[:1] == ['preview']:
    print('Previewing update (' + argv[argv.index('--stack') + 1] + '):')
    print('    + command:remote:Command bootstrap create')
    print('Resources:\\n    + 1 to create')
    record['rc'] = int(os.environ.get('STUB_PULUMI_RC', '0'))
elif argv[:1] == ['up']:
    print('Updating (' + argv[argv.index('--stack') + 1] + ')')
record['passphrase_seen'] = bool(os.environ.get('PULUMI_CONFIG_PASSPHRASE') or os.environ.get('PULUMI_CONFIG_PASSPHRASE_FILE'))
record['backend_seen'] = os.environ.get('PULUMI_BACKEND_URL')
"""

SECRET = "correct-horse-battery-staple-1234"


@pytest.fixture
def stubs(tmp_path):
    bin_dir = tmp_path / "bin"
    write_stub(bin_dir, "pulumi", PULUMI_STUB)
    write_stub(bin_dir, "make", "")
    workdir = tmp_path / "work"
    workdir.mkdir()
    return workdir, bin_dir


def _pulumi_env(config, job, **extra):
    env = predefined("merge_request_event", "infra/x", protected=True, mr=True)
    env.update(PULUMI_BACKEND_URL="s3://state-bucket", PULUMI_CONFIG_PASSPHRASE=SECRET)
    env.update(extra)
    return job_environment(config, job, env)


@pytest.mark.parametrize("stack", STACKS)
@pytest.mark.parametrize("pulumi_rc", [0, 255])
def test_preview_job_writes_artifact_keeps_status_and_hides_secrets(config, jobs, stubs, stack, pulumi_rc):
    workdir, bin_dir = stubs
    job = jobs[f"preview:{stack}"]
    result, calls = run_job(job, _pulumi_env(config, job, STUB_PULUMI_RC=str(pulumi_rc)), workdir, bin_dir, shell="bash")
    log = result.stdout + result.stderr
    assert (result.returncode == 0) == (pulumi_rc == 0), log
    artifact = workdir / f"preview-{stack}.txt"
    assert "1 to create" in artifact.read_text(), "preview output must be kept as the artifact"
    assert "1 to create" in log, "and shown in the job log"
    assert SECRET not in log
    assert [c["argv"][0] for c in calls if c["cmd"] == "make"] == ["venv"]
    pulumi_calls = [c for c in calls if c["cmd"] == "pulumi"]
    assert pulumi_calls[0]["argv"][0] == "login" and len(pulumi_calls[0]["argv"]) <= 2
    preview = pulumi_calls[1]
    assert preview["argv"][:3] == ["preview", "--stack", stack]
    assert "--diff" in preview["argv"] and preview["passphrase_seen"]
    assert all(SECRET not in arg for c in calls for arg in c["argv"]), "secret on a command line"


def test_pulumi_jobs_fail_early_without_passphrase(config, jobs, stubs):
    workdir, bin_dir = stubs
    job = jobs["up:production"]
    env = _pulumi_env(config, job)
    del env["PULUMI_CONFIG_PASSPHRASE"]
    result, calls = run_job(job, env, workdir, bin_dir, shell="bash")
    assert result.returncode != 0
    assert "protected" in result.stderr
    assert not [c for c in calls if c["cmd"] == "pulumi"]


def test_passphrase_file_variable_is_accepted(config, jobs, stubs):
    workdir, bin_dir = stubs
    job = jobs["drift:staging"]
    env = _pulumi_env(config, job)
    del env["PULUMI_CONFIG_PASSPHRASE"]
    (workdir / "pass").write_text(SECRET)
    env["PULUMI_CONFIG_PASSPHRASE_FILE"] = str(workdir / "pass")
    result, calls = run_job(job, env, workdir, bin_dir, shell="bash")
    assert result.returncode == 0, result.stderr
    preview = [c for c in calls if c["cmd"] == "pulumi"][-1]["argv"]
    assert preview[:3] == ["preview", "--stack", "staging"]
    assert "--expect-no-changes" in preview and "--refresh" in preview


@pytest.mark.parametrize("stack", STACKS)
def test_up_job_runs_pulumi_up_on_its_stack(config, jobs, stubs, stack):
    workdir, bin_dir = stubs
    job = jobs[f"up:{stack}"]
    result, calls = run_job(job, _pulumi_env(config, job), workdir, bin_dir, shell="bash")
    assert result.returncode == 0, result.stderr
    up = [c for c in calls if c["cmd"] == "pulumi"][-1]["argv"]
    assert up[:4] == ["up", "--stack", stack, "--yes"]
    assert SECRET not in result.stdout + result.stderr


def test_renewal_schedule_runs_up_with_refresh_on_production_then_staging(config, jobs, stubs):
    """The certificate renewal (docs/operations.md): `pulumi up --refresh` per stack, staging
    only after production (which issues Staging's certificate)."""
    assert jobs["renew:staging"]["needs"] == ["renew:production"]
    assert jobs["renew:production"]["needs"] == []
    for stack in STACKS:
        workdir, bin_dir = stubs
        job = jobs[f"renew:{stack}"]
        env = _pulumi_env(config, job)
        result, calls = run_job(job, env, workdir, bin_dir, shell="bash")
        assert result.returncode == 0, result.stderr
        up = [c for c in calls if c["cmd"] == "pulumi"][-1]["argv"]
        assert up[:3] == ["up", "--stack", stack] and "--refresh" in up and "--yes" in up, up
        assert SECRET not in result.stdout + result.stderr
        assert job["resource_group"] == f"pulumi-{stack}", "never at the same time as a deploy of that stack"
