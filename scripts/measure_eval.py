#!/usr/bin/env python3
"""Wall time to evaluate each stack under the test mocks, against an empty program
under the same mocks, side by side in one run; and the resource count per stack.

usage: .venv/bin/python scripts/measure_eval.py [--runs N]
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "tests"))

import conftest  # noqa: E402  (the mocks the tests use)


def timed(fn, runs: int) -> tuple[float, object]:
    samples, result = [], None
    for _ in range(runs):
        start = time.perf_counter()
        result = fn()
        samples.append(time.perf_counter() - start)
    return statistics.median(samples), result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=15)
    args = parser.parse_args()

    empty = lambda: conftest.run_program(lambda: {}, conftest.production_config(), secrets=conftest.PRODUCTION_SECRETS)  # noqa: E731
    production = lambda: conftest.run_stack(conftest.production_config(), secrets=conftest.PRODUCTION_SECRETS)  # noqa: E731
    staging = lambda: conftest.run_stack(  # noqa: E731
        conftest.staging_config(),
        secrets=conftest.PRODUCTION_SECRETS,
        stack="staging",
        stack_outputs={conftest.PRODUCTION_STACK: conftest.production_outputs()},
    )
    token = {"gitlabToken": "glpat-MOCKtoken-0123456789", "gitlabIntegration": "enabled"}
    production_api = lambda: conftest.run_stack(conftest.production_config(**token), secrets=conftest.PRODUCTION_SECRETS)  # noqa: E731
    staging_api = lambda: conftest.run_stack(  # noqa: E731
        conftest.staging_config(**token),
        secrets=conftest.PRODUCTION_SECRETS,
        stack="staging",
        stack_outputs={conftest.PRODUCTION_STACK: conftest.production_outputs()},
    )
    empty()  # warm imports and schema caches before timing
    production()

    t_empty, _ = timed(empty, args.runs)
    t_prod, prod_run = timed(production, args.runs)
    t_stag, stag_run = timed(staging, args.runs)
    t_prod_api, prod_api_run = timed(production_api, args.runs)
    t_stag_api, stag_api_run = timed(staging_api, args.runs)

    def count(run) -> str:
        custom = sum(1 for r in run.registrations if r.custom)
        return f"{len(run.registrations)} resources ({custom} custom, {len(run.registrations) - custom} components)"

    print(f"median of {args.runs} runs each, same mocks (provider-schema contract checks included)")
    print(f"empty program:      {t_empty * 1000:8.1f} ms")
    print(f"production stack:   {t_prod * 1000:8.1f} ms   {count(prod_run)}   (first run: no gitlabToken yet)")
    print(f"staging stack:      {t_stag * 1000:8.1f} ms   {count(stag_run)}   (first run: no gitlabToken yet)")
    print(f"production stack:   {t_prod_api * 1000:8.1f} ms   {count(prod_api_run)}   (gitlabToken set: runners, CI variables)")
    print(f"staging stack:      {t_stag_api * 1000:8.1f} ms   {count(stag_api_run)}   (gitlabToken set: runner)")
    print(f"ratio production/empty: {t_prod / t_empty:.1f}x")


if __name__ == "__main__":
    main()
