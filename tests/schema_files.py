"""Where the tests find the schemas they validate against: copies kept in this repository
(tests/schemas/, with their source and version in tests/schemas/README.md), so that a clone
of the repository alone runs every test."""

from __future__ import annotations

from pathlib import Path

SCHEMAS = Path(__file__).resolve().parent / "schemas"
#: The providers' package schemas (tests/contract.py).
PROVIDER_SCHEMAS = SCHEMAS / "providers"
#: Published JSON schemas of the files the program renders: Traefik, dockerd, GitLab CI.
PUBLISHED_SCHEMAS = SCHEMAS / "published"
