"""The platform's services for real: both stacks of the README on three disposable hosts.

* Three hosts (production, services, staging) on the harness bridge; each publishes its ports
  on 127.0.0.1 and the harness maps the stack addresses (the hosts' bridge addresses, which
  the hosts use between themselves) to them for SSH and the Docker API (`Platform.dial`).
* `ServiceMocks`: the e2e mocks of tests/e2e/platform_program.py (remote commands over SSH,
  real TLS, Pulumi's memory between runs) plus:
  - every `docker:index/...` resource applied for real by tests/e2e/docker_apply.py through
    the `docker.Provider` the program declares (its mutual-TLS endpoint, its certificate);
  - the GitLab API resources (UserRunner, ProjectVariable, ProjectRunnerEnablement, the
    project/group look-ups) answered like GitLab would, and timestamped: GitLab itself cannot
    run here (its stand-in serves HTTP but not the API), so they prove ordering, not GitLab;
  - any other resource type fails the run.
* `run_stack_on(...)`: one `pulumi up` of a stack: the real program, `load_stack_config()` +
  `build()`, with the stack's config and state.
"""

from __future__ import annotations

import json
import secrets as pysecrets
import threading
import time
from dataclasses import dataclass, field
from typing import Any, Callable, Optional

import pulumi
from google.protobuf import json_format

from .conftest import DisposableHost
from .docker_apply import PROVIDER, TYPES, Applied, DockerApplier, Options
from .images import ImageStore
from .platform_program import PlatformMocks
from .real_mocks import TLS_HANDLERS, plain

GITLAB_TYPES = {
    "pulumi:providers:gitlab",
    "gitlab:index/userRunner:UserRunner",
    "gitlab:index/projectVariable:ProjectVariable",
    "gitlab:index/projectRunnerEnablement:ProjectRunnerEnablement",
    "gitlab:index/projectContainerExpirationPolicy:ProjectContainerExpirationPolicy",
    "gitlab:index/project:Project",  # adopted for its container expiration policy (registry clean-up)
}
KNOWN_TYPES = {
    "command:remote:Command",
    "pulumi:pulumi:StackReference",
    PROVIDER,
    *TLS_HANDLERS,
    *TYPES,
    *GITLAB_TYPES,
}


@dataclass
class StackState:
    """What Pulumi's state keeps for one stack between two `up`s."""

    tls: dict = field(default_factory=dict)
    docker: dict[tuple[str, str], Applied] = field(default_factory=dict)
    gitlab: dict[tuple[str, str], tuple[str, dict]] = field(default_factory=dict)


@dataclass
class GitLabCall:
    at: float
    kind: str  # resource type or invoke token
    name: str


class ServiceMocks(PlatformMocks):
    def __init__(
        self,
        state: StackState,
        images: ImageStore,
        *,
        dial: Callable[[str, int], tuple[str, int]],
        log: Optional[Callable[[str], None]] = None,
        stack_outputs: Optional[dict] = None,
        secret_output_names: Optional[dict] = None,
    ) -> None:
        super().__init__(state.tls, log=log, dial=dial, stack_outputs=stack_outputs,
                         secret_output_names=secret_output_names)
        self.state = state
        self.applier = DockerApplier(images, state=state.docker, dial=dial, log=log)
        self.gitlab_calls: list[GitLabCall] = []

    @staticmethod
    def _options() -> Options:
        from conftest import CURRENT_REGISTRATION  # tests/conftest.py

        req = getattr(CURRENT_REGISTRATION, "request", None)
        if req is None:
            return Options()
        trigger = json_format.MessageToDict(req.replacement_trigger) if req.HasField("replacement_trigger") else None
        return Options(
            delete_before_replace=req.deleteBeforeReplace,
            replace_on_changes=tuple(req.replaceOnChanges),
            replacement_trigger=trigger,
            protect=req.protect,
            retain_on_delete=req.retainOnDelete,
            ignore_changes=tuple(req.ignoreChanges),
        )

    def new_resource(self, args: pulumi.runtime.MockResourceArgs):
        typ, name = args.typ, args.name
        if not args.custom:  # a component: nothing to apply
            return super().new_resource(args)
        if typ not in KNOWN_TYPES:
            raise RuntimeError(f"the services e2e harness does not know the resource type {typ} ({name})")
        if typ == PROVIDER:
            inputs = {k: json.loads(v) if k == "disableDockerDaemonCheck" else v for k, v in plain(dict(args.inputs)).items()}
            rid = f"{name}-provider"
            self.applier.register_provider(rid, inputs)
            return self._keep(typ, name, rid, dict(args.inputs))
        if typ in TYPES:
            rid, outputs = self.applier.apply(typ, name, plain(dict(args.inputs)), args.provider, self._options())
            return self._keep(typ, name, rid, outputs)
        if typ in GITLAB_TYPES:
            return self._gitlab(typ, name, dict(args.inputs))
        return super().new_resource(args)

    def _keep(self, typ: str, name: str, rid: str, state: dict):
        with self._lock:
            self.resources.append((typ, name, state))
        return rid, state

    def _gitlab(self, typ: str, name: str, inputs: dict):
        with self._lock:
            self.gitlab_calls.append(GitLabCall(time.monotonic(), typ, name))
            kept = self.state.gitlab.get((typ, name))
        key_inputs = json.dumps(plain(inputs), sort_keys=True, default=str)
        if kept is not None and kept[0] == key_inputs:
            rid, state = kept[1]["__id"], kept[1]["state"]
        else:
            state = dict(inputs)
            if typ == "gitlab:index/userRunner:UserRunner":
                rid = str(1000 + len(self.state.gitlab))
                state["token"] = f"glrt-e2e{pysecrets.token_hex(10)}"
            else:
                rid = f"{name}-id"
            with self._lock:
                self.state.gitlab[(typ, name)] = (key_inputs, {"__id": rid, "state": state})
        return self._keep(typ, name, rid, state)

    def call(self, args: pulumi.runtime.MockCallArgs):
        if args.token.startswith("gitlab:"):
            with self._lock:
                self.gitlab_calls.append(GitLabCall(time.monotonic(), args.token, json.dumps(plain(dict(args.args)))))
            if args.token == "gitlab:index/getProject:getProject":
                path = args.args.get("pathWithNamespace", "")
                return {"id": str(40 + len(path)), "name": path.rsplit("/", 1)[-1], "pathWithNamespace": path, "defaultBranch": "main"}, []
            if args.token == "gitlab:index/getGroup:getGroup":
                path = args.args.get("fullPath", "")
                return {"id": "7", "groupId": 7, "fullPath": path}, []
            raise RuntimeError(f"the services e2e harness does not answer {args.token}")
        return super().call(args)


@dataclass
class Platform:
    """The three hosts and what runs beside them."""

    hosts: dict[str, DisposableHost]
    images: ImageStore
    log: Callable[[str], None] = lambda _m: None
    states: dict[str, StackState] = field(default_factory=dict)
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def dial(self, host: str, port: int) -> tuple[str, int]:
        """A stack address (a host's bridge address) and port -> the port published on 127.0.0.1."""
        if host == "127.0.0.1":  # a stack that addresses its host by its published ports already
            return (host, port)
        for h in self.hosts.values():
            if h.ip == host and port in h.published:
                return ("127.0.0.1", h.published[port])
        raise ConnectionRefusedError(f"the harness publishes nothing for {host}:{port}")

    def state(self, stack: str) -> StackState:
        with self._lock:
            return self.states.setdefault(stack, StackState())


@dataclass
class StackUp:
    stack: str
    mocks: ServiceMocks
    elapsed: float
    outputs: dict[str, Any]
    secret_outputs: set[str]
    deleted: list[Applied]


def run_stack_on(
    platform: Platform,
    stack: str,
    config: dict[str, Any],
    secrets: tuple[str, ...],
    *,
    stack_outputs: Optional[dict] = None,
    secret_output_names: Optional[dict] = None,
) -> StackUp:
    """One `pulumi up` of `stack` with `config` on the platform's hosts."""
    from conftest import run_stack  # tests/conftest.py

    mocks = ServiceMocks(platform.state(stack), platform.images, dial=platform.dial, log=platform.log,
                         stack_outputs=stack_outputs, secret_output_names=secret_output_names)
    t0 = time.monotonic()
    run = run_stack(config, secrets=secrets, stack=stack, mocks=mocks)
    deleted = mocks.applier.finish_run()
    return StackUp(stack, mocks, time.monotonic() - t0, run.outputs, run.secret_outputs, deleted)
