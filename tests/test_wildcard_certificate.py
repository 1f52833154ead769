"""WildcardCertificate: *.dev.<domain> by DNS-01, by Traefik's own resolver or by dnsrobocert,
in Traefik's store either way (a review-app router needs only tls=true)."""

from __future__ import annotations

import json

import os
import subprocess
from pathlib import Path

import pytest
import yaml

from conftest import DNS_API_TOKEN, ROOT, is_secret_value, unwrap
from service_files import (
    DYNAMIC_SCHEMA,
    STATIC_SCHEMA,
    bundle,
    container_volumes,
    production,
    schema_errors,
    script_args,
    yaml_file,
)

from components.services.traefik import RELOAD_STAMP, ROUTES_FILE, STATIC_FILE

HOOK = ROOT / "components" / "services" / "scripts" / "dnsrobocert-deploy-hook.sh"
DNSROBOCERT_CREDENTIALS = {"auth_token": "mock-lexicon-token-93Fa"}


def dnsrobocert(**overrides):
    values = dict(wildcardMethod="dnsrobocert", dnsProvider="yandex", dnsCredentials=DNSROBOCERT_CREDENTIALS)
    values.update(overrides)
    return production(**values)


# -- method traefik -----------------------------------------------------------------------------
def test_traefik_method_adds_a_dns01_resolver_with_the_lego_provider():
    files = production(dnsPropagationSeconds=1800).named("traefik-files")
    resolvers = yaml_file(files, STATIC_FILE)["certificatesResolvers"]
    acme = resolvers["letsencrypt-dns"]["acme"]
    assert acme["dnsChallenge"] == {"provider": "cloudflare", "propagation": {"delayBeforeChecks": "1800s"}}, files.urn
    assert acme["email"] == "mail@company.ru" and acme["storage"] == "/letsencrypt/acme.json"


def test_traefik_method_requests_dev_and_star_dev_from_the_dns_resolver():
    files = production().named("traefik-files")
    router = yaml_file(files, ROUTES_FILE)["http"]["routers"]["review-apps"]
    assert router["tls"] == {
        "certResolver": "letsencrypt-dns",
        "domains": [{"main": "dev.company.ru", "sans": ["*.dev.company.ru"]}],
    }, files.urn
    assert router["entryPoints"] == ["websecure"]


def test_traefik_method_writes_credentials_as_400_files_through_secret_stdin():
    step = production().named("wildcard-certificate-credentials")
    assert step.secret("stdin"), step.urn
    assert bundle(step) == {"/srv/traefik/secrets/dns/CF_DNS_API_TOKEN": (0o400, DNS_API_TOKEN)}
    # Files of the other method (and stale names) are removed.
    args = script_args(step)
    assert {"prune=/srv/traefik/secrets/dns", "prune=/srv/letsencrypt-dns/config", "prune=/srv/traefik/certs/wildcard"} <= set(args)


def test_traefik_reads_credentials_through_lego_file_variables():
    container = production().named("traefik-container")
    assert "CF_DNS_API_TOKEN_FILE=/secrets/dns/CF_DNS_API_TOKEN" in container.plain["envs"]
    assert not [e for e in container.plain["envs"] if e.startswith("CF_DNS_API_TOKEN=")], container.urn
    mount = container_volumes(container)["/secrets/dns"]
    assert mount == {"hostPath": "/srv/traefik/secrets/dns", "containerPath": "/secrets/dns", "readOnly": True}


def test_a_credentials_change_restarts_traefik_in_place_through_a_secret_fingerprint():
    run = production()
    container, step = run.named("traefik-container"), run.named("traefik-restart")
    assert container.replacement_trigger is None, f"{container.urn}: never replaced for new credentials"
    assert step.secret("stdin"), f"{step.urn}: the fingerprint of the credentials is a secret"
    assert DNS_API_TOKEN not in json.dumps(unwrap(step.inputs)), step.urn
    other = production(dnsCredentials={"CF_DNS_API_TOKEN": "another-token-value"})
    assert other.named("traefik-restart").plain["stdin"] != step.plain["stdin"], "lego reads credentials at start"
    assert other.named("traefik-container").plain == container.plain, "no label or env carries the credentials"


def test_traefik_method_runs_no_dnsrobocert():
    run = production()
    assert not [r for r in run.registrations if r.name.startswith("wildcard-certificate-container")]
    assert run.outputs["wildcardMethod"] == "traefik"


# -- method dnsrobocert ------------------------------------------------------------------------
def test_dnsrobocert_container_spec():
    run = dnsrobocert()
    image = run.named("wildcard-certificate-image")
    container = run.named("wildcard-certificate-container")
    assert image.plain["name"] == "adferrand/dnsrobocert:3.26.1"
    spec = container.plain
    assert spec["name"] == "dnsrobocert" and spec["restart"] == "always" and spec["image"].startswith("sha256:")
    assert spec["envs"] == ["TZ=Europe/Volgograd"]
    assert container.provider.startswith(run.named("production-docker").urn), container.urn
    volumes = {v["containerPath"]: (v["hostPath"], bool(v.get("readOnly"))) for v in spec["volumes"]}
    assert volumes == {
        "/etc/dnsrobocert": ("/srv/letsencrypt-dns/config", True),
        "/etc/letsencrypt": ("/srv/letsencrypt-dns/letsencrypt", False),
        "/traefik/certs": ("/srv/traefik/certs/wildcard", False),
        "/traefik/reload.stamp": (RELOAD_STAMP, False),
    }, container.urn
    assert run.named("wildcard-certificate-files").urn in container.dependencies


def test_dnsrobocert_config_is_rendered_from_config():
    step = dnsrobocert(acmeStaging="true", dnsPropagationSeconds=1800).named("wildcard-certificate-files")
    mode, text = bundle(step)["/srv/letsencrypt-dns/config/config.yml"]
    config = yaml.safe_load(text)
    assert mode == 0o600 and step.secret("stdin"), step.urn
    assert config["acme"] == {"email_account": "mail@company.ru", "staging": True, "api_version": 2}
    assert config["profiles"] == [{"name": "dns", "provider": "yandex", "provider_options": DNSROBOCERT_CREDENTIALS, "sleep_time": 1800}]
    (cert,) = config["certificates"]
    assert cert["domains"] == ["*.dev.company.ru", "dev.company.ru"] and cert["profile"] == "dns"
    assert cert["name"] == "dev.company.ru-staging", "a staging certificate never stands in for a real one"
    assert cert["deploy_hook"] == "bash /etc/dnsrobocert/deploy-to-traefik.sh"


def test_dnsrobocert_config_uses_only_keys_of_its_schema():
    # dnsrobocert's schema.yml (src/dnsrobocert/schema.yml): every level is additionalProperties: false.
    allowed = {
        "": {"draft", "acme", "profiles", "certificates"},
        "acme": {"email_account", "staging", "api_version", "directory_url", "certs_root_path", "certs_permissions", "crontab_renew"},
        "profiles": {"name", "provider", "provider_options", "sleep_time", "max_checks", "delegated_subdomain", "ttl"},
        "certificates": {"profile", "domains", "name", "pfx", "autorestart", "autocmd", "deploy_hook", "force_renew", "follow_cnames", "reuse_key", "key_type"},
    }
    step = dnsrobocert(dnsPropagationSeconds=60).named("wildcard-certificate-files")
    config = yaml.safe_load(bundle(step)["/srv/letsencrypt-dns/config/config.yml"][1])
    assert set(config) <= allowed[""]
    assert set(config["acme"]) <= allowed["acme"]
    for profile in config["profiles"]:
        assert set(profile) <= allowed["profiles"] and {"name", "provider"} <= set(profile)
    for cert in config["certificates"]:
        assert set(cert) <= allowed["certificates"] and {"domains", "profile"} <= set(cert)


def test_dnsrobocert_deploy_hook_is_installed_and_the_reload_stamp_ensured():
    step = dnsrobocert().named("wildcard-certificate-files")
    mode, text = bundle(step)["/srv/letsencrypt-dns/config/deploy-to-traefik.sh"]
    assert mode == 0o755 and text == HOOK.read_text()
    args = script_args(step)
    assert f"ensure={RELOAD_STAMP}:0644" in args
    assert {"prune=/srv/letsencrypt-dns/config", "prune=/srv/traefik/secrets/dns"} <= set(args), step.urn


def test_dnsrobocert_method_puts_the_delivered_files_in_traefiks_store():
    run = dnsrobocert()
    files = run.named("traefik-files")
    routes = yaml_file(files, ROUTES_FILE)
    assert routes["tls"]["certificates"] == [
        {"certFile": "/certs/wildcard/fullchain.pem", "keyFile": "/certs/wildcard/privkey.pem", "stores": ["default"]}
    ], files.urn
    assert schema_errors(DYNAMIC_SCHEMA, routes) == []
    static = yaml_file(files, STATIC_FILE)
    assert "letsencrypt-dns" not in static["certificatesResolvers"] and schema_errors(STATIC_SCHEMA, static) == []
    assert "wildcard-certificate" not in routes["http"]["routers"]
    # /srv/traefik/certs (holding wildcard/) is Traefik's /certs; the stamp sits in the watched folder.
    assert container_volumes(run.named("traefik-container"))["/certs"]["hostPath"] == "/srv/traefik/certs"
    assert RELOAD_STAMP.startswith("/srv/traefik/dynamic/")
    assert run.named("traefik-container").replacement_trigger is None


def test_dnsrobocert_credential_names_are_lexicon_options():
    with pytest.raises(Exception, match=r"delivery:dnsCredentials\.CF_DNS_API_TOKEN: expected the name to be a Lexicon provider option"):
        production(wildcardMethod="dnsrobocert")


# -- the deploy hook, run for real --------------------------------------------------------------
def run_hook(tmp_path: Path, lineage: Path) -> subprocess.CompletedProcess:
    env = dict(
        os.environ,
        RENEWED_LINEAGE=str(lineage),
        TRAEFIK_CERTS_DIR=str(tmp_path / "certs"),
        TRAEFIK_RELOAD_STAMP=str(tmp_path / "reload.stamp"),
    )
    return subprocess.run(["bash", str(HOOK)], env=env, capture_output=True, text=True)


def make_lineage(tmp_path: Path, cert: str, key: str) -> Path:
    archive = tmp_path / "archive"
    live = tmp_path / "live" / "dev.company.ru"
    archive.mkdir(exist_ok=True)
    live.mkdir(parents=True, exist_ok=True)
    for name, content in (("fullchain1.pem", cert), ("privkey1.pem", key)):
        (archive / name).write_text(content)
    for link, target in (("fullchain.pem", "fullchain1.pem"), ("privkey.pem", "privkey1.pem")):
        (live / link).unlink(missing_ok=True)
        (live / link).symlink_to(archive / target)
    return live


def test_deploy_hook_delivers_the_certificate_and_pokes_traefik_in_place(tmp_path: Path):
    (tmp_path / "certs").mkdir()
    stamp = tmp_path / "reload.stamp"
    stamp.write_text("")
    inode = stamp.stat().st_ino
    result = run_hook(tmp_path, make_lineage(tmp_path, "CERT-1\n", "KEY-1\n"))
    assert result.returncode == 0, result.stderr
    assert (tmp_path / "certs" / "fullchain.pem").read_text() == "CERT-1\n"
    assert (tmp_path / "certs" / "privkey.pem").read_text() == "KEY-1\n"
    assert not (tmp_path / "certs" / "privkey.pem").is_symlink()
    assert (tmp_path / "certs" / "privkey.pem").stat().st_mode & 0o077 == 0
    assert stamp.read_text().strip(), "the stamp is rewritten"
    assert stamp.stat().st_ino == inode, "in place: the stamp is a single-file bind mount"


def test_deploy_hook_keeps_the_old_certificate_when_the_new_one_is_empty(tmp_path: Path):
    (tmp_path / "certs").mkdir()
    (tmp_path / "certs" / "fullchain.pem").write_text("OLD\n")
    (tmp_path / "reload.stamp").write_text("")
    result = run_hook(tmp_path, make_lineage(tmp_path, "", "KEY\n"))
    assert result.returncode != 0
    assert (tmp_path / "certs" / "fullchain.pem").read_text() == "OLD\n"
    assert (tmp_path / "reload.stamp").read_text() == ""


# -- outputs ------------------------------------------------------------------------------------
@pytest.mark.parametrize("method", ["traefik", "dnsrobocert"])
def test_wildcard_domain_is_exported_plain(method):
    run = production() if method == "traefik" else dnsrobocert()
    assert run.outputs["wildcardDomain"] == "dev.company.ru"
    assert "wildcardDomain" not in run.secret_outputs


def test_exec_provider_installs_the_script_and_points_lego_at_it():
    cfg = {"dnsProvider": "exec", "dnsExecScript": "#!/bin/sh\necho exec-script-MOCK\n"}
    from conftest import PRODUCTION_SECRETS, production_config, run_stack

    config = production_config(**cfg)
    config.pop("dnsCredentials")
    run = run_stack(config, secrets=PRODUCTION_SECRETS + ("dnsExecScript",))
    step = run.named("wildcard-certificate-credentials")
    assert step.secret("stdin"), step.urn
    assert bundle(step) == {"/srv/traefik/secrets/dns/exec.sh": (0o500, cfg["dnsExecScript"])}
    envs = run.named("traefik-container").plain["envs"]
    assert "EXEC_PATH=/secrets/dns/exec.sh" in envs
    assert not [e for e in envs if "exec-script-MOCK" in e]
