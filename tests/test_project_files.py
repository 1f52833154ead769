"""The project files users edit: Pulumi.yaml declares every key the program reads, the stack
files parse into valid config, and the README documents every key."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import yaml

from conftest import HOST_KEYS, PRODUCTION_SECRETS, PRODUCTION_STACK, ROOT, production_config, production_outputs, run_stack, staging_config

from components.config import reader as reader_module

SIMPLE_TYPES = {"string", "integer", "boolean", "array"}


def project() -> dict:
    return yaml.safe_load((ROOT / "Pulumi.yaml").read_text())


def keys_read_by_the_program(monkeypatch) -> set[str]:
    seen: set[str] = set()
    original = reader_module.ConfigReader.raw

    def recording(self, key):
        seen.add(key)
        return original(self, key)

    monkeypatch.setattr(reader_module.ConfigReader, "raw", recording)
    run_stack(production_config(), secrets=PRODUCTION_SECRETS)
    run_stack(staging_config(), secrets=PRODUCTION_SECRETS, stack="staging", stack_outputs={PRODUCTION_STACK: production_outputs()})
    return seen


def structured_keys() -> set[str]:
    """Keys listed in Pulumi.yaml's comment block of structured (object/list) keys."""
    text = (ROOT / "Pulumi.yaml").read_text()
    block = text.split("# Structured keys", 1)[1].split("\nconfig:", 1)[0]
    return set(re.findall(r"^#   ([a-zA-Z][a-zA-Z0-9]*)\s", block, flags=re.M))


def test_pulumi_yaml_names_a_python_project_with_a_virtualenv():
    p = project()
    assert p["name"] == "delivery"
    assert p["runtime"]["name"] == "python"
    assert p["runtime"]["options"]["virtualenv"] == ".venv"


def test_declared_config_uses_types_pulumi_accepts():
    for key, decl in project()["config"].items():
        assert decl["type"] in SIMPLE_TYPES, key
        assert decl.get("description"), f"{key} has no description"
        if decl["type"] == "array":
            assert decl["items"]["type"] in SIMPLE_TYPES - {"array"}, key
        assert set(decl) <= {"type", "items", "description", "secret", "default"}, key


def test_every_key_the_program_reads_is_declared(monkeypatch):
    declared = set(project()["config"]) | structured_keys()
    missing = keys_read_by_the_program(monkeypatch) - declared
    assert not missing, f"read by the program but not declared in Pulumi.yaml: {sorted(missing)}"


def test_no_key_is_declared_that_the_program_does_not_read(monkeypatch):
    declared = set(project()["config"]) | structured_keys()
    unused = declared - keys_read_by_the_program(monkeypatch)
    assert not unused, f"declared in Pulumi.yaml but never read: {sorted(unused)}"


def test_secret_keys_are_declared_secret():
    config = project()["config"]
    for key in PRODUCTION_SECRETS:
        if key in config:
            assert config[key].get("secret") is True, key


def test_every_key_is_documented(monkeypatch):
    docs = (ROOT / "README.md").read_text() + "".join(p.read_text() for p in (ROOT / "docs").glob("*.md"))
    undocumented = [k for k in keys_read_by_the_program(monkeypatch) if f"`{k}`" not in docs]
    assert not undocumented, f"keys without documentation: {sorted(undocumented)}"


@pytest.mark.parametrize("stack", ["production", "staging"])
def test_stack_file_holds_only_plain_keys_of_this_project(stack):
    settings = yaml.safe_load((ROOT / f"Pulumi.{stack}.yaml").read_text())
    secret = {k for k, d in project()["config"].items() if d.get("secret")}
    for key, value in settings["config"].items():
        namespace, name = key.split(":", 1)
        assert namespace == "delivery", key
        assert name not in secret, f"{key} is a secret: set it with --secret, do not commit it"
        assert not (isinstance(value, dict) and "secure" in value), key


@pytest.mark.parametrize("stack", ["production", "staging"])
def test_stack_file_evaluates_with_its_secrets_set(stack):
    settings = yaml.safe_load((ROOT / f"Pulumi.{stack}.yaml").read_text())["config"]
    config = {k.split(":", 1)[1]: v for k, v in settings.items()}
    secrets = {k: v for k, v in (production_config() if stack == "production" else staging_config()).items() if k in PRODUCTION_SECRETS}
    config.update(secrets)
    # Host keys are the user's to pin (`pulumi config set --path 'hosts[0].hostKey' ...`): the
    # example servers' keys cannot be known, so the stack files leave them out.
    assert all("hostKey" not in h for h in config["hosts"]), "the stack files must not carry made-up host keys"
    for h in config["hosts"]:
        h["hostKey"] = HOST_KEYS[h["name"]]
    kwargs = {"stack_outputs": {PRODUCTION_STACK: production_outputs()}} if stack == "staging" else {}
    run = run_stack(config, secrets=tuple(secrets), stack=stack, **kwargs)
    assert run.of_type("pulumi:providers:docker")


def test_every_stack_output_is_documented_in_the_readme():
    readme = (ROOT / "README.md").read_text()
    contract = readme.split("## Stack outputs", 1)[1].split("\n## ", 1)[0]
    production = run_stack(production_config(), secrets=PRODUCTION_SECRETS)
    staging = run_stack(staging_config(), secrets=PRODUCTION_SECRETS, stack="staging", stack_outputs={PRODUCTION_STACK: production_outputs()})
    undocumented = sorted(k for k in set(production.outputs) | set(staging.outputs) if f"| `{k}` |" not in contract)
    assert not undocumented, f"outputs missing from the README's contract: {undocumented}"


def test_secret_outputs_are_documented_as_secret():
    readme = (ROOT / "README.md").read_text()
    contract = readme.split("## Stack outputs", 1)[1].split("\n## ", 1)[0]
    production = run_stack(production_config(), secrets=PRODUCTION_SECRETS)
    for key in production.secret_outputs:
        rows = [l for l in contract.splitlines() if l.startswith(f"| `{key}` |")]
        assert rows and all("**yes**" in r for r in rows), key


# -- a clone of the repository stands on its own -------------------------------------------------
#: What reads a folder beside the checkout: `../shared`, `<repo>.parent / "shared"` and the like.
OUTSIDE_THE_REPOSITORY = re.compile(r"\.\./shared|parents?(\[\d\])?\s*/\s*['\"]shared['\"]|\.parent\.parent\s*/|/work/")


def files_that_run() -> list[Path]:
    """The program, its tests and scripts, the Makefile and the CI entry point."""
    patterns = ("components/**/*.py", "components/**/*.sh", "tests/**/*.py", "tests/**/*.sh", "scripts/*", "templates/*.py")
    found = {p for pattern in patterns for p in ROOT.glob(pattern) if p.is_file() and ".venv" not in p.parts}
    found -= {Path(__file__).resolve()}  # this file spells the patterns out
    return sorted(found | {ROOT / "Makefile", ROOT / ".ci" / "run", ROOT / "__main__.py"})


def test_nothing_reads_a_folder_beside_the_checkout():
    offenders = [
        f"{p.relative_to(ROOT)}:{n}: {line.strip()}"
        for p in files_that_run()
        for n, line in enumerate(p.read_text(errors="replace").splitlines(), 1)
        if OUTSIDE_THE_REPOSITORY.search(line)
    ]
    assert not offenders, "files read outside the repository (copy what they need into it):\n" + "\n".join(offenders)


def test_provider_schemas_are_the_copies_their_readme_describes():
    import hashlib

    from schema_files import PROVIDER_SCHEMAS

    readme = (PROVIDER_SCHEMAS / "README.md").read_text()
    rows = re.findall(r"^\| `([a-z]+-[0-9.]+\.schema\.json)` \|.*\| `([0-9a-f]{64})` \|$", readme, flags=re.M)
    assert len(rows) == 4, rows
    for name, digest in rows:
        assert hashlib.sha256((PROVIDER_SCHEMAS / name).read_bytes()).hexdigest() == digest, name


def test_every_schema_the_tests_use_is_listed_with_its_source():
    from schema_files import SCHEMAS

    index = (SCHEMAS / "README.md").read_text()
    kept = sorted(str(p.relative_to(SCHEMAS)) for p in SCHEMAS.glob("*/*.json"))
    assert kept, "no schema kept in tests/schemas"
    unlisted = [k for k in kept if f"| `{k}` |" not in index]
    assert not unlisted, f"schemas without a source in tests/schemas/README.md: {unlisted}"
