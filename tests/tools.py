"""Real tools the tests run; missing ones fail the test when DELIVERY_REQUIRE_TOOLS=1 (CI)."""

from __future__ import annotations

import os
import shutil

import pytest


def unavailable(message: str) -> None:
    """A prerequisite is missing: a failure in CI (DELIVERY_REQUIRE_TOOLS=1), else a skip."""
    if os.environ.get("DELIVERY_REQUIRE_TOOLS") == "1":
        pytest.fail(message)
    pytest.skip(message)


def require_tool(name: str) -> str:
    path = shutil.which(name)
    if path:
        return path
    unavailable(f"{name} is not installed (make deps installs it)")
