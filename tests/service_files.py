"""Helpers of the services' tests: what an install-files step sends, the published schemas."""

from __future__ import annotations

import base64
import io
import json
import re
import shlex
import tarfile
from functools import lru_cache
from pathlib import Path
from typing import Any

import yaml
from jsonschema import Draft7Validator

from leak_scan import plain_strings  # noqa: F401 - the services' tests use it from here
from schema_files import PUBLISHED_SCHEMAS

from conftest import (
    DASHBOARD_USERS,
    DNS_API_TOKEN,
    GITLAB_ROOT_PASSWORD,
    PRODUCTION_SECRETS,
    Registration,
    StackRun,
    production_config,
    run_stack,
)

SCHEMAS = PUBLISHED_SCHEMAS
STATIC_SCHEMA = "traefik-v3.json"
DYNAMIC_SCHEMA = "traefik-v3-file-provider.json"

#: The secret values of the example production config.
SECRET_VALUES = (GITLAB_ROOT_PASSWORD, DNS_API_TOKEN, DASHBOARD_USERS)


@lru_cache(maxsize=None)
def validator(name: str) -> Draft7Validator:
    schema = json.loads((SCHEMAS / name).read_text())
    Draft7Validator.check_schema(schema)
    return Draft7Validator(schema)


def schema_errors(name: str, data: Any) -> list[str]:
    return [f"{'/'.join(map(str, e.absolute_path)) or '<root>'}: {e.message}" for e in validator(name).iter_errors(data)]


def production(**overrides: Any) -> StackRun:
    return run_stack(production_config(**overrides), secrets=PRODUCTION_SECRETS)


def bundle(reg: Registration) -> dict[str, tuple[int, str]]:
    """The files an install-files step sends: absolute path -> (mode, text)."""
    stdin = reg.plain.get("stdin") or ""
    out: dict[str, tuple[int, str]] = {}
    if not stdin:
        return out
    with tarfile.open(fileobj=io.BytesIO(base64.b64decode(stdin))) as tar:
        for member in tar.getmembers():
            f = tar.extractfile(member)
            assert f is not None, f"{reg.urn}: {member.name} is not a regular file"
            out["/" + member.name] = (member.mode, f.read().decode())
    return out


def yaml_file(reg: Registration, path: str) -> dict[str, Any]:
    files = bundle(reg)
    assert path in files, f"{reg.urn} does not install {path}; it installs {sorted(files)}"
    return yaml.safe_load(files[path][1])


def script_args(reg: Registration) -> list[str]:
    """The arguments after the script name of a run_script command line."""
    words = shlex.split(reg.plain["create"])
    if words[0] == "sudo":
        words = words[2:]
    assert words[:2] == ["bash", "-c"], reg.urn
    return words[4:]


def container_labels(reg: Registration) -> dict[str, str]:
    return {item["label"]: item["value"] for item in reg.plain.get("labels") or []}


def container_volumes(reg: Registration) -> dict[str, dict[str, Any]]:
    """container path -> volume entry."""
    return {v["containerPath"]: v for v in reg.plain.get("volumes") or []}


#: A Traefik v3 rule: matchers with backtick arguments joined by && / || and parentheses.
V3_MATCHER = re.compile(r"(Host|HostSNI|PathPrefix|Path|Method|Header|ClientIP|Query)\(`[^`,{}]+`\)")
#: v3 HostRegexp: one Go regular expression (v2's `{name:regexp}` placeholders are gone).
V3_HOST_REGEXP = re.compile(r"HostRegexp\(`(?P<re>[^`]+)`\)")


def _v3_regexp(match: re.Match) -> str:
    expression = match.group("re")
    if re.search(r"\{\w+:", expression):
        return "X"  # a v2 placeholder
    try:
        re.compile(expression)
    except re.error:
        return "X"
    return "M"


def is_v3_rule(rule: str) -> bool:
    rest = V3_HOST_REGEXP.sub(_v3_regexp, rule)
    rest = V3_MATCHER.sub("M", rest)
    rest = rest.replace("&&", " ").replace("||", " ").replace("(", " ").replace(")", " ").replace("!", " ")
    return set(rest.split()) <= {"M"} and "M" in rest.split()


def all_rules(dynamic: dict[str, Any]) -> dict[str, str]:
    rules = {}
    for kind in ("http", "tcp"):
        for name, router in (dynamic.get(kind, {}).get("routers") or {}).items():
            rules[f"{kind}.{name}"] = router["rule"]
    return rules
