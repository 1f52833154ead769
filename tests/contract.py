"""Contract between the program and the providers it drives.

Every resource the program registers and every invoke it makes is checked against the
providers' own package schemas, kept in ``tests/schemas/providers/`` (override the folder with
the ``DELIVERY_PROVIDER_SCHEMAS`` environment variable):

* the resource type / function token exists;
* every required input is present;
* no input key is unknown (nested objects included, through ``$ref``);
* every value has the schema's type (string, integer, number, boolean, array, map,
  object types, enums, ``pulumi.json#/Any``, ``#/Asset``, ``#/Archive``).

The saved schemas are slightly older than the SDKs in use; the differences listed in that
folder's README are applied as an explicit allow-list (``SDK_VERSION_DIFFERENCES``), nothing
else is relaxed.

How values look in ``MockResourceArgs.inputs`` / ``MockCallArgs.args`` (pulumi 3.272, checked
by experiment), and how the checker treats them:

* numbers arrive as ``float`` whatever the Python type was (protobuf ``Struct`` has only
  doubles): ``ContainerPortArgs(internal=443)`` arrives as ``443.0``. An ``integer`` therefore
  accepts an ``int`` or an integral ``float``, never a ``bool``;
* secrets arrive wrapped as ``{"4dabf18193072939515e22adb298388d":
  "1b47061264138c4ac30d75fd1eb44270", "value": <value>}``; they are unwrapped before checking;
* unknown values (an output the mock did not return): with ``set_mocks(..., preview=True)``
  they arrive as ``pulumi.output.Unknown`` instances and are accepted anywhere; with
  ``preview=False`` (the default) they are *dropped* from objects (and become ``None`` in
  lists and inside secrets). A required input fed from an unknown output is then
  indistinguishable from a missing one; make the inner mocks return realistic outputs
  (e.g. ``imageId`` for a RemoteImage) or run under ``preview=True``;
* assets and archives arrive as the ``pulumi.Asset`` / ``pulumi.Archive`` objects
  themselves (``StringAsset``, ``FileAsset``, ``FileArchive``...);
* resource references arrive as the ``pulumi.Resource`` object;
* explicit provider resources (``pulumi:providers:<pkg>``) get their non-string inputs
  JSON-encoded by the generated ``Provider`` classes (``"true"``, ``"3"``, ``'[{"address":
  ...}]'``); they are ``json.loads``-ed before type checking.
"""

from __future__ import annotations

import copy
import difflib
import functools
import json
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Optional

import pulumi
from pulumi.output import Unknown
from pulumi.runtime import rpc

SCHEMA_DIR_ENV = "DELIVERY_PROVIDER_SCHEMAS"

# Package name -> saved schema file (see tests/schemas/providers/README.md, "Files").
SCHEMA_FILES: dict[str, str] = {
    "docker": "docker-5.1.0.schema.json",
    "command": "command-1.2.1.schema.json",
    "tls": "tls-5.5.1.schema.json",
    "gitlab": "gitlab-10.1.1.schema.json",
}

# Differences between the saved schemas and the SDK versions in use, exactly as listed in
# tests/schemas/providers/README.md, section "Differences between the saved schemas and
# the SDK versions in use" (docker 5.1.0 -> SDK 5.2.0, tls 5.5.1 -> SDK 5.6.2,
# gitlab 10.1.1 -> SDK 10.4.0; command 1.2.1 is exact). Nothing else is allow-listed.
# Property types come from the SDK signatures (pulumi_docker/_inputs.py, pulumi_tls,
# pulumi_gitlab/project.py).
#   kind "resource": patches schema["resources"][token] (inputProperties / requiredInputs)
#   kind "type":     patches schema["types"][token] (properties / required)
#   add:             inputs the SDK has and the schema lacks
#   not_required:    inputs the schema requires and the SDK no longer does
#   exactly_one_of:  groups of which exactly one input must be set (README: "exactly one of
#                    privateKeyPem/privateKeyPemWo must be set")
_STR = {"type": "string"}
_INT = {"type": "integer"}
SDK_VERSION_DIFFERENCES: list[dict[str, Any]] = [
    # docker 5.1.0 vs SDK 5.2.0
    {
        "package": "docker",
        "kind": "resource",
        "token": "docker:index/container:Container",
        "add": {"deviceCgroupRules": {"type": "array", "items": _STR}},
    },
    {
        "package": "docker",
        "kind": "type",
        "token": "docker:index/ContainerUpload:ContainerUpload",
        "add": {"owner": _STR, "group": _STR},
    },
    # tls 5.5.1 vs SDK 5.6.2
    {
        "package": "tls",
        "kind": "resource",
        "token": "tls:index/selfSignedCert:SelfSignedCert",
        "add": {"privateKeyPemWo": {**_STR, "secret": True}, "privateKeyPemWoVersion": _INT},
        "not_required": ["privateKeyPem"],
        "exactly_one_of": [["privateKeyPem", "privateKeyPemWo"]],
    },
    {
        "package": "tls",
        "kind": "resource",
        "token": "tls:index/certRequest:CertRequest",
        "add": {"privateKeyPemWo": {**_STR, "secret": True}, "privateKeyPemWoVersion": _INT},
        "not_required": ["privateKeyPem"],
        "exactly_one_of": [["privateKeyPem", "privateKeyPemWo"]],
    },
    {
        "package": "tls",
        "kind": "resource",
        "token": "tls:index/locallySignedCert:LocallySignedCert",
        "add": {
            "caPrivateKeyPemWo": {**_STR, "secret": True},
            "caPrivateKeyPemWoVersion": _INT,
        },
        "not_required": ["caPrivateKeyPem"],
    },
    # gitlab 10.1.1 vs SDK 10.4.0
    {
        "package": "gitlab",
        "kind": "resource",
        "token": "gitlab:index/project:Project",
        "add": {
            "automaticRebaseEnabled": {"type": "boolean"},
            "mrDefaultTitleTemplate": _STR,
            "reviewerAssignmentStrategy": _STR,
        },
    },
]

# Types the engine itself implements; never checked.
UNCHECKED_TYPES = frozenset({"pulumi:pulumi:StackReference", "pulumi:pulumi:Stack"})


def default_schema_dir() -> Path:
    """``$DELIVERY_PROVIDER_SCHEMAS``, else the copies in ``tests/schemas/providers``."""
    override = os.environ.get(SCHEMA_DIR_ENV)
    if override:
        return Path(override)
    from schema_files import PROVIDER_SCHEMAS

    return PROVIDER_SCHEMAS


@functools.lru_cache(maxsize=None)
def _load_schema(path: str) -> dict[str, Any]:
    """Parse one schema file and apply the allow-list. Cached for the whole process."""
    with open(path, encoding="utf-8") as f:
        schema = json.load(f)
    _apply_sdk_differences(schema, path)
    return schema


def _apply_sdk_differences(schema: dict[str, Any], path: str) -> None:
    pkg = schema.get("name")
    for diff in SDK_VERSION_DIFFERENCES:
        if diff["package"] != pkg:
            continue
        section = "resources" if diff["kind"] == "resource" else "types"
        props_key = "inputProperties" if diff["kind"] == "resource" else "properties"
        req_key = "requiredInputs" if diff["kind"] == "resource" else "required"
        entry = schema.get(section, {}).get(diff["token"])
        if entry is None:
            raise LookupError(f"allow-list names {diff['token']}, which {path} lacks")
        props = entry.setdefault(props_key, {})
        for key, prop in diff.get("add", {}).items():
            props.setdefault(key, copy.deepcopy(prop))
        not_required = set(diff.get("not_required", ()))
        entry[req_key] = [k for k in entry.get(req_key, []) if k not in not_required]
        if diff.get("exactly_one_of"):
            entry["x-exactlyOneOf"] = [list(g) for g in diff["exactly_one_of"]]


def _package_of(token: str) -> Optional[str]:
    """``docker:index/container:Container`` -> ``docker``; ``pulumi:providers:tls`` -> ``tls``."""
    parts = token.split(":")
    if len(parts) < 3:
        return None
    if parts[0] == "pulumi" and parts[1] == "providers":
        return parts[2].split("/")[0]
    return parts[0]


def _type_name(value: Any) -> str:
    return type(value).__name__


def _is_unknown(value: Any) -> bool:
    return isinstance(value, Unknown) or value == rpc.UNKNOWN or isinstance(value, pulumi.Output)


def _unwrap(value: Any) -> Any:
    """Strip any number of secret wrappers."""
    while rpc.is_rpc_secret(value):
        value = rpc.unwrap_rpc_secret(value)
    return value


def _suggest(key: str, known: Any) -> str:
    match = difflib.get_close_matches(key, list(known), n=1, cutoff=0.6)
    if not match:
        lowered = {k.lower(): k for k in known}
        if key.lower() in lowered:
            match = [lowered[key.lower()]]
    return f' (did you mean "{match[0]}"?)' if match else ""


def _join(path: str, key: str) -> str:
    return f"{path}.{key}" if path else key


class ProviderContract:
    """Checks resource registrations and invokes against the saved provider schemas.

    Schemas are read lazily, one package at a time, and cached for the process.
    """

    def __init__(self, schema_dir: Optional[os.PathLike[str] | str] = None) -> None:
        self.schema_dir = Path(schema_dir) if schema_dir is not None else default_schema_dir()

    @classmethod
    @functools.lru_cache(maxsize=1)
    def default(cls) -> "ProviderContract":
        return cls()

    def schema(self, package: str) -> Optional[dict[str, Any]]:
        """The schema of ``package`` (with the allow-list applied), or None if not covered."""
        filename = SCHEMA_FILES.get(package)
        if filename is None:
            return None
        path = self.schema_dir / filename
        if not path.is_file():
            raise FileNotFoundError(
                f"provider schema {path} not found; set {SCHEMA_DIR_ENV} to the folder "
                f"holding {', '.join(SCHEMA_FILES.values())}"
            )
        return _load_schema(str(path))

    # ---- resources -------------------------------------------------------------------

    def check_resource(
        self, typ: str, name: str, inputs: Mapping[str, Any], custom: Optional[bool]
    ) -> list[str]:
        """Violations of ``inputs`` against the schema of resource type ``typ``.

        ``custom=False`` (component resources) and engine types are not checked.
        ``custom=None`` is what mocks pass for a read (``Resource.get``): only the type is
        checked, because the values are state, not inputs.
        """
        if custom is False or typ in UNCHECKED_TYPES:
            return []
        where = f'{typ} "{name}"'
        package = _package_of(typ)
        schema = self.schema(package) if package else None
        if schema is None:
            return [f"{where}: no provider schema for package {package!r} (known: "
                    f"{', '.join(sorted(SCHEMA_FILES))})"]
        is_provider = typ.startswith("pulumi:providers:")
        if is_provider:
            if typ != f"pulumi:providers:{package}":
                return [f"{where}: unknown provider type"]
            entry = schema["provider"]
        else:
            entry = schema.get("resources", {}).get(typ)
            if entry is None:
                return [f"{where}: unknown resource type{_suggest(typ, schema.get('resources', {}))}"]
        if custom is None:
            return []
        return _Checker(schema, where, "input", json_encoded=is_provider).check_object(
            dict(inputs or {}),
            entry.get("inputProperties", {}),
            entry.get("requiredInputs", []),
            entry.get("x-exactlyOneOf", []),
            path="",
        )

    # ---- invokes ---------------------------------------------------------------------

    def check_invoke(self, token: str, args: Mapping[str, Any]) -> list[str]:
        """Violations of invoke ``args`` against ``schema["functions"][token]["inputs"]``."""
        where = f"invoke {token}"
        package = _package_of(token)
        if package == "pulumi" or token.startswith("pulumi:"):
            # engine functions and provider methods (pulumi:providers:<pkg>/terraformConfig)
            return []
        schema = self.schema(package) if package else None
        if schema is None:
            return [f"{where}: no provider schema for package {package!r}"]
        fn = schema.get("functions", {}).get(token)
        if fn is None:
            return [f"{where}: unknown function{_suggest(token, schema.get('functions', {}))}"]
        spec = fn.get("inputs") or {}
        return _Checker(schema, where, "argument").check_object(
            dict(args or {}), spec.get("properties", {}), spec.get("required", []), [], path=""
        )


class _Checker:
    """Walks one value tree against schema property specs, collecting violations."""

    def __init__(self, schema: dict[str, Any], where: str, noun: str, json_encoded: bool = False):
        self.types = schema.get("types", {})
        self.where = where
        self.noun = noun
        self.json_encoded = json_encoded  # top-level values of a provider resource
        self.violations: list[str] = []

    def report(self, message: str) -> None:
        self.violations.append(f"{self.where}: {message}")

    def check_object(
        self,
        value: dict[str, Any],
        props: Mapping[str, Any],
        required: list[str],
        exactly_one_of: list[list[str]],
        path: str,
        type_token: Optional[str] = None,
    ) -> list[str]:
        present = {k for k, v in value.items() if v is not None}
        for key in required:
            if key not in present:
                self.report(f'missing required {self.noun} "{_join(path, key)}"')
        for group in exactly_one_of:
            set_keys = [k for k in group if k in present]
            if len(set_keys) != 1:
                names = " or ".join(f'"{_join(path, k)}"' for k in group)
                self.report(f"exactly one of {names} must be set, got {len(set_keys)}")
        for key, item in value.items():
            spec = props.get(key)
            if spec is None:
                in_type = f" (not in {type_token})" if type_token else ""
                self.report(
                    f'unknown {self.noun} "{_join(path, key)}"{in_type}{_suggest(key, props)}'
                )
                continue
            item = _unwrap(item)
            if self.json_encoded and not path and isinstance(item, str) and not self.is_string(spec):
                try:
                    item = json.loads(item)
                except ValueError:
                    self.report(f'{_join(path, key)}: expected JSON-encoded {_describe(spec)}, got {item!r}')
                    continue
            self.check_value(item, spec, _join(path, key))
        return self.violations

    def is_string(self, spec: Mapping[str, Any]) -> bool:
        """True for a string property or a reference to a string enum (sent as-is, not JSON)."""
        ref = spec.get("$ref", "")
        if ref.startswith("#/types/"):
            spec = self.types.get(ref[len("#/types/"):], {})
        return spec.get("type") == "string"

    def check_value(self, value: Any, spec: Mapping[str, Any], path: str) -> None:
        value = _unwrap(value)
        if value is None or _is_unknown(value):
            return  # absent, or unknown until apply
        ref = spec.get("$ref")
        if ref is not None:
            self.check_ref(value, ref, path)
            return
        kind = spec.get("type")
        if kind == "string":
            # A resource reference degrades to the resource's ID for a provider that expects a string.
            if not isinstance(value, (str, pulumi.Resource)):
                self.mismatch(path, "string", value)
        elif kind == "integer":
            if isinstance(value, bool) or not (
                isinstance(value, int) or (isinstance(value, float) and value.is_integer())
            ):
                self.mismatch(path, "integer", value)
        elif kind == "number":
            if isinstance(value, bool) or not isinstance(value, (int, float)):
                self.mismatch(path, "number", value)
        elif kind == "boolean":
            if not isinstance(value, bool):
                self.mismatch(path, "boolean", value)
        elif kind == "array":
            if not isinstance(value, (list, tuple)):
                self.mismatch(path, "array", value)
                return
            items = spec.get("items")
            if items:
                for i, item in enumerate(value):
                    self.check_value(item, items, f"{path}[{i}]")
        elif kind == "object":
            if not isinstance(value, Mapping):
                self.mismatch(path, "object", value)
                return
            values = spec.get("additionalProperties")
            if values:
                for k, item in value.items():
                    self.check_value(item, values, f"{path}[{k!r}]")
        # any other/missing "type" is not constrained by the schema

    def check_ref(self, value: Any, ref: str, path: str) -> None:
        if ref == "pulumi.json#/Any":
            return
        if ref == "pulumi.json#/Asset":  # an AssetOrArchive in Pulumi schema terms
            if not isinstance(value, (pulumi.Asset, pulumi.Archive)):
                self.mismatch(path, "asset or archive", value)
            return
        if ref == "pulumi.json#/Archive":
            if not isinstance(value, pulumi.Archive):
                self.mismatch(path, "archive", value)
            return
        if ref == "#/provider":  # provider methods' __self__
            return
        if not ref.startswith("#/types/"):
            return  # another package's type: not covered by these schemas
        token = ref[len("#/types/"):]
        typ = self.types.get(token)
        if typ is None:
            self.report(f"{path}: schema refers to missing type {token}")
            return
        if "enum" in typ:
            allowed = [e.get("value") for e in typ["enum"]]
            if value not in allowed:
                self.report(f"{path}: {value!r} is not one of {allowed} ({token})")
            return
        if not isinstance(value, Mapping):
            self.mismatch(path, f"object {token}", value)
            return
        self.check_object(
            dict(value), typ.get("properties", {}), typ.get("required", []),
            typ.get("x-exactlyOneOf", []), path, type_token=token,
        )

    def mismatch(self, path: str, expected: str, value: Any) -> None:
        self.report(f"{path}: expected {expected}, got {_type_name(value)} {_short(value)}")


def _describe(spec: Mapping[str, Any]) -> str:
    if "$ref" in spec:
        return spec["$ref"].rsplit("/", 1)[-1]
    return str(spec.get("type", "value"))


def _short(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


class ContractMocks(pulumi.runtime.Mocks):
    """Mocks that check every registration and invoke against the provider schemas.

    Wraps another ``Mocks`` (``inner``) and delegates to it after checking; without one it
    echoes inputs back as state (id ``<name>_id``) and answers invokes with ``{}``.
    Violations accumulate in ``self.violations``; by default the first one also raises an
    ``AssertionError`` naming the resource and the key, which fails the running
    ``@pulumi.runtime.test``.

        pulumi.runtime.set_mocks(ContractMocks(MyMocks()), preview=False)
    """

    def __init__(
        self,
        inner: Optional[pulumi.runtime.Mocks] = None,
        contract: Optional[ProviderContract] = None,
        raise_on_violation: bool = True,
    ) -> None:
        self.inner = inner
        self.contract = contract or ProviderContract.default()
        self.raise_on_violation = raise_on_violation
        self.violations: list[str] = []

    def _record(self, found: list[str]) -> None:
        if not found:
            return
        self.violations.extend(found)
        if self.raise_on_violation:
            hint = ""
            if any("missing required" in v for v in found) and not pulumi.runtime.is_dry_run():
                hint = ("\n(under mocks with preview=False an input fed from an output the mocks "
                        "did not return is dropped, so it looks missing)")
            raise AssertionError("provider contract violated:\n  " + "\n  ".join(found) + hint)

    def new_resource(self, args: pulumi.runtime.MockResourceArgs) -> tuple[Optional[str], dict]:
        self._record(self.contract.check_resource(args.typ, args.name, args.inputs, args.custom))
        if self.inner is not None:
            return self.inner.new_resource(args)
        return f"{args.name}_id", dict(args.inputs)

    def call(self, args: pulumi.runtime.MockCallArgs):
        self._record(self.contract.check_invoke(args.token, args.args))
        if self.inner is not None:
            return self.inner.call(args)
        return {}

    def register_transform(self, transform) -> None:
        if self.inner is not None:
            self.inner.register_transform(transform)

    def register_invoke_transform(self, transform) -> None:
        if self.inner is not None:
            self.inner.register_invoke_transform(transform)
