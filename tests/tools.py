"""Real tools the tests run; missing ones fail the test when DELIVERY_REQUIRE_TOOLS=1 (CI)."""

from __future__ import annotations

import os
import shutil

import pytest


def require_tool(name: str) -> str:
    path = shutil.which(name)
    if path:
        return path
    message = f"{name} is not installed (make deps installs it)"
    if os.environ.get("DELIVERY_REQUIRE_TOOLS") == "1":
        pytest.fail(message)
    pytest.skip(message)
