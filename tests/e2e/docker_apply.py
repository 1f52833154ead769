"""The program's pulumi-docker resources applied to the hosts' Docker daemons for real.

The pulumi-docker provider plugin cannot run here, so the e2e mocks hand every
`docker:index/...` registration to `DockerApplier`, which does what pulumi-docker 5.2.0
(terraform-provider-docker v4.2.0, `internal/provider/resource_docker_container_funcs.go`)
does with the same inputs, through the endpoint and the client certificate of the
`docker.Provider` the resource names (the program's own mutual-TLS endpoint, the operator
certificate):

* `RemoteImage`: the image comes from the harness's image store (no registry can be reached
  here: tests/e2e/images.py builds them) and is loaded into the host's daemon; `imageId` is the
  real ID there.
* `Network`, `Volume`: created as declared.
* `Container`: created in the provider's order: config + host config, create, then (with
  `networksAdvanced`) disconnected from `bridge` and connected to each network, uploads copied
  in, started, `wait` honoured.

Every input the program sets is applied or the run fails with "unsupported": nothing is
silently dropped. A resource type the harness does not know fails the run.

Between two runs of the same stack the applier keeps what Pulumi's state would keep: the
inputs, ID and outputs of each resource by (type, name). Unchanged inputs change nothing. A
changed input follows the provider's schema: ForceNew inputs (and `replaceOnChanges`,
`replacementTrigger`) replace the resource, delete first when `deleteBeforeReplace` is set, else
create first (which fails on a fixed name, as the real provider does); the updatable ones
(`restart`, memory, CPU...) are applied with `docker update`; the rest only change the state.
Resources of the previous run that the program no longer declares are deleted, unless
protected or retained.
"""

from __future__ import annotations

import base64
import io
import json
import tarfile
import threading
import time
from dataclasses import dataclass, field
from typing import Any, Callable, Iterable, Mapping, Optional, Protocol

from .docker_engine import DockerApiError, DockerEngine

CONTAINER = "docker:index/container:Container"
IMAGE = "docker:index/remoteImage:RemoteImage"
NETWORK = "docker:index/network:Network"
VOLUME = "docker:index/volume:Volume"
PROVIDER = "pulumi:providers:docker"
TYPES = (CONTAINER, IMAGE, NETWORK, VOLUME)

# terraform-provider-docker v4.2.0 internal/provider/resource_docker_container.go: the inputs
# marked ForceNew (a change replaces the container) ...
CONTAINER_FORCE_NEW = frozenset({
    "name", "readOnly", "image", "hostname", "domainname", "command", "entrypoints", "user", "dns",
    "dnsOpts", "dnsSearches", "publishAllPorts", "workingDir", "capabilities", "securityOpts",
    "runtime", "platform", "stopSignal", "stopTimeout", "mounts", "volumes", "ports", "hosts",
    "ulimits", "envs", "privileged", "devices", "deviceRequests", "labels", "shmSize", "logDriver",
    "logOpts", "networkMode", "networksAdvanced", "pidMode", "usernsMode", "uploads", "sysctls",
    "ipcMode", "groupAdds", "tty", "stdinOpen", "storageOpts", "gpus", "cpus", "cgroupnsMode",
    "cgroupParent",
})  # fmt: skip
# ... those resourceDockerContainerUpdate applies with ContainerUpdate ...
CONTAINER_UPDATABLE = frozenset({
    "restart", "maxRetryCount", "cpuShares", "memory", "memoryReservation", "memorySwap", "cpuSet",
    "deviceReadBps", "deviceReadIops", "deviceWriteBps", "deviceWriteIops",
})  # fmt: skip
# ... and those that only change the state (neither ForceNew nor applied by Update).
CONTAINER_STATE_ONLY = frozenset({
    "rm", "start", "wait", "waitTimeout", "attach", "logs", "mustRun", "removeVolumes", "tmpfs",
    "destroyGraceSeconds", "healthcheck", "containerReadRefreshTimeoutMilliseconds", "init",
    "cpuPeriod", "cpuQuota",
})  # fmt: skip

# The Container inputs this applier implements (the others fail the run as unsupported).
CONTAINER_SUPPORTED = frozenset({
    "name", "image", "hostname", "domainname", "command", "entrypoints", "user", "workingDir",
    "envs", "labels", "ports", "volumes", "mounts", "networksAdvanced", "networkMode", "restart",
    "maxRetryCount", "healthcheck", "uploads", "capabilities", "logDriver", "logOpts", "shmSize",
    "stopSignal", "stopTimeout", "destroyGraceSeconds", "mustRun", "start", "wait", "waitTimeout",
    "privileged", "readOnly", "memory", "tmpfs", "init", "securityOpts", "hosts", "sysctls",
    "removeVolumes", "tty", "stdinOpen", "rm",
})  # fmt: skip

IMAGE_SUPPORTED = frozenset({"name", "keepLocally", "forceRemove", "pullTriggers", "triggers"})
NETWORK_SUPPORTED = frozenset({"name", "driver", "internal", "attachable", "ipv6", "ipamConfigs", "options",
                               "labels", "ipamDriver"})
VOLUME_SUPPORTED = frozenset({"name", "driver", "driverOpts", "labels"})


class UnsupportedInput(RuntimeError):
    """The program set an input the harness cannot apply faithfully."""


class ImageSource(Protocol):
    def has(self, name: str) -> bool: ...

    def export(self, name: str) -> Iterable[bytes]: ...


@dataclass
class Options:
    """The resource options of one registration (from the RegisterResource request)."""

    delete_before_replace: bool = False
    replace_on_changes: tuple[str, ...] = ()
    replacement_trigger: Any = None
    protect: bool = False
    retain_on_delete: bool = False
    ignore_changes: tuple[str, ...] = ()


@dataclass
class Applied:
    typ: str
    name: str
    inputs: dict[str, Any]
    id: str
    outputs: dict[str, Any]
    provider: str
    options: Options


@dataclass
class Event:
    """What the applier did, for assertions (`action`: create, replace, update, delete, same)."""

    at: float
    typ: str
    name: str
    action: str
    id: str


@dataclass
class Target:
    url: str
    ca: str
    cert: str
    key: str


def _canonical(value: Any) -> str:
    return json.dumps(value, sort_keys=True, default=str)


def _duration_ns(text: Optional[str]) -> int:
    """Go's time.ParseDuration for the forms the program uses (e.g. 30s, 1m30s, 500ms)."""
    if not text:
        return 0
    units = {"ns": 1, "us": 1_000, "µs": 1_000, "ms": 1_000_000, "s": 1_000_000_000, "m": 60_000_000_000,
             "h": 3_600_000_000_000}
    total, num, i = 0.0, "", 0
    while i < len(text):
        c = text[i]
        if c.isdigit() or c == ".":
            num += c
            i += 1
            continue
        for u in ("ns", "us", "µs", "ms", "s", "m", "h"):
            if text.startswith(u, i) and not (u == "m" and text.startswith("ms", i)):
                total += float(num) * units[u]
                num = ""
                i += len(u)
                break
        else:
            raise UnsupportedInput(f"duration {text!r}")
    if num:
        raise UnsupportedInput(f"duration {text!r} has no unit")
    return int(total)


class DockerApplier:
    """Applies docker resources; one instance per stack, `state` shared between its runs."""

    def __init__(
        self,
        images: ImageSource,
        *,
        state: dict[tuple[str, str], Applied],
        dial: Callable[[str, int], tuple[str, int]] = lambda h, p: (h, p),
        log: Optional[Callable[[str], None]] = None,
    ) -> None:
        self.images = images
        self.state = state
        self.dial = dial
        self.log = log or (lambda _m: None)
        self.targets: dict[str, Target] = {}
        self.seen: set[tuple[str, str]] = set()
        self.events: list[Event] = []
        self._lock = threading.Lock()

    # -- providers --------------------------------------------------------------------------
    def register_provider(self, provider_id: str, inputs: Mapping[str, Any]) -> None:
        unknown = set(inputs) - {"host", "caMaterial", "certMaterial", "keyMaterial", "version"}
        if unknown:
            raise UnsupportedInput(f"docker.Provider inputs {sorted(unknown)}")
        host = inputs.get("host")
        if not host or not all(inputs.get(k) for k in ("caMaterial", "certMaterial", "keyMaterial")):
            raise UnsupportedInput("docker.Provider without host and the three TLS materials")
        with self._lock:
            self.targets[provider_id] = Target(host, inputs["caMaterial"], inputs["certMaterial"], inputs["keyMaterial"])

    def engine(self, provider_ref: str) -> DockerEngine:
        provider_id = provider_ref.rsplit("::", 1)[-1]
        target = self.targets.get(provider_id)
        if target is None:
            raise UnsupportedInput(f"resource without an explicit docker.Provider (ref {provider_ref!r})")
        host, _, port = target.url.removeprefix("tcp://").rpartition(":")
        host = host.strip("[]")
        return DockerEngine(target.url, ca=target.ca, cert=target.cert, key=target.key,
                            connect_to=self.dial(host, int(port)))

    # -- entry point --------------------------------------------------------------------------
    def apply(self, typ: str, name: str, inputs: dict[str, Any], provider_ref: str, options: Options) -> tuple[str, dict]:
        if typ not in TYPES:
            raise UnsupportedInput(f"the e2e harness does not know the resource type {typ} ({name})")
        if options.ignore_changes:
            raise UnsupportedInput(f"{name}: ignoreChanges {options.ignore_changes}")
        key = (typ, name)
        with self._lock:
            self.seen.add(key)
            previous = self.state.get(key)
        engine = self.engine(provider_ref)
        handler = {CONTAINER: _ContainerOps, IMAGE: _ImageOps, NETWORK: _NetworkOps, VOLUME: _VolumeOps}[typ](self, engine)
        handler.check(name, inputs)

        if previous is not None and _canonical(previous.inputs) == _canonical(inputs) and _canonical(
            previous.options.replacement_trigger
        ) == _canonical(options.replacement_trigger):
            self._event(typ, name, "same", previous.id)
            return previous.id, previous.outputs

        if previous is None:
            rid, outputs = handler.create(name, inputs)
            action = "create"
        else:
            changed = {k for k in set(previous.inputs) | set(inputs)
                       if _canonical(previous.inputs.get(k)) != _canonical(inputs.get(k))}
            trigger_changed = _canonical(previous.options.replacement_trigger) != _canonical(options.replacement_trigger)
            if trigger_changed or handler.replaces(changed) or changed & set(options.replace_on_changes):
                if previous.options.protect or options.protect:
                    raise RuntimeError(f"{typ} {name} is protected and its change needs a replacement "
                                       f"(changed: {sorted(changed)})")
                if options.delete_before_replace:
                    handler.delete(previous)
                    rid, outputs = handler.create(name, inputs)
                else:  # create first: a fixed name collides, as with the real provider
                    rid, outputs = handler.create(name, inputs)
                    handler.delete(previous)
                action = "replace"
            else:
                rid, outputs = handler.update(previous, inputs, changed)
                action = "update"
        self._event(typ, name, action, rid)
        with self._lock:
            self.state[key] = Applied(typ, name, inputs, rid, outputs, provider_ref, options)
        return rid, outputs

    def finish_run(self) -> list[Applied]:
        """Delete what the previous run had and this one no longer declares (containers first)."""
        order = {CONTAINER: 0, NETWORK: 1, VOLUME: 2, IMAGE: 3}
        gone = sorted((a for k, a in self.state.items() if k not in self.seen), key=lambda a: order[a.typ])
        for a in gone:
            if a.options.protect:
                raise RuntimeError(f"{a.typ} {a.name} is protected: the program no longer declares it, "
                                   "and Pulumi refuses to delete a protected resource")
            if not a.options.retain_on_delete:
                handler = {CONTAINER: _ContainerOps, IMAGE: _ImageOps, NETWORK: _NetworkOps, VOLUME: _VolumeOps}[a.typ](
                    self, self.engine(a.provider))
                handler.delete(a)
            self._event(a.typ, a.name, "delete", a.id)
            del self.state[(a.typ, a.name)]
        self.seen = set()
        return gone

    def _event(self, typ: str, name: str, action: str, rid: str) -> None:
        with self._lock:
            self.events.append(Event(time.monotonic(), typ, name, action, rid))
        if action != "same":
            self.log(f"[docker-apply] {action} {typ.split(':')[-1]} {name} ({rid[:12]})")


class _Ops:
    supported: frozenset[str] = frozenset()
    kind = ""

    def __init__(self, applier: DockerApplier, engine: DockerEngine) -> None:
        self.applier = applier
        self.engine = engine

    def check(self, name: str, inputs: Mapping[str, Any]) -> None:
        unknown = sorted(k for k, v in inputs.items() if k not in self.supported and v not in (None, [], {}))
        if unknown:
            raise UnsupportedInput(f"{self.kind} {name}: the e2e harness does not apply {unknown}")

    def replaces(self, changed: set[str]) -> bool:
        return bool(changed)  # networks, volumes, images: every input is ForceNew

    def update(self, previous: Applied, inputs: dict[str, Any], changed: set[str]) -> tuple[str, dict]:
        raise UnsupportedInput(f"{self.kind} {previous.name}: in-place update of {sorted(changed)}")

    def create(self, name: str, inputs: dict[str, Any]) -> tuple[str, dict]:
        raise NotImplementedError

    def delete(self, previous: Applied) -> None:
        raise NotImplementedError


class _ImageOps(_Ops):
    supported = IMAGE_SUPPORTED
    kind = "RemoteImage"

    def create(self, name: str, inputs: dict[str, Any]) -> tuple[str, dict]:
        ref = inputs["name"]
        found = self.engine.inspect("image", ref)
        if found is None:
            if not self.applier.images.has(ref):
                raise RuntimeError(f"RemoteImage {name}: {ref} cannot be pulled here (no registry) and the harness's "
                                   "image store has no such image (tests/e2e/images.py)")
            self.engine.load_image(self.applier.images.export(ref))
            found = self.engine.inspect("image", ref)
            if found is None:
                raise RuntimeError(f"RemoteImage {name}: {ref} is not in the daemon after loading it")
        digests = found.get("RepoDigests") or []
        return f"{found['Id']}{ref}", {**inputs, "imageId": found["Id"], "repoDigest": digests[0] if digests else ""}

    def delete(self, previous: Applied) -> None:
        if previous.inputs.get("keepLocally"):
            return
        try:
            self.engine.request("DELETE", f"/images/{previous.inputs['name']}",
                                query={"force": "1" if previous.inputs.get("forceRemove") else None}, expect=(200, 404))
        except DockerApiError as e:
            if e.status != 409:  # in use: the provider leaves it too
                raise


class _NetworkOps(_Ops):
    supported = NETWORK_SUPPORTED
    kind = "Network"

    def create(self, name: str, inputs: dict[str, Any]) -> tuple[str, dict]:
        ipam: dict[str, Any] = {"Driver": inputs.get("ipamDriver") or "default", "Config": []}
        for c in inputs.get("ipamConfigs") or []:
            entry = {"Subnet": c.get("subnet"), "Gateway": c.get("gateway"), "IPRange": c.get("ipRange"),
                     "AuxiliaryAddresses": c.get("auxAddress")}
            ipam["Config"].append({k: v for k, v in entry.items() if v})
        body = {
            "Name": inputs["name"],
            "Driver": inputs.get("driver") or "bridge",
            "Internal": bool(inputs.get("internal")),
            "Attachable": bool(inputs.get("attachable")),
            "EnableIPv6": bool(inputs.get("ipv6")),
            "IPAM": ipam,
            "Options": inputs.get("options") or {},
            "Labels": {l["label"]: l["value"] for l in inputs.get("labels") or []},
            "CheckDuplicate": True,
        }
        created = self.engine.json("POST", "/networks/create", body=body)
        return created["Id"], {**inputs, "driver": body["Driver"]}

    def delete(self, previous: Applied) -> None:
        self.engine.request("DELETE", f"/networks/{previous.id}", expect=(200, 204, 404))


class _VolumeOps(_Ops):
    supported = VOLUME_SUPPORTED
    kind = "Volume"

    def create(self, name: str, inputs: dict[str, Any]) -> tuple[str, dict]:
        if self.engine.inspect("volume", inputs["name"]) is not None:
            # Docker's VolumeCreate returns an existing volume; the provider adopts it the same way.
            pass
        body = {
            "Name": inputs["name"],
            "Driver": inputs.get("driver") or "local",
            "DriverOpts": inputs.get("driverOpts") or {},
            "Labels": {l["label"]: l["value"] for l in inputs.get("labels") or []},
        }
        created = self.engine.json("POST", "/volumes/create", body=body)
        return created["Name"], {**inputs, "mountpoint": created.get("Mountpoint", "")}

    def delete(self, previous: Applied) -> None:
        self.engine.request("DELETE", f"/volumes/{previous.id}", expect=(204, 404))


class _ContainerOps(_Ops):
    supported = CONTAINER_SUPPORTED
    kind = "Container"

    def replaces(self, changed: set[str]) -> bool:
        unknown = changed - CONTAINER_FORCE_NEW - CONTAINER_UPDATABLE - CONTAINER_STATE_ONLY
        if unknown:
            raise UnsupportedInput(f"Container: no replace rule for {sorted(unknown)}")
        return bool(changed & CONTAINER_FORCE_NEW)

    def update(self, previous: Applied, inputs: dict[str, Any], changed: set[str]) -> tuple[str, dict]:
        if changed & CONTAINER_UPDATABLE:
            body: dict[str, Any] = {}
            if changed & {"restart", "maxRetryCount"}:
                body["RestartPolicy"] = {"Name": inputs.get("restart") or "no",
                                         "MaximumRetryCount": int(inputs.get("maxRetryCount") or 0)}
            if "memory" in changed:
                body["Memory"] = int(inputs.get("memory") or 0) * 1024 * 1024
            left = changed & CONTAINER_UPDATABLE - {"restart", "maxRetryCount", "memory"}
            if left:
                raise UnsupportedInput(f"Container {previous.name}: update of {sorted(left)}")
            self.engine.json("POST", f"/containers/{previous.id}/update", body=body)
        if "mustRun" in changed and inputs.get("mustRun", True):
            self.engine.request("POST", f"/containers/{previous.id}/start", expect=(204, 304))
        return previous.id, {**previous.outputs, **inputs}

    # -- create, as resourceDockerContainerCreate --------------------------------------------
    def create(self, name: str, inputs: dict[str, Any]) -> tuple[str, dict]:
        cname = inputs["name"]
        config: dict[str, Any] = {
            "Image": inputs["image"],
            "Hostname": inputs.get("hostname") or "",
            "Domainname": inputs.get("domainname") or "",
            "Tty": bool(inputs.get("tty")),
            "OpenStdin": bool(inputs.get("stdinOpen")),
            "StopSignal": inputs.get("stopSignal") or "",
        }
        if inputs.get("stopTimeout") is not None:
            config["StopTimeout"] = int(inputs["stopTimeout"])
        if inputs.get("envs"):
            config["Env"] = list(inputs["envs"])
        if inputs.get("command"):
            if any(c == "" for c in inputs["command"]):
                raise RuntimeError(f"Container {name}: values for command may not be empty")
            config["Cmd"] = list(inputs["command"])
        if inputs.get("entrypoints"):
            config["Entrypoint"] = list(inputs["entrypoints"])
        if inputs.get("user"):
            config["User"] = inputs["user"]
        if inputs.get("workingDir"):
            config["WorkingDir"] = inputs["workingDir"]
        exposed, bindings = {}, {}
        for p in inputs.get("ports") or []:
            port = f"{int(p['internal'])}/{p.get('protocol') or 'tcp'}"
            exposed[port] = {}
            bindings.setdefault(port, []).append(
                {"HostIp": p.get("ip") or "0.0.0.0", "HostPort": str(int(p["external"])) if p.get("external") else ""}
            )
        if exposed:
            config["ExposedPorts"] = exposed
        binds, volumes_from, anonymous = [], [], {}
        for v in inputs.get("volumes") or []:
            if v.get("selinuxRelabel"):
                raise UnsupportedInput(f"Container {name}: volumes[].selinuxRelabel")
            if v.get("fromContainer"):
                volumes_from.append(v["fromContainer"])
                continue
            source = v.get("hostPath") or v.get("volumeName")
            if source:
                binds.append(f"{source}:{v['containerPath']}" + (":ro" if v.get("readOnly") else ""))
            else:
                anonymous[v["containerPath"]] = {}
        if anonymous:
            config["Volumes"] = anonymous
        if inputs.get("labels"):
            config["Labels"] = {l["label"]: l["value"] for l in inputs["labels"]}
        hc = inputs.get("healthcheck")
        if hc:
            config["Healthcheck"] = {
                "Test": list(hc.get("tests") or []),
                "Interval": _duration_ns(hc.get("interval")),
                "Timeout": _duration_ns(hc.get("timeout")),
                "StartPeriod": _duration_ns(hc.get("startPeriod")),
                "Retries": int(hc.get("retries") or 0),
            }
            if hc.get("startInterval"):
                raise UnsupportedInput(f"Container {name}: healthcheck.startInterval needs API 1.44")
        mounts = []
        for m in inputs.get("mounts") or []:
            if m.get("bindOptions") or m.get("volumeOptions") or m.get("tmpfsOptions"):
                raise UnsupportedInput(f"Container {name}: mounts[] options")
            mounts.append({"Type": m["type"], "Target": m["target"], "Source": m.get("source") or "",
                           "ReadOnly": bool(m.get("readOnly"))})
        host: dict[str, Any] = {
            "Privileged": bool(inputs.get("privileged")),
            "RestartPolicy": {"Name": inputs.get("restart") or "no", "MaximumRetryCount": int(inputs.get("maxRetryCount") or 0)},
            "Mounts": mounts,
            "AutoRemove": bool(inputs.get("rm")),
            "ReadonlyRootfs": bool(inputs.get("readOnly")),
            "LogConfig": {"Type": inputs.get("logDriver") or "", "Config": dict(inputs.get("logOpts") or {})},
            "NetworkMode": inputs.get("networkMode") or "bridge",
            "Init": bool(inputs.get("init")),
        }
        if inputs.get("tmpfs"):
            host["Tmpfs"] = dict(inputs["tmpfs"])
        if bindings:
            host["PortBindings"] = bindings
        if binds:
            host["Binds"] = binds
        if volumes_from:
            host["VolumesFrom"] = volumes_from
        caps = inputs.get("capabilities")
        if caps:
            host["CapAdd"] = list(caps.get("adds") or [])
            host["CapDrop"] = list(caps.get("drops") or [])
        if inputs.get("securityOpts"):
            host["SecurityOpt"] = list(inputs["securityOpts"])
        if inputs.get("memory"):
            host["Memory"] = int(inputs["memory"]) * 1024 * 1024
        if inputs.get("shmSize"):
            host["ShmSize"] = int(inputs["shmSize"]) * 1024 * 1024
        if inputs.get("hosts"):
            host["ExtraHosts"] = [f"{h['host']}:{h['ip']}" for h in inputs["hosts"]]
        if inputs.get("sysctls"):
            host["Sysctls"] = dict(inputs["sysctls"])
        config["HostConfig"] = host

        created = self.engine.json("POST", "/containers/create", query={"name": cname}, body=config)
        cid = created["Id"]
        try:
            networks = inputs.get("networksAdvanced") or []
            if networks:
                try:
                    self.engine.json("POST", "/networks/bridge/disconnect", body={"Container": cid, "Force": False})
                except DockerApiError as e:
                    if "is not connected" not in e.message:
                        raise
                for n in networks:
                    unsupported = [k for k in ("driverOpts", "gwPriority", "linkLocalIps", "macAddress") if n.get(k)]
                    if unsupported:
                        raise UnsupportedInput(f"Container {name}: networksAdvanced[].{unsupported}")
                    endpoint: dict[str, Any] = {"Aliases": list(n.get("aliases") or [])}
                    ipam = {k: v for k, v in (("IPv4Address", n.get("ipv4Address")), ("IPv6Address", n.get("ipv6Address"))) if v}
                    if ipam:
                        endpoint["IPAMConfig"] = ipam
                    self.engine.json("POST", f"/networks/{n['name']}/connect", body={"Container": cid, "EndpointConfig": endpoint})
            for u in inputs.get("uploads") or []:
                self._upload(name, cid, u)
            if inputs.get("start", True):
                self.engine.request("POST", f"/containers/{cid}/start", expect=(204, 304))
                if inputs.get("wait"):
                    self._wait_healthy(name, cid, int(inputs.get("waitTimeout") or 60))
        except BaseException:
            self.engine.request("DELETE", f"/containers/{cid}", query={"force": "1", "v": "1"}, expect=(204, 404))
            raise
        info = self.engine.inspect("container", cid) or {}
        outputs = {**inputs, "networkDatas": [
            {"networkName": k, "ipAddress": v.get("IPAddress", ""), "gateway": v.get("Gateway", "")}
            for k, v in ((info.get("NetworkSettings") or {}).get("Networks") or {}).items()
        ]}
        return cid, outputs

    def _upload(self, name: str, cid: str, u: Mapping[str, Any]) -> None:
        sources = [k for k in ("content", "contentBase64", "source") if u.get(k)]
        if len(sources) != 1:
            raise RuntimeError(f"Container {name}: an upload needs exactly one of content, content_base64, source")
        if sources[0] == "source":
            raise UnsupportedInput(f"Container {name}: uploads[].source (a file on the machine running Pulumi)")
        data = u["content"].encode() if sources[0] == "content" else base64.b64decode(u["contentBase64"])
        if u.get("permissions"):
            mode = int(u["permissions"], 8)
        else:
            mode = 0o744 if u.get("executable") else 0o644
        buf = io.BytesIO()
        with tarfile.open(fileobj=buf, mode="w") as tar:
            info = tarfile.TarInfo(u["file"].lstrip("/"))
            info.size, info.mode, info.mtime = len(data), mode, int(time.time())
            tar.addfile(info, io.BytesIO(data))
        self.engine.request("PUT", f"/containers/{cid}/archive", query={"path": "/"}, raw=buf.getvalue(),
                            content_type="application/x-tar", expect=(200,))

    def _wait_healthy(self, name: str, cid: str, timeout: int) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            state = (self.engine.inspect("container", cid) or {}).get("State") or {}
            health = state.get("Health")
            if health is None:
                raise RuntimeError(f"Container {name}: wait is set but the container has no healthcheck")
            if health.get("Status") == "healthy":
                return
            time.sleep(1)
        raise RuntimeError(f"Container {name}: failed to be in healthy state in {timeout}s")

    def delete(self, previous: Applied) -> None:
        grace = int(previous.inputs.get("destroyGraceSeconds") or 0)
        self.engine.request("POST", f"/containers/{previous.id}/stop", query={"t": str(grace)},
                            expect=(204, 304, 404), timeout=grace + 60)
        self.engine.request("DELETE", f"/containers/{previous.id}",
                            query={"force": "1", "v": "1" if previous.inputs.get("removeVolumes", True) else "0"},
                            expect=(204, 404))
