"""A leak scan of an evaluated stack: no secret config value may appear outside a secret.

`secret_values(config, secret_keys)` takes every string a secret key carries (its value, or
each leaf of a structured value); `find_leaks(run, secrets)` then looks for each of them in
everything Pulumi would store or print in plain text: every registered resource's name, URN
and inputs (outside values marked secret; the engine keeps an input's secretness on the output
of the same name), what components register with `register_outputs`, and every stack output
that is not secret. A value is found as itself, line by line when it has several lines, in
base64 at any alignment (files travel as base64 tars), and inside any plain string that
decodes from base64. A SHA-256 of a value is not a leak (triggers and labels carry hashes).

Nothing here knows the program's keys: a new secret key is scanned as soon as a test sets it,
and tests/test_leak_scan.py fails while a declared key is missing from its configurations.
"""

from __future__ import annotations

import base64
import binascii
import re
from dataclasses import dataclass
from typing import Any, Iterable, Iterator, Mapping

from conftest import StackRun, is_secret_value

#: Secret values shorter than this cannot be told apart from ordinary text: the scan refuses them
#: (give the test's secrets distinctive values instead).
MIN_SECRET_LENGTH = 8
#: Fields of structured secret values that identify something rather than carry data; they are
#: part of resource names and never secret (docs/gitlab.md, "ciVariables set as a secret").
IDENTITY_FIELDS = frozenset({"environmentScope"})
BASE64_RUN = re.compile(r"[A-Za-z0-9+/=_-]{16,}")


@dataclass(frozen=True)
class Leak:
    where: str
    secret: str
    form: str

    def __str__(self) -> str:
        return f"{self.where}: holds the secret {self.secret} ({self.form}) outside a secret"


def secret_values(config: Mapping[str, Any], secret_keys: Iterable[str]) -> dict[str, str]:
    """label (`key` or `key.path`) -> value, for every string leaf of every secret key set."""
    found: dict[str, str] = {}

    def walk(label: str, value: Any) -> None:
        if isinstance(value, str):
            if len(value.strip()) < MIN_SECRET_LENGTH:
                raise ValueError(f"secret {label} is too short to scan for; give the test a distinctive value")
            found[label] = value
        elif isinstance(value, Mapping):
            for k, v in value.items():
                if k not in IDENTITY_FIELDS:
                    walk(f"{label}.{k}", v)
        elif isinstance(value, list):
            for i, v in enumerate(value):
                walk(f"{label}[{i}]", v)

    for key in secret_keys:
        if key in config:
            walk(key, config[key])
    return found


def needles(value: str) -> dict[str, bytes]:
    """The forms of a secret to look for: form -> bytes."""
    forms: dict[str, bytes] = {"as is": value.encode()}
    lines = [line for line in value.splitlines() if len(line.strip()) >= MIN_SECRET_LENGTH and not line.startswith("-----")]
    if len(lines) > 1:
        forms.update({f"line {i + 1}": line.encode() for i, line in enumerate(value.splitlines()) if line in lines})
    for name, raw in list(forms.items()):
        for shift in range(3):
            # The base64 of `raw` preceded by `shift` bytes, without the characters that depend on
            # the neighbours: what any base64 text holding `raw` at that alignment contains.
            encoded = base64.b64encode(b"\0" * shift + raw)
            start = (shift * 4 + 2) // 3
            stop = len(encoded) - (3 if (shift + len(raw)) % 3 else 0)
            core = encoded[start:stop].rstrip(b"=")
            if len(core) >= MIN_SECRET_LENGTH:
                forms[f"{name}, base64 at offset {shift}"] = core
    return forms


def plain_strings(value: Any, path: str = "") -> Iterator[tuple[str, str]]:
    """Every string in `value` that is not inside a secret, with where it is."""
    if is_secret_value(value):
        return
    if isinstance(value, str):
        yield path, value
    elif isinstance(value, Mapping):
        for k, v in value.items():
            yield from plain_strings(v, f"{path}.{k}" if path else str(k))
    elif isinstance(value, (list, tuple)):
        for i, v in enumerate(value):
            yield from plain_strings(v, f"{path}[{i}]")


def _decoded(text: str) -> Iterator[bytes]:
    """The bytes of every base64 run in `text` (a base64 tar, a PEM body...)."""
    for run in BASE64_RUN.findall(text):
        for decode in (base64.b64decode, base64.urlsafe_b64decode):
            try:
                yield decode(run + "=" * (-len(run) % 4))
            except (binascii.Error, ValueError):
                continue


def stored_in_plain(run: StackRun) -> Iterator[tuple[str, str]]:
    """(where, text) of everything the stack stores or prints outside secrets."""
    for r in run.registrations:
        yield f"{r.urn} (name)", r.name
        yield f"{r.urn} (URN)", r.urn
        yield from plain_strings(r.inputs, f"{r.urn} inputs")
    for urn, outputs in run.resource_outputs.items():
        yield from plain_strings(outputs, f"{urn} registered outputs")
    for key, value in run.outputs.items():
        if key not in run.secret_outputs:
            yield from plain_strings(value, f"stack output {key}")


def find_leaks(run: StackRun, secrets: Mapping[str, str]) -> list[Leak]:
    forms = {label: needles(value) for label, value in secrets.items()}
    leaks: list[Leak] = []
    for where, text in stored_in_plain(run):
        haystacks = [text.encode(), *_decoded(text)]
        for label, by_form in forms.items():
            for form, needle in by_form.items():
                if any(needle in h for h in haystacks):
                    leaks.append(Leak(where, label, form))
                    break
    return leaks
