#!/usr/bin/env python3
"""Figures of the services end to end (docs/e2e.md): from three bare disposable hosts to the
first review app served, a converged re-run of both stacks, and both stacks' resource counts.

    .venv/bin/python scripts/measure_services.py

It runs what tests/e2e/test_services_e2e.py runs (tests/e2e/services_platform.py): the
production stack, the staging stack, then the review-app template's deploy job on Staging and
HTTPS requests until the review app answers through the edge; then both stacks again. Needs
root, the harness's packages (make deps) and pebble. Prints one JSON object on stdout.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "tests"))
os.chdir(ROOT / "tests")


def main() -> int:
    from e2e import test_services_e2e as t
    from e2e.conftest import BUILD_IMAGE
    from e2e.dockerd import PrivateDockerd
    from e2e.images import ECHO_IMAGE
    from e2e.services_platform import bring_up, load_image

    log = lambda m: print(m, file=sys.stderr, flush=True)  # noqa: E731
    daemon = PrivateDockerd().start()
    services = None
    try:
        host_image = subprocess.run(["bash", str(BUILD_IMAGE)], env=daemon.env(), capture_output=True, text=True,
                                    timeout=1500, check=True).stdout.split()[-1]
        t0 = time.monotonic()
        services = bring_up(daemon, host_image, log, gate_delay=0)
        ref = "feature/measure"
        host = f"feature-measure.dev.{t.DOMAIN}"
        staging = t.operator_engine(services, "staging")
        load_image(staging, services.platform.images, ECHO_IMAGE, tag=t.review_image(services, ref))
        t.review_job(services, "review:deploy", ref)
        t.eventually("the review app", lambda: t.ok(t.https(services, host, "/")), timeout=300)
        to_review_app = time.monotonic() - t0
        counts = {u.stack: len([r for r in u.mocks.resources]) for u in services.ups}
        t1 = time.monotonic()
        ups = [services.up("production"), services.up("staging")]
        rerun = time.monotonic() - t1
        changed = [(u.stack, e.name, e.action) for u in ups for e in u.mocks.applier.events if e.action != "same"]
        figures = {
            "bare_hosts_to_first_review_app_s": round(to_review_app, 1),
            "converged_rerun_both_stacks_s": round(rerun, 1),
            "converged_rerun_changes": changed,
            "resources": counts,
            "phases_s": {k: round(v, 1) for k, v in services.timings.items()},
        }
        print(json.dumps(figures, indent=1))
        return 0 if not changed else 1
    finally:
        if services is not None:
            services.stop()
        daemon.stop(only_if_started=True)


if __name__ == "__main__":
    sys.exit(main())
