#!/usr/bin/env python3
"""gitlab-runner STAND-IN (not gitlab-runner) for the delivery e2e harness.

`gitlab-runner run ...` loads /etc/gitlab-runner/config.toml and logs, per [[runners]] entry,
its name, URL, executor and whether it has a token (never the token); it re-reads the file when
it changes (gitlab-runner watches its config file and reloads it), exits on SIGTERM and stops
gracefully on SIGQUIT (logging it). Any other subcommand is appended to
/etc/gitlab-runner/standin-calls.jsonl and exits 0.
"""

import json
import os
import signal
import sys
import time
import tomllib

CONFIG = "/etc/gitlab-runner/config.toml"
CALLS = "/etc/gitlab-runner/standin-calls.jsonl"


def describe() -> str:
    try:
        with open(CONFIG, "rb") as f:
            cfg = tomllib.load(f)
    except FileNotFoundError:
        return "no config.toml"
    except (OSError, tomllib.TOMLDecodeError) as e:
        return f"config.toml unreadable: {e}"
    runners = [
        f"{r.get('name')} url={r.get('url')} executor={r.get('executor')} token={'set' if r.get('token') else 'missing'}"
        f" tls-ca-file={r.get('tls-ca-file', '-')}"
        for r in cfg.get("runners", [])
    ]
    return f"concurrent={cfg.get('concurrent')} runners=[{'; '.join(runners)}]"


def run() -> int:
    stop = {"graceful": False, "now": False}
    signal.signal(signal.SIGQUIT, lambda *_: stop.update(graceful=True))
    signal.signal(signal.SIGTERM, lambda *_: stop.update(now=True))
    print(f"gitlab-runner stand-in {os.environ.get('GITLAB_RUNNER_STANDIN_VERSION', '')} starting", flush=True)
    last = None
    while not (stop["graceful"] or stop["now"]):
        try:
            mtime = os.stat(CONFIG).st_mtime_ns
        except FileNotFoundError:
            mtime = None
        if mtime != last:
            print(("loaded " if last is None else "reloaded ") + describe(), flush=True)
            last = mtime
        time.sleep(1)
    print("graceful shutdown (SIGQUIT): no job running" if stop["graceful"] else "stopped (SIGTERM)", flush=True)
    return 0


def main() -> int:
    args = sys.argv[1:]
    if args[:1] == ["run"]:
        return run()
    with open(CALLS, "a") as f:
        f.write(json.dumps({"at": time.time(), "args": args}) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
