#!/usr/bin/env python3
"""Print the bootstrap figures on a disposable host: the first run's time, the converged
re-run's time and their ratio.

A fresh disposable Debian host is started (tests/e2e harness: private dockerd, debootstrapped
bookworm image, systemd as PID 1). The Pulumi program is then run twice under RealMocks, whose
remote commands really run on that host over SSH: the first run bootstraps the bare host, the
second runs every command again on the converged host (idempotent scripts should find nothing
to do). Each figure is the wall time of one whole program run.

    python scripts/measure_bootstrap.py                    # the real program (default)
    python scripts/measure_bootstrap.py --program MODULE:FUNCTION
    python scripts/measure_bootstrap.py --demo             # self-test of this script

By default the program is the project's own: `components.stack.build(load_stack_config())`
with the e2e stack config (tests/e2e/platform_program.py: a production stack with one
all-in-one host, `dockerPackage: docker.io`, Europe/Volgograd), under PlatformMocks (RealMocks
that keep TLS keys and certificates between the two runs, as Pulumi's state does). The
converged re-run must report `unchanged` for every step; the script fails otherwise.

FUNCTION(host) declares the resources; ``host`` is a tests.e2e.conftest.DisposableHost
(``host.connection()`` gives remote.ConnectionArgs keywords with the pinned host key,
``host.docker_endpoint`` the published 2376). Needs root and the harness's apt packages
(docs/e2e.md).
"""

from __future__ import annotations

import argparse
import importlib
import json
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "tests"))

import pulumi  # noqa: E402

from e2e.conftest import BUILD_IMAGE, start_host, stop_host  # noqa: E402
from e2e.dockerd import PrivateDockerd  # noqa: E402
from e2e.real_mocks import RealMocks  # noqa: E402


def _demo_program(host) -> None:
    """An idempotent two-step bootstrap, only to exercise this script."""
    from pulumi_command import remote

    conn = remote.ConnectionArgs(**host.connection())
    install = remote.Command(
        "demo-install",
        connection=conn,
        create="set -euo pipefail; dpkg -s jq >/dev/null 2>&1 || "
        "{ apt-get -q update && DEBIAN_FRONTEND=noninteractive apt-get -q install -y --no-install-recommends jq; }",
    )
    remote.Command(
        "demo-config",
        connection=conn,
        create="bash -s",
        stdin='set -euo pipefail; f=/etc/demo.json; new=\'{"a": 1}\'; '
        '[ "$(cat "$f" 2>/dev/null)" = "$new" ] || { printf "%s" "$new" > "$f.tmp"; jq . "$f.tmp" >/dev/null; mv "$f.tmp" "$f"; }',
        opts=pulumi.ResourceOptions(depends_on=[install]),
    )


def _load(spec: str):
    module, _, func = spec.partition(":")
    if not func:
        raise SystemExit(f"--program wants MODULE:FUNCTION, got {spec!r}")
    return getattr(importlib.import_module(module), func)


def _run_once(program, host, label: str) -> tuple[float, RealMocks]:
    mocks = RealMocks(command_timeout=1800, log=lambda m: print(m, file=sys.stderr, flush=True))
    pulumi.runtime.set_mocks(mocks, project="delivery", stack="e2e-measure", preview=False)

    @pulumi.runtime.test
    def run():
        program(host)

    t0 = time.monotonic()
    run()
    elapsed = time.monotonic() - t0
    print(f"[measure] {label}: {elapsed:.1f}s over {len(mocks.runs)} remote commands", file=sys.stderr, flush=True)
    return elapsed, mocks


def _measure_platform(host) -> tuple[float, list, float, list]:
    """The project's program, twice (first bootstrap, converged re-run), its containers applied
    for real (stand-in images and real Traefik: tests/e2e/images.py)."""
    from components.config.gitlab import DEFAULT_RUNNER_VERSION
    from components.config.services import DEFAULT_GITLAB_VERSION, DEFAULT_TRAEFIK_VERSION
    from e2e.images import build, standard_images
    from e2e.platform_program import run_program
    from e2e.services_harness import StackState

    log = lambda m: print(m, file=sys.stderr, flush=True)  # noqa: E731
    images = build(host.daemon, standard_images(DEFAULT_TRAEFIK_VERSION, DEFAULT_GITLAB_VERSION, DEFAULT_RUNNER_VERSION), log=log)
    state = StackState()
    first = run_program(host, state, images, log=log)
    print(f"[measure] first bootstrap: {first.elapsed:.1f}s over {len(first.mocks.runs)} remote commands", file=sys.stderr)
    again = run_program(host, state, images, log=log)
    print(f"[measure] converged re-run: {again.elapsed:.1f}s over {len(again.mocks.runs)} remote commands", file=sys.stderr)
    changed = [r.name for r in again.mocks.runs
               if not (r.stdout.splitlines()[-1].startswith("unchanged") or r.stdout.startswith("ready:"))]
    if changed:
        raise SystemExit(f"the re-run is not converged: {changed} reported changes")
    return first.elapsed, first.mocks.runs, again.elapsed, again.mocks.runs


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    group = parser.add_mutually_exclusive_group()
    group.add_argument("--program", help="MODULE:FUNCTION that declares the resources for a host")
    group.add_argument("--demo", action="store_true", help="measure a tiny built-in program")
    parser.add_argument("--json", action="store_true", help="print the figures as JSON")
    args = parser.parse_args(argv)

    import subprocess

    daemon = PrivateDockerd().start()
    try:
        image = subprocess.run(
            ["bash", str(BUILD_IMAGE)], env=daemon.env(), capture_output=True, text=True, timeout=1500, check=True
        ).stdout.split()[-1]
        host = start_host(daemon, image, name_prefix="delivery-e2e-measure")
        try:
            if args.demo or args.program:
                program = _demo_program if args.demo else _load(args.program)
                first, m1 = _run_once(program, host, "first bootstrap")
                again, m2 = _run_once(program, host, "converged re-run")
                runs1, runs2 = m1.runs, m2.runs
            else:
                first, runs1, again, runs2 = _measure_platform(host)
        finally:
            stop_host(daemon, host.container, host.volume)
    finally:
        daemon.stop(only_if_started=True)

    figures = {
        "program": "demo" if args.demo else (args.program or "components.stack:build"),
        "first_bootstrap_s": round(first, 2),
        "converged_rerun_s": round(again, 2),
        "ratio_first_to_rerun": round(first / again, 1) if again > 0 else None,
        "slowest_first": sorted(((r.name, round(r.elapsed, 2)) for r in runs1), key=lambda x: -x[1])[:5],
        "slowest_rerun": sorted(((r.name, round(r.elapsed, 2)) for r in runs2), key=lambda x: -x[1])[:5],
    }
    if args.json:
        print(json.dumps(figures, indent=2))
    else:
        print(f"program: {figures['program']} ({len(runs1)} remote commands per run)")
        print(f"first bootstrap:  {figures['first_bootstrap_s']:8.1f} s")
        print(f"converged re-run: {figures['converged_rerun_s']:8.1f} s")
        print(f"ratio (first / re-run): {figures['ratio_first_to_rerun']}")
        print("slowest steps, first run: " + ", ".join(f"{n} {t:.1f}s" for n, t in figures["slowest_first"]))
    return 0


if __name__ == "__main__":
    sys.exit(main())
