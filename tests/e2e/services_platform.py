"""Both stacks of the README on three disposable hosts, with real Traefik, a real ACME CA and
DNS, the GitLab and gitlab-runner stand-ins: the bring-up that tests/e2e/test_services_e2e.py
asserts on and scripts/measure_services.py times.

`bring_up(...)` starts the hosts, pebble and challtestsrv, builds the images, then runs the
production stack and the staging stack (its StackReference fed with the production run's
outputs), exactly as a user would with `pulumi up` per stack. The stack configs are the
example stacks of tests/conftest.py with the keys a user sets for this environment:

* `dockerPackage: docker.io` (Docker's apt repository is out of reach here);
* `acmeServer` = pebble, `acmeCaCertificate` = pebble's listener CA + its issuing root;
* `dnsProvider: exec` + `dnsExecScript` (lego's exec provider sets the TXT record through
  challtestsrv's API), `dnsResolvers` = challtestsrv, `dnsPropagationCheck: false` (the test
  DNS answers no SOA queries, which lego's check needs);
* the domain `platform.test`; every name resolves to Production (challtestsrv's default A).

A `WildcardVariant` replaces those DNS-01 keys with another way to the wildcard certificate
(tests/e2e/test_dnsrobocert_e2e.py: `wildcardMethod: dnsrobocert` with Lexicon's ddns provider
against BIND); `stacks` limits the run to the production stack when staging is not needed.
"""

from __future__ import annotations

import json
import os
import subprocess
import threading
import time
from dataclasses import dataclass, field
from typing import Any, Callable, Optional, Protocol, Sequence

from .acme import AcmeServer, free_port
from .conftest import DisposableHost, start_host, stop_host
from .dockerd import PrivateDockerd
from .images import ECHO_IMAGE, ImageSpec, ImageStore, build, standard_images
from .platform_program import HOST_KEY_TYPE, OPERATOR_ADDRESS
from .services_harness import Platform, StackUp, run_stack_on

DOMAIN = "platform.test"
TIMEZONE = "Europe/Volgograd"
ROLES = {
    "production": ("traefik", "production-runner"),
    "services": ("gitlab",),
    "staging": ("review-apps", "staging-runner"),
}
PUBLISHED = {"production": (80, 443, 1023), "services": (), "staging": ()}
APP_PORT = 8000
GITLAB_API_TOKEN = "glpat-e2eMOCKtoken0123456789"
#: traefikRateLimits.gitlabSignIn of the e2e platform: 5 per 10 s, bursts of 5.
SIGN_IN_LIMIT = {"average": 5, "period": 10, "burst": 5}
#: The GitLab stand-in reads this file (its /etc/gitlab) to decide when it turns ready.
STANDIN_CONFIG = "/srv/services/gitlab/config/gitlab-standin.json"
STANDIN_READY = "/srv/services/gitlab/config/gitlab-standin.ready"

EXEC_SCRIPT = """#!/bin/sh
# lego's exec provider (dnsProvider exec): $1 is present or cleanup, $2 the FQDN, $3 the value.
# Sets the TXT record through pebble-challtestsrv's HTTP API (BusyBox/GNU wget, as in Traefik's image).
set -eu
api=%(api)s
case "$1" in
  present) wget -q -O /dev/null --post-data "{\\"host\\":\\"$2\\",\\"value\\":\\"$3\\"}" "$api/set-txt" ;;
  cleanup) wget -q -O /dev/null --post-data "{\\"host\\":\\"$2\\"}" "$api/clear-txt" ;;
  *) echo "unknown mode $1" >&2; exit 2 ;;
esac
"""


class WildcardVariant(Protocol):
    """Another DNS-01 set-up than lego's exec provider through challtestsrv."""

    images: Sequence[ImageSpec]
    """Images it needs besides the standard ones (built with them)."""

    def start_dns(self, bridge_ip: str, forward_port: int, production_ip: str) -> str:
        """Start its DNS (forwarding what it does not serve to challtestsrv, which listens on
        `forward_port` of `bridge_ip`); return the host:port pebble resolves through."""

    def config(self) -> dict[str, Any]:
        """The production stack's DNS-01 keys (they replace the exec provider's)."""

    def resolver(self) -> Optional[str]:
        """The nameserver of Production's /etc/resolv.conf (as a server's resolver knows the
        zone), or None to leave it."""

    def stop(self) -> None: ...


def bcrypt_htpasswd(user: str, password: str) -> str:
    import bcrypt  # paramiko's dependency

    return f"{user}:{bcrypt.hashpw(password.encode(), bcrypt.gensalt(rounds=5)).decode()}"


@dataclass
class Services:
    """The running platform and what the tests need to talk to it."""

    daemon: PrivateDockerd
    hosts: dict[str, DisposableHost]
    platform: Platform
    acme: AcmeServer
    production_config: dict[str, Any]
    staging_config: dict[str, Any]
    secrets: tuple[str, ...]
    dashboard_password: str
    variant: Optional[WildcardVariant] = None
    ups: list[StackUp] = field(default_factory=list)
    timings: dict[str, float] = field(default_factory=dict)
    ready_at: Optional[float] = None
    """When the GitLab stand-in was switched to ready (time.monotonic())."""

    @property
    def production(self) -> DisposableHost:
        return self.hosts["production"]

    def up(self, stack: str) -> StackUp:
        """One `pulumi up` of a stack (production first: staging reads its outputs)."""
        if stack == "production":
            result = run_stack_on(self.platform, "production", self.production_config, self.secrets)
        else:
            prod = next(u for u in reversed(self.ups) if u.stack == "production")
            result = run_stack_on(
                self.platform, "staging", self.staging_config, self.secrets,
                stack_outputs={self.staging_config["productionStack"]: prod.outputs},
                secret_output_names={self.staging_config["productionStack"]: sorted(prod.secret_outputs)},
            )
        self.ups.append(result)
        return result

    def stop(self) -> None:
        self.acme.stop()
        if self.variant is not None:
            self.variant.stop()
        if os.environ.get("DELIVERY_E2E_KEEP") == "1":
            return
        for h in self.hosts.values():
            stop_host(self.daemon, h.container, h.volume)


def host_entry(host: DisposableHost, name: str) -> dict[str, Any]:
    return {"name": name, "address": host.ip, "hostKey": host.host_keys[HOST_KEY_TYPE], "roles": list(ROLES[name])}


EXEC_DNS_KEYS = ("dnsProvider", "dnsExecScript", "dnsResolvers", "dnsPropagationCheck")


def stack_configs(hosts: dict[str, DisposableHost], acme: AcmeServer, private_key: str, dashboard_users: str,
                  wildcard: Optional[dict[str, Any]] = None) -> tuple[dict, dict]:
    """Both stacks' configs; `wildcard` replaces the exec provider's DNS-01 keys."""
    from conftest import production_config, staging_config  # tests/conftest.py

    common = {
        "domain": DOMAIN,
        "timezone": TIMEZONE,
        "dockerPackage": "docker.io",
        "sshPrivateKey": private_key,
        "gitlabToken": GITLAB_API_TOKEN,
        "gitlabIntegration": "enabled",
        "runnerScope": {"group": "group"},
        # The operator (these tests) reaches the Docker APIs from the harness bridge's gateway,
        # and its many probes (404s while a route appears, 401s of the dashboard) must not get
        # it banned: the allow-list a user gives an office or CI address.
        "dockerApiAllowedSources": [OPERATOR_ADDRESS],
        "fail2banIgnoreIps": [OPERATOR_ADDRESS],
    }
    production = production_config(
        **common,
        hosts=[host_entry(hosts["production"], "production"), host_entry(hosts["services"], "services")],
        reviewAppsDaemon={"name": "staging", "address": hosts["staging"].ip},
        acmeEmail="ops@platform.test",
        acmeServer=acme.directory_url,
        acmeCaCertificate=acme.ca_bundle_pem,
        dnsProvider="exec",
        dnsExecScript=EXEC_SCRIPT % {"api": acme.api_url},
        dnsResolvers=[acme.dns_address],
        dnsPropagationCheck="false",
        traefikDashboardUsers=dashboard_users,
        productionApps=[{"name": "demo", "host": f"app.{DOMAIN}", "url": f"http://{hosts['production'].ip}:{APP_PORT}"}],
        gitlabReadyTimeoutSeconds=300,
        # Small enough for a burst to exceed, quick to refill (other tests ask for /users/sign_in).
        traefikRateLimits={"gitlabSignIn": SIGN_IN_LIMIT},
    )
    for key in ("dockerVersion", "dnsCredentials"):
        production.pop(key, None)
    if wildcard is not None:
        for key in EXEC_DNS_KEYS:
            production.pop(key)
        production.update(wildcard)
    staging = staging_config(**common, hosts=[host_entry(hosts["staging"], "staging")])
    staging.pop("dockerVersion", None)
    return production, staging


def bring_up(daemon: PrivateDockerd, host_image: str, log: Callable[[str], None], *, gate_delay: Optional[float] = 20.0,
             variant: Optional[WildcardVariant] = None, stacks: Sequence[str] = ("production", "staging")) -> Services:
    """Start everything and run the stacks once (production first). The GitLab stand-in reports
    "not ready" until `gate_delay` seconds after its container runs (the readiness gate must
    hold the API back; None: it turns ready 3 s after start, its default). `variant`: another
    DNS-01 set-up (stopped with the Services)."""
    from conftest import PRODUCTION_SECRETS

    t0 = time.monotonic()
    specs = standard_images("v3.6.15", "18.5.1-ce.0", "v18.5.0") + list(variant.images if variant is not None else ())
    images = build(daemon, specs, log=log)
    timings = {"images": time.monotonic() - t0}
    hosts: dict[str, DisposableHost] = {}
    acme: Optional[AcmeServer] = None
    try:
        t1 = time.monotonic()
        for name in ROLES:
            hosts[name] = start_host(daemon, host_image, name_prefix=f"delivery-e2e-{name}", publish=PUBLISHED[name], hostname=name)
            log(f"host {name}: {hosts[name].ip}")
        # One SSH key for the platform, as users have: the production host's key, authorised everywhere.
        key_owner = hosts["production"]
        for h in hosts.values():
            h.exec("cat >> /root/.ssh/authorized_keys", stdin=key_owner.public_key + "\n")
        bridge_ip = daemon.bridge_cidr.split("/")[0]
        if variant is None:
            acme = AcmeServer(bridge_ip, hosts["production"].ip).start()
        else:
            forward_port = free_port(bridge_ip)
            pebble_dns = variant.start_dns(bridge_ip, forward_port, hosts["production"].ip)
            acme = AcmeServer(bridge_ip, hosts["production"].ip, dns_port=forward_port, dns_server=pebble_dns).start()
            nameserver = variant.resolver()
            if nameserver is not None:
                hosts["production"].exec(f"printf 'nameserver %s\\n' {nameserver} > /etc/resolv.conf")
        timings["hosts"] = time.monotonic() - t1
        log(f"pebble {acme.directory_url} (dns {acme.dns_server or acme.dns_address}), challtestsrv dns {acme.dns_address} api {acme.api_url}")
        password = "e2e-dashboard-password"
        production, staging = stack_configs(hosts, acme, key_owner.private_key_pem, bcrypt_htpasswd("admin", password),
                                            wildcard=variant.config() if variant is not None else None)
        secrets = tuple(PRODUCTION_SECRETS) + ("dnsExecScript",)
        services = Services(daemon, hosts, Platform(hosts, images, log=log), acme, production, staging, secrets, password,
                            variant=variant, timings=timings)
        flipper = None
        if gate_delay is not None:
            # The GitLab stand-in starts "not ready": the readiness gate must hold every API call back.
            hosts["services"].exec(f"install -d -m 0755 /srv/services/gitlab/config && echo '{{\"ready\": false}}' > {STANDIN_CONFIG}")
            flipper = threading.Thread(target=_turn_ready_later, args=(services, gate_delay), daemon=True)
            flipper.start()
        for stack in stacks:
            t2 = time.monotonic()
            services.up(stack)
            timings[f"{stack}_up"] = time.monotonic() - t2
            if stack == "production" and flipper is not None:
                flipper.join(timeout=5)
        timings["bare_to_stacks_up"] = time.monotonic() - t1
        return services
    except BaseException:
        if acme is not None:
            acme.stop()
        if variant is not None:
            variant.stop()
        if os.environ.get("DELIVERY_E2E_KEEP") != "1":
            for h in hosts.values():
                stop_host(daemon, h.container, h.volume)
        raise


def _turn_ready_later(services: Services, delay: float, timeout: float = 900) -> None:
    """Once the GitLab container runs on Services, wait `delay` seconds, then make the stand-in
    report ready (the file it watches), recording when."""
    host = services.hosts["services"]
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            p = host.exec("docker inspect -f '{{.State.Running}}' gitlab 2>/dev/null || true", check=False, timeout=30)
        except subprocess.TimeoutExpired:
            # A loaded machine (other sessions' e2e runs) can hold one probe longer than that:
            # probe again (the loop is bounded) instead of ending the thread, which left the
            # stand-in "not ready" for good and failed the gate.
            continue
        if p.stdout.strip() == "true":
            break
        time.sleep(1)
    else:
        return
    time.sleep(delay)
    host.exec(f"touch {STANDIN_READY}", timeout=300)
    services.ready_at = time.monotonic()


def load_image(engine, images: ImageStore, name: str, tag: Optional[str] = None) -> None:
    """Put an image of the harness's store into a host's daemon (as a registry pull would)."""
    if engine.inspect("image", name) is None:
        engine.load_image(images.export(name))
    if tag is not None:
        repo, _, t = tag.rpartition(":")
        engine.request("POST", f"/images/{name}/tag", query={"repo": repo, "tag": t}, expect=(201,))


def start_echo(engine, images: ImageStore, name: str, *, labels: dict[str, str], publish: Optional[tuple[str, int]] = None,
               app_name: Optional[str] = None) -> str:
    """An echo container on a host's daemon (not the program's): its ID."""
    load_image(engine, images, ECHO_IMAGE)
    host_config: dict[str, Any] = {}
    config: dict[str, Any] = {"Image": ECHO_IMAGE, "Labels": labels, "Env": [f"APP_NAME={app_name or name}"]}
    if publish is not None:
        ip, port = publish
        config["ExposedPorts"] = {"8080/tcp": {}}
        host_config["PortBindings"] = {"8080/tcp": [{"HostIp": ip, "HostPort": str(port) if port else ""}]}
    config["HostConfig"] = host_config
    created = engine.json("POST", "/containers/create", query={"name": name}, body=config)
    engine.request("POST", f"/containers/{created['Id']}/start", expect=(204,))
    return created["Id"]


def container_states(engine) -> dict[str, tuple[str, str]]:
    """name -> (ID, StartedAt) of every container on a daemon."""
    out = {}
    for c in engine.containers():
        info = engine.inspect("container", c["Id"]) or {}
        out[c["Names"][0].lstrip("/")] = (c["Id"], (info.get("State") or {}).get("StartedAt", ""))
    return out


def dump(obj: Any) -> str:
    return json.dumps(obj, indent=1, sort_keys=True, default=str)
