"""The churn table of docs/operations.md ("What a change restarts"), parsed: which containers a
change of each config key replaces, restarts in place or reconfigures in place. Read by the
unit test (tests/test_churn.py, against the resource graph) and by the e2e test
(tests/e2e/test_services_e2e.py, against container IDs and start times on the hosts)."""

from __future__ import annotations

import re
from pathlib import Path

DOC = Path(__file__).resolve().parents[1] / "docs" / "operations.md"
SECTION = "## What a change restarts"
EFFECTS = ("replaced", "restarted in place", "reconfigured in place")
EFFECT = re.compile(r"`([a-z0-9-]+)` (replaced|restarted in place|reconfigured in place)")

Effect = tuple[str, str]  # (container name, one of EFFECTS)


def churn_table(text: str | None = None) -> dict[str, frozenset[Effect]]:
    """key -> the effects its change has (an empty set: nothing restarts)."""
    text = DOC.read_text() if text is None else text
    start = text.index(SECTION)
    end = text.find("\n## ", start + len(SECTION))
    table: dict[str, frozenset[Effect]] = {}
    for line in text[start : end if end != -1 else None].splitlines():
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if len(cells) < 2 or not cells[0].startswith("`"):
            continue
        keys = re.findall(r"`([A-Za-z0-9]+)`", cells[0])
        effects = frozenset(EFFECT.findall(cells[1]))
        if not effects and not cells[1].startswith("nothing"):
            raise ValueError(f"churn table row {line!r}: say `nothing` or name `container` + {EFFECTS}")
        for key in keys:
            if key in table:
                raise ValueError(f"churn table: {key} appears twice")
            table[key] = effects
    return table
