"""The real program (`components.config.load_stack_config` + `components.stack.build`) against
a disposable host, for tests/e2e/test_docker_host_e2e.py and scripts/measure_bootstrap.py.

* `stack_config(host, ...)`: a production stack config built from tests/conftest.py's
  `production_config()` (so it follows the keys other components add), with one all-in-one
  host at 127.0.0.1 on the disposable host's published SSH port, Docker from Debian's
  `docker.io` (`dockerPackage`, the key users set) and its ECDSA host key pinned.
* `PlatformMocks`: `RealMocks` plus what `pulumi up` keeps between two runs of a stack. A
  pulumi-tls resource whose inputs did not change keeps its key or certificate (Pulumi's state
  would), so the second run of the same config installs the same files: without that every
  run would make a new CA and the daemon's TLS files would change every time. Remote commands
  still run on every run (under `pulumi up` an unchanged `remote.Command` would not run at
  all; running it again is the stronger check: every script must find nothing to do).
  `docker:index/remoteImage:RemoteImage` gets an image id, as the provider would return it.
* `run_program(...)` runs the program with tests/e2e/services_harness.py's `ServiceMocks`: the
  docker resources are applied to the host's daemon for real (stand-in images, real Traefik).
"""

from __future__ import annotations

import json
import logging
import threading
import time
from dataclasses import dataclass, field
from typing import Any, Callable, Optional

import pulumi

from .conftest import DisposableHost
from .dockerd import BRIDGE_CIDR
from .real_mocks import TLS_HANDLERS, RealMocks, plain

#: Roles of the all-in-one host: every role a production stack (the one that owns the Docker
#: CA) can place on one host. staging-runner lives in a stack with productionStack set.
ALL_IN_ONE_ROLES = ("gitlab", "traefik", "review-apps", "production-runner")
HOST_NAME = "allinone"
TIMEZONE = "Europe/Volgograd"
#: The pinned host key type. golang.org/x/crypto/ssh offers ECDSA first and Ed25519 last: a
#: Go client that does not narrow its host key algorithms to the pinned key's type negotiates
#: ECDSA with a stock OpenSSH server, and a pinned ssh-ed25519 key would then be a mismatch.
#: Pinning the ECDSA key works whether or not the client narrows (docs/e2e.md).
HOST_KEY_TYPE = "ecdsa-sha2-nistp256"
#: Where the tests (the operator) reach the hosts from: the private bridge's gateway. The Docker
#: API firewall must allow it, as an operator's machine (docs/operations.md).
OPERATOR_ADDRESS = BRIDGE_CIDR.split("/", 1)[0]


def stack_config(host: DisposableHost, *, listen_address: str = "0.0.0.0", **overrides: Any) -> dict[str, Any]:
    """The stack config, through the keys users set (Pulumi.<stack>.yaml)."""
    from conftest import production_config  # tests/conftest.py

    cfg = production_config(
        dockerPackage="docker.io",
        timezone=TIMEZONE,
        sshPrivateKey=host.private_key_pem,
        dockerApiAllowedSources=[OPERATOR_ADDRESS],
        hosts=[
            {
                "name": HOST_NAME,
                "address": host.ssh_host,
                "port": host.ssh_port,
                "hostKey": host.host_keys[HOST_KEY_TYPE],
                "dockerListenAddress": listen_address,
                "dockerPort": host.docker_port,
                "roles": list(ALL_IN_ONE_ROLES),
            }
        ],
    )
    cfg.pop("dockerVersion", None)  # docker.io: whatever Debian ships
    cfg.pop("reviewAppsDaemon", None)  # the review-app daemon is this stack's own host
    cfg.update(overrides)
    return cfg


def secrets() -> tuple[str, ...]:
    from conftest import PRODUCTION_SECRETS

    return PRODUCTION_SECRETS


class PlatformMocks(RealMocks):
    """RealMocks with Pulumi's memory of TLS resources between runs (see the module docstring).

    :param tls_state: shared between the runs of one "stack": ``{(type, name): (inputs, id, state)}``.
    """

    def __init__(self, tls_state: Optional[dict] = None, **kwargs: Any) -> None:
        kwargs.setdefault("host_key_algorithms", "go-default")
        kwargs.setdefault("command_timeout", 1200)
        super().__init__(**kwargs)
        self.tls_state = tls_state if tls_state is not None else {}
        self._state_lock = threading.Lock()

    def new_resource(self, args: pulumi.runtime.MockResourceArgs):
        if args.typ in TLS_HANDLERS:
            key = (args.typ, args.name)
            inputs = json.dumps(plain(dict(args.inputs)), sort_keys=True, default=str)
            with self._state_lock:
                kept = self.tls_state.get(key)
            if kept is not None and kept[0] == inputs:
                with self._lock:
                    self.resources.append((args.typ, args.name, kept[2]))
                return kept[1], kept[2]
            rid, state = super().new_resource(args)
            with self._state_lock:
                self.tls_state[key] = (inputs, rid, state)
            return rid, state
        if args.typ == "docker:index/remoteImage:RemoteImage":
            name = args.inputs.get("name")
            state = {**args.inputs, "imageId": f"sha256:{'1' * 64}", "repoDigest": f"{name}@sha256:{'0' * 64}"}
            with self._lock:
                self.resources.append((args.typ, args.name, state))
            return f"{args.name}_id", state
        return super().new_resource(args)


@dataclass
class ProgramRun:
    """One run of the program: its stack outputs, what ran on the host, how long it took."""

    mocks: PlatformMocks
    elapsed: float
    outputs: dict[str, Any] = field(default_factory=dict)
    error: Optional[BaseException] = None

    def stdout(self, name: str) -> str:
        return self.mocks.run_named(name).stdout


def run_program(
    host: DisposableHost,
    state: Any,
    images: Any,
    *,
    config: Optional[dict[str, Any]] = None,
    log: Optional[Callable[[str], None]] = None,
    raise_errors: bool = True,
) -> ProgramRun:
    """Run components.stack.build(load_stack_config()) against `host`, its docker resources
    applied for real; `state` (services_harness.StackState) is what Pulumi keeps between runs."""
    from conftest import run_stack  # tests/conftest.py: the same runner as the unit tests

    from .services_harness import Platform, ServiceMocks

    platform = Platform({HOST_NAME: host}, images, log=log or (lambda _m: None))
    mocks = ServiceMocks(state, images, dial=platform.dial, log=log)
    t0 = time.monotonic()
    try:
        stack = run_stack(config if config is not None else stack_config(host), secrets=secrets(), mocks=mocks)
    except Exception as e:  # noqa: BLE001 - handed back to the caller
        if raise_errors:
            raise
        _EXPECTED_FAILURES.add(str(e))
        mocks.applier.seen = set()
        return ProgramRun(mocks, time.monotonic() - t0, error=e)
    mocks.applier.finish_run()
    return ProgramRun(mocks, time.monotonic() - t0, outputs=stack.outputs)


#: Messages of failures a caller asked for (raise_errors=False).
_EXPECTED_FAILURES: set[str] = set()


class _ExpectedFailureNotRetrieved(logging.Filter):
    """After a failed run the SDK leaves futures holding the failure that nobody retrieves;
    asyncio logs each one ("Future exception was never retrieved", with the whole message)
    when it is collected, often at interpreter exit. Drop those records for failures a caller
    expected; every other record passes."""

    def filter(self, record: logging.LogRecord) -> bool:
        exc = record.exc_info[1] if record.exc_info else None
        return not (exc is not None and str(exc) in _EXPECTED_FAILURES)


if not any(isinstance(f, _ExpectedFailureNotRetrieved) for f in logging.getLogger("asyncio").filters):
    logging.getLogger("asyncio").addFilter(_ExpectedFailureNotRetrieved())

