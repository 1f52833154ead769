"""Typed, error-collecting access to Pulumi stack config.

`ConfigReader` never raises on a bad value: it records a message naming the
key as `<project>:<key>` (with a path into structured values, e.g.
`delivery:hosts[1].address`) and returns None, so that every problem of a
stack's config is reported at once by `ConfigReader.raise_if_errors()`.

Secret values never appear in a message: for keys declared secret only the
key and what was expected are named.

Every pattern is applied with `fullmatch`: a value must match as a whole, so that a
trailing line break (which `match` with `$` lets through) is refused like any other
stray character.
"""

from __future__ import annotations

import ipaddress
import json
import re
from typing import Any, Callable, Iterable, Optional, TypeVar

import pulumi
from pulumi.runtime import config as runtime_config

T = TypeVar("T")

DNS_LABEL = re.compile(r"^[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?$")
DOMAIN = re.compile(r"^(?=.{1,253}$)([a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?\.)+[a-z][a-z0-9-]{0,61}[a-z0-9]$")
EMAIL = re.compile(r"^[^@\s]+@[^@\s]+\.[^@\s]+$")
INTEGER = re.compile(r"-?[0-9]+")


class ConfigReader:
    """Reads the config of one Pulumi project namespace and collects errors."""

    def __init__(self, project: str) -> None:
        self.project = project
        self.errors: list[str] = []
        self.warnings: list[str] = []
        self.used_keys: set[str] = set()

    # -- plumbing ---------------------------------------------------------
    def full(self, key: str) -> str:
        return f"{self.project}:{key}"

    def error(self, path: str, message: str) -> None:
        self.errors.append(f"{self.full(path)}: {message}")

    def warn(self, path: str, message: str) -> None:
        """A setting that is valid but weakens the platform on purpose: said on every run."""
        self.warnings.append(f"{self.full(path)}: {message}")

    def raw(self, key: str) -> Optional[str]:
        """The raw string value of a key, without the SDK's secret warning."""
        self.used_keys.add(key)
        return runtime_config.get_config(self.full(key))

    def is_secret(self, key: str) -> bool:
        return runtime_config.is_config_secret(self.full(key))

    def plain(self, key: str) -> Optional[str]:
        """The value of a key the program uses in plain text (names, files, labels). A value
        Pulumi holds as a secret (`config set --secret`, or a secret anywhere under the key with
        `--path`) must stay secret wherever it goes, so such a key refuses it."""
        value = self.raw(key)
        if value not in (None, "") and self.is_secret(key):
            self.error(
                key,
                "is set as a secret, but this key is used in plain text (resource names, files, labels), where the "
                f"secret would be stored unencrypted: set it without --secret (`pulumi config set {self.full(key)} ...`) "
                "(its value is not shown)",
            )
            return None
        return value

    def raise_if_errors(self) -> None:
        if self.errors:
            lines = "\n".join(f"  - {e}" for e in self.errors)
            raise pulumi.RunError(
                f"the stack configuration has {len(self.errors)} problem(s):\n{lines}\n"
                "Set values with `pulumi config set [--secret] <key> <value>` "
                "(structured values with `--path`); see README.md, 'Configuration'."
            )

    # -- scalars ----------------------------------------------------------
    def string(
        self,
        key: str,
        *,
        required: bool = False,
        default: Optional[str] = None,
        pattern: Optional[re.Pattern[str]] = None,
        expected: str = "a string",
        choices: Optional[Iterable[str]] = None,
    ) -> Optional[str]:
        value = self.plain(key)
        if value is None or value == "":
            if required:
                self.error(key, f"missing; expected {expected}")
            return default
        return check_string(self, key, value, pattern=pattern, expected=expected, choices=choices)

    def integer(
        self,
        key: str,
        *,
        default: Optional[int] = None,
        required: bool = False,
        minimum: Optional[int] = None,
        maximum: Optional[int] = None,
    ) -> Optional[int]:
        value = self.plain(key)
        if value is None or value == "":
            if required:
                self.error(key, "missing; expected an integer")
            return default
        parsed: Any = int(value) if INTEGER.fullmatch(value) else value
        return check_int(self, key, parsed, minimum=minimum, maximum=maximum)

    def boolean(self, key: str, *, default: bool) -> bool:
        value = self.plain(key)
        if value is None or value == "":
            return default
        if value.lower() in ("true", "false"):
            return value.lower() == "true"
        self.error(key, f"expected true or false, got {value!r}")
        return default

    def structured(self, key: str, *, required: bool = False, expected: str, secret_ok: bool = False) -> Any:
        """A JSON value (object or array) set with `pulumi config set --path`. A secret value is
        refused unless `secret_ok` (the caller then keeps every value it reads secret)."""
        value = self.raw(key) if secret_ok else self.plain(key)
        if value is None or value == "":
            if required:
                self.error(key, f"missing; expected {expected}")
            return None
        try:
            return json.loads(value)
        except ValueError:
            self.error(key, f"expected {expected} (set it with `pulumi config set --path`), got a plain string")
            return None

    # -- secrets ----------------------------------------------------------
    def secret_string(self, key: str, *, required: bool = False) -> Optional[pulumi.Output[str]]:
        value = self.raw(key)
        if value is None or value == "":
            if required:
                self.error(key, "missing; set it with `pulumi config set --secret`")
            return None
        if not self.is_secret(key):
            self.error(key, "is a secret: it must be set with `pulumi config set --secret` (its value is not shown)")
            return None
        return pulumi.Output.secret(value)

    def secret_map(self, key: str, *, required: bool = False) -> Optional[dict[str, pulumi.Output[str]]]:
        """A secret object of string values: each value becomes a secret Output."""
        value = self.raw(key)
        if value is None or value == "":
            if required:
                self.error(key, "missing; set it with `pulumi config set --secret --path <key>.<NAME> <value>`")
            return None
        if not self.is_secret(key):
            self.error(key, "is a secret: it must be set with `pulumi config set --secret --path` (its value is not shown)")
            return None
        try:
            parsed = json.loads(value)
        except ValueError:
            parsed = None
        if not isinstance(parsed, dict) or not all(
            isinstance(k, str) and isinstance(v, str) for k, v in parsed.items()
        ):
            self.error(key, "expected an object of string values, e.g. `--path <key>.NAME value` (its value is not shown)")
            return None
        return {k: pulumi.Output.secret(v) for k, v in parsed.items()}


# -- checks on values inside structured config ------------------------------
def check_string(
    reader: ConfigReader,
    path: str,
    value: Any,
    *,
    pattern: Optional[re.Pattern[str]] = None,
    expected: str = "a string",
    choices: Optional[Iterable[str]] = None,
    shown: bool = True,
) -> Optional[str]:
    """`shown=False` for values read from secret config: the error says what was expected only."""
    got = f"got {value!r}" if shown else "(the value is not shown)"
    if not isinstance(value, str):
        reader.error(path, f"expected {expected}, got {type_name(value)}")
        return None
    if choices is not None:
        options = list(choices)
        if value not in options:
            reader.error(path, f"expected one of {', '.join(options)}, {got}")
            return None
    if pattern is not None and not pattern.fullmatch(value):
        reader.error(path, f"expected {expected}, {got}")
        return None
    return value


def check_int(
    reader: ConfigReader,
    path: str,
    value: Any,
    *,
    minimum: Optional[int] = None,
    maximum: Optional[int] = None,
) -> Optional[int]:
    if isinstance(value, bool) or not isinstance(value, int):
        reader.error(path, f"expected an integer, got {type_name(value)}")
        return None
    if minimum is not None and value < minimum:
        reader.error(path, f"expected an integer >= {minimum}, got {value}")
        return None
    if maximum is not None and value > maximum:
        reader.error(path, f"expected an integer <= {maximum}, got {value}")
        return None
    return value


def check_bool(reader: ConfigReader, path: str, value: Any) -> Optional[bool]:
    if not isinstance(value, bool):
        reader.error(path, f"expected true or false, got {type_name(value)}")
        return None
    return value


def check_ip(reader: ConfigReader, path: str, value: Any) -> Optional[str]:
    if not isinstance(value, str):
        reader.error(path, f"expected an IPv4 or IPv6 address, got {type_name(value)}")
        return None
    try:
        address = ipaddress.ip_address(value)
    except ValueError:
        reader.error(path, f"expected an IPv4 or IPv6 address, got {value!r}")
        return None
    if isinstance(address, ipaddress.IPv6Address) and address.scope_id is not None:
        # fe80::1%eth0: the zone names an interface of one machine, not an address others can
        # use, and it is free text that would reach scripts and certificates.
        reader.error(path, f"expected an IPv4 or IPv6 address without a zone (%...), got {value!r}")
        return None
    return str(address)


def check_domain(reader: ConfigReader, path: str, value: Any) -> Optional[str]:
    return check_string(reader, path, value, pattern=DOMAIN, expected="a lower-case DNS domain name such as company.ru")


def check_list(
    reader: ConfigReader, path: str, value: Any, item: Callable[[str, Any], Optional[T]]
) -> Optional[list[T]]:
    if not isinstance(value, list):
        reader.error(path, f"expected a list, got {type_name(value)}")
        return None
    out: list[T] = []
    ok = True
    for i, v in enumerate(value):
        parsed = item(f"{path}[{i}]", v)
        if parsed is None:
            ok = False
        else:
            out.append(parsed)
    return out if ok else None


def check_object(reader: ConfigReader, path: str, value: Any, allowed: Iterable[str]) -> Optional[dict[str, Any]]:
    """An object whose keys are all in `allowed` (unknown keys are reported)."""
    if not isinstance(value, dict):
        reader.error(path, f"expected an object, got {type_name(value)}")
        return None
    allowed = set(allowed)
    for k in value:
        if k not in allowed:
            reader.error(f"{path}.{k}", f"unknown key; expected one of {', '.join(sorted(allowed))}")
    return value


def type_name(value: Any) -> str:
    if value is None:
        return "nothing"
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, int):
        return "an integer"
    if isinstance(value, float):
        return "a number"
    if isinstance(value, str):
        return "a string"
    if isinstance(value, list):
        return "a list"
    if isinstance(value, dict):
        return "an object"
    return type(value).__name__
