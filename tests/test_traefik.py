"""Traefik v3 on the traefik host, as two instances (docs/services.md): the edge's rendered
static and dynamic config (valid against the published v3 schemas, directly and as the program
sends them), entrypoints, ACME, routes, the review forwarding router, TLS options, middlewares,
the dashboard, the container; the review instance's static config, certificate, container."""

from __future__ import annotations

import re

import pytest

from conftest import HOST_KEY, DASHBOARD_USERS, PRODUCTION_SECRETS, ca_certificate_pem, fake_pem, production_config, run_stack
from service_files import (
    DYNAMIC_SCHEMA,
    STATIC_SCHEMA,
    all_rules,
    bundle,
    container_labels,
    container_volumes,
    is_v3_rule,
    production,
    schema_errors,
    script_args,
    yaml_file,
)

from components.config.services import AcmeSettings, Hostnames, ProductionApp, WildcardSettings
from components.services.gitlab_server import GitLabUpstream
from components.services.review_traefik import STATIC_FILE as REVIEW_STATIC_FILE
from components.services.review_traefik import review_static_config
from components.services.traefik import (
    DASHBOARD_FILE,
    LEGACY_STAGING_CERTS,
    MOZILLA_INTERMEDIATE_CIPHERS,
    REVIEW_SUBNET,
    ROUTES_FILE,
    STATIC_FILE,
    STATIC_HASH_LABEL,
    STATIC_TOP_LEVEL_KEYS,
    EdgeSpec,
    WildcardParts,
    dashboard_config,
    edge_dynamic_config,
    edge_static_config,
    review_host_regexp,
)
from components.services.wildcard_certificate import dnsrobocert_dynamic, review_tls, traefik_resolvers

HOSTNAMES = Hostnames("company.ru")
ACME_CA = ca_certificate_pem("test ACME CA")


def spec(**overrides) -> EdgeSpec:
    values = dict(
        hostnames=HOSTNAMES,
        acme_email="mail@company.ru",
        gitlab=GitLabUpstream.published("192.168.88.2"),
        production_apps=(ProductionApp("demo", "company.ru", "http://192.168.88.1:8000"),),
        dashboard=True,
        review_upstream="http://traefik-review:80",
        wildcard=WildcardParts(
            resolvers=traefik_resolvers(WildcardSettings(dns_provider="cloudflare", propagation_seconds=120), "mail@company.ru", AcmeSettings()),
            review_tls=review_tls(HOSTNAMES),
        ),
    )
    values.update(overrides)
    return EdgeSpec(**values)


def top_level_problems(config: dict) -> list[str]:
    """traefik-v3.json does not police top-level keys: this check does."""
    return sorted(set(config) - STATIC_TOP_LEVEL_KEYS)


def review_static(run=None) -> dict:
    return yaml_file((run or production()).named("traefik-review-files"), REVIEW_STATIC_FILE)


# -- schemas -------------------------------------------------------------------------------
def test_edge_static_config_validates_against_the_v3_schema():
    assert schema_errors(STATIC_SCHEMA, edge_static_config(spec())) == []


def test_review_static_config_validates_against_the_v3_schema():
    config = review_static_config("tcp://192.168.88.3:2376")
    assert schema_errors(STATIC_SCHEMA, config) == []
    assert top_level_problems(config) == []


def test_static_config_has_only_known_top_level_keys():
    assert top_level_problems(edge_static_config(spec())) == []


def test_top_level_key_check_catches_a_misspelt_key():
    config = edge_static_config(spec())
    config["entrypoints"] = config.pop("entryPoints")
    assert schema_errors(STATIC_SCHEMA, config) == [], "the schema lets this through; the key check must not"
    assert top_level_problems(config) == ["entrypoints"]


def test_schema_check_catches_a_misspelt_nested_key():
    config = edge_static_config(spec())
    config["entryPoints"]["web"]["adress"] = ":80"
    assert schema_errors(STATIC_SCHEMA, config), "a misspelt entrypoint key must be rejected"


@pytest.mark.parametrize("wildcard", ["traefik", "dnsrobocert"])
def test_dynamic_config_validates_against_the_file_provider_schema(wildcard):
    parts = (
        WildcardParts(review_tls=review_tls(HOSTNAMES)) if wildcard == "traefik"
        else WildcardParts(dynamic=dnsrobocert_dynamic(), review_tls={})
    )
    assert schema_errors(DYNAMIC_SCHEMA, edge_dynamic_config(spec(wildcard=parts))) == []


def test_dashboard_config_validates_against_the_file_provider_schema():
    assert schema_errors(DYNAMIC_SCHEMA, dashboard_config(spec(), ["admin:$2y$05$hash"])) == []


@pytest.mark.parametrize("step, path", [("traefik-files", STATIC_FILE), ("traefik-review-files", REVIEW_STATIC_FILE)])
def test_static_files_the_program_sends_validate(step, path):
    files = production().named(step)
    static = yaml_file(files, path)
    assert schema_errors(STATIC_SCHEMA, static) == [], files.urn
    assert top_level_problems(static) == [], files.urn


@pytest.mark.parametrize("path", [ROUTES_FILE, DASHBOARD_FILE])
def test_dynamic_files_the_program_sends_validate(path):
    files = production().named("traefik-files")
    assert schema_errors(DYNAMIC_SCHEMA, yaml_file(files, path)) == [], f"{files.urn}: {path}"


def test_every_rule_uses_v3_syntax():
    run = production()
    files = run.named("traefik-files")
    rules = {**all_rules(yaml_file(files, ROUTES_FILE)), **all_rules(yaml_file(files, DASHBOARD_FILE))}
    assert {"http.gitlab", "http.registry", "http.app-demo", "http.dashboard", "tcp.gitlab-ssh", "http.review-apps"} <= set(rules)
    bad = {name: rule for name, rule in rules.items() if not is_v3_rule(rule)}
    assert not bad, f"{files.urn}: not v3 rules: {bad}"


def test_v3_rule_check_rejects_v2_forms():
    assert is_v3_rule("Host(`a.company.ru`) && PathPrefix(`/api`)")
    assert is_v3_rule(r"HostRegexp(`^[a-z0-9]+\.dev\.company\.ru$`)")
    assert not is_v3_rule("Host(`a.company.ru`, `b.company.ru`)")
    assert not is_v3_rule("HostRegexp(`{sub:[a-z]+}.company.ru`)")


# -- the edge: entrypoints, no Docker provider ---------------------------------------------------
def test_entrypoints_are_web_websecure_and_gitlab_ssh():
    files = production().named("traefik-files")
    eps = yaml_file(files, STATIC_FILE)["entryPoints"]
    assert eps["web"]["address"] == ":80", files.urn
    assert eps["websecure"]["address"] == ":443", files.urn
    assert eps["gitlab-ssh"]["address"] == ":1023", files.urn


def test_the_edge_reads_no_container_labels():
    static = yaml_file(production().named("traefik-files"), STATIC_FILE)
    assert set(static["providers"]) == {"file"}, "only files this program renders may define edge routes"


def test_the_edge_holds_no_key_of_a_docker_daemon():
    run = production()
    files = bundle(run.named("traefik-files"))
    assert not [p for p in files if "/certs/staging/" in p or p.endswith("key.pem")], sorted(files)
    # ... and the files an earlier version installed there are removed.
    for path in LEGACY_STAGING_CERTS:
        assert f"remove={path}" in script_args(run.named("traefik-files"))


def test_web_redirects_to_https_and_still_answers_the_http_challenge():
    static = yaml_file(production().named("traefik-files"), STATIC_FILE)
    redirect = static["entryPoints"]["web"]["http"]["redirections"]["entryPoint"]
    assert redirect == {"to": "websecure", "scheme": "https", "permanent": True}
    # Traefik gives the ACME challenge router the highest priority, above the redirection.
    assert static["certificatesResolvers"]["letsencrypt"]["acme"]["httpChallenge"] == {"entryPoint": "web"}
    assert "priority" not in redirect


def test_nothing_listens_on_8080_and_the_api_is_not_insecure():
    run = production()
    static = yaml_file(run.named("traefik-files"), STATIC_FILE)
    addresses = [ep["address"] for ep in static["entryPoints"].values()]
    assert not [a for a in addresses if a.endswith(":8080")], addresses
    assert static["api"] == {"dashboard": True, "insecure": False}
    container = run.named("traefik-container")
    published = sorted(int(p["external"]) for p in container.plain["ports"])
    assert published == [80, 443, 1023], container.urn


def test_static_config_matches_the_review_app_contract():
    contract = pytest.importorskip("templates.review_app_contract")
    run = production()
    static = yaml_file(run.named("traefik-files"), STATIC_FILE)
    for name, address in contract.ENTRYPOINT_ADDRESSES.items():
        assert static["entryPoints"][name]["address"] == address
    review = review_static(run)
    assert review["entryPoints"][contract.REVIEW_ENTRYPOINT]["address"] == contract.REVIEW_ENTRYPOINT_ADDRESS
    docker = review["providers"]["docker"]
    assert docker["exposedByDefault"] is contract.DOCKER_PROVIDER_EXPOSED_BY_DEFAULT
    assert docker["useBindPortIP"] is contract.DOCKER_PROVIDER_USE_BIND_PORT_IP
    assert docker["endpoint"] == f"{contract.DOCKER_ENDPOINT_SCHEME}192.168.88.3:{contract.DOCKER_ENDPOINT_PORT}"
    assert set(docker["tls"]) == set(contract.DOCKER_PROVIDER_TLS_KEYS)


# -- the review forwarding router ---------------------------------------------------------------
def test_review_hosts_are_forwarded_to_the_review_instance_with_the_wildcard_certificate():
    http = yaml_file(production().named("traefik-files"), ROUTES_FILE)["http"]
    router = http["routers"]["review-apps"]
    assert router["entryPoints"] == ["websecure"]
    assert router["rule"] == f"HostRegexp(`{review_host_regexp(HOSTNAMES)}`)"
    assert router["tls"] == {"certResolver": "letsencrypt-dns",
                             "domains": [{"main": "dev.company.ru", "sans": ["*.dev.company.ru"]}]}
    assert http["services"]["review-apps"]["loadBalancer"]["servers"] == [{"url": "http://traefik-review:80"}]


@pytest.mark.parametrize("host, forwarded", [
    ("feature-login.dev.company.ru", True),
    ("a.dev.company.ru", True),
    ("x" * 63 + ".dev.company.ru", True),
    ("dev.company.ru", False),
    ("a.b.dev.company.ru", False),
    ("gitlab.company.ru", False),
    ("registry.company.ru", False),
    ("company.ru", False),
    ("-a.dev.company.ru", False),
    ("a-.dev.company.ru", False),
    ("x" * 64 + ".dev.company.ru", False),
    ("a.dev.company.ru.evil.org", False),
    ("a.devXcompany.ru", False),
])
def test_the_review_regexp_matches_one_label_under_the_review_domain_only(host, forwarded):
    # Go's RE2 and Python agree on this subset (anchors, classes, bounded repetition).
    assert bool(re.fullmatch(review_host_regexp(HOSTNAMES), host)) is forwarded


# -- the review instance ----------------------------------------------------------------------
def test_review_instance_watches_staging_over_mutual_tls_and_nothing_else():
    review = review_static()
    assert set(review["providers"]) == {"docker"}
    assert review["providers"]["docker"] == {
        "endpoint": "tcp://192.168.88.3:2376",
        "tls": {"ca": "/certs/ca.pem", "cert": "/certs/cert.pem", "key": "/certs/key.pem"},
        "exposedByDefault": False,
        "useBindPortIP": True,
        "watch": True,
    }
    assert "api" not in review and "certificatesResolvers" not in review


def test_review_instance_has_one_plain_entrypoint_trusting_only_the_edges_network():
    eps = review_static()["entryPoints"]
    assert set(eps) == {"review", "ping"}
    assert eps["review"] == {"address": ":80", "forwardedHeaders": {"trustedIPs": [REVIEW_SUBNET]}}
    assert eps["ping"]["address"].startswith("127.0.0.1:")


def test_review_instance_uses_the_staging_domains_client_certificate():
    files = production().named("traefik-review-files")
    sent = bundle(files)
    assert sent["/srv/traefik/review/certs/ca.pem"] == (0o444, fake_pem("CERTIFICATE", "docker-staging-ca-ca-cert"))
    assert sent["/srv/traefik/review/certs/cert.pem"] == (0o444, fake_pem("CERTIFICATE", "docker-staging-ca-client-review-traefik-cert"))
    assert sent["/srv/traefik/review/certs/key.pem"] == (0o400, fake_pem("EC PRIVATE KEY", "docker-staging-ca-client-review-traefik-key"))
    assert files.secret("stdin"), f"{files.urn}: the client key must travel in secret stdin"


def test_review_container_publishes_nothing_and_sits_on_the_internal_and_egress_networks():
    run = production()
    container = run.named("traefik-review-container")
    assert container.plain["name"] == "traefik-review"
    assert not container.plain.get("ports"), container.urn
    networks = {n["name"]: n.get("aliases", []) for n in container.plain["networksAdvanced"]}
    assert networks == {"delivery-review": ["traefik-review"], "delivery-review-egress": []}
    review_net = run.named("review-network")
    assert review_net.plain["internal"] is True
    assert review_net.plain["ipamConfigs"] == [{"subnet": REVIEW_SUBNET}]


def test_edge_is_on_its_own_network_and_the_internal_one():
    container = production().named("traefik-container")
    assert {n["name"] for n in container.plain["networksAdvanced"]} == {"delivery-edge", "delivery-review"}


def test_another_watched_daemon_replaces_the_review_container():
    before = production()
    after = production(reviewAppsDaemon={"name": "staging", "address": "192.168.88.4"})
    assert container_labels(before.named("traefik-review-container"))[STATIC_HASH_LABEL] != \
        container_labels(after.named("traefik-review-container"))[STATIC_HASH_LABEL]


def test_file_provider_watches_the_dynamic_folder_the_container_mounts():
    run = production()
    static = yaml_file(run.named("traefik-files"), STATIC_FILE)
    assert static["providers"]["file"] == {"directory": "/etc/traefik/dynamic", "watch": True}
    # A folder, not a file: a file replaced by rename would stay stale in a file bind mount.
    mount = container_volumes(run.named("traefik-container"))["/etc/traefik/dynamic"]
    assert mount == {"hostPath": "/srv/traefik/dynamic", "containerPath": "/etc/traefik/dynamic", "readOnly": True}


# -- ACME -------------------------------------------------------------------------------------
def test_acme_resolver_uses_lets_encrypt_and_a_600_acme_json():
    run = production()
    files = run.named("traefik-files")
    acme = yaml_file(files, STATIC_FILE)["certificatesResolvers"]["letsencrypt"]["acme"]
    assert acme["email"] == "mail@company.ru"
    assert acme["caServer"] == "https://acme-v02.api.letsencrypt.org/directory"
    assert acme["storage"] == "/letsencrypt/acme.json"
    assert "caCertificates" not in acme
    # Created empty with mode 600 when missing, never overwritten (Traefik owns its content).
    assert "ensure=/srv/traefik/letsencrypt/acme.json:0600" in script_args(files), files.urn
    assert "/srv/traefik/letsencrypt/acme.json" not in bundle(files)
    mount = container_volumes(run.named("traefik-container"))["/letsencrypt"]
    assert mount["hostPath"] == "/srv/traefik/letsencrypt" and not mount.get("readOnly")


def test_acme_staging_switches_only_the_wildcard_certificate():
    files = production(acmeStaging="true").named("traefik-files")
    resolvers = yaml_file(files, STATIC_FILE)["certificatesResolvers"]
    assert resolvers["letsencrypt-dns"]["acme"]["caServer"] == "https://acme-staging-v02.api.letsencrypt.org/directory"
    assert resolvers["letsencrypt-dns"]["acme"]["storage"] == "/letsencrypt/acme-staging.json"
    # GitLab, the registry and the apps keep certificates every client trusts.
    assert resolvers["letsencrypt"]["acme"]["caServer"] == "https://acme-v02.api.letsencrypt.org/directory"
    assert resolvers["letsencrypt"]["acme"]["storage"] == "/letsencrypt/acme.json"
    args = script_args(files)
    assert "ensure=/srv/traefik/letsencrypt/acme-staging.json:0600" in args
    assert "ensure=/srv/traefik/letsencrypt/acme.json:0600" in args


def test_acme_server_and_ca_certificate_apply_to_every_resolver():
    run = production(acmeServer="https://ca.internal.example:9000/acme/acme/directory", acmeCaCertificate=ACME_CA)
    files = run.named("traefik-files")
    resolvers = yaml_file(files, STATIC_FILE)["certificatesResolvers"]
    for name in ("letsencrypt", "letsencrypt-dns"):
        acme = resolvers[name]["acme"]
        assert acme["caServer"] == "https://ca.internal.example:9000/acme/acme/directory", name
        assert acme["caCertificates"] == ["/certs/acme-ca.pem"], name
        assert re.fullmatch(r"/letsencrypt/acme-[0-9a-f]{12}\.json", acme["storage"]), name
    assert bundle(files)["/srv/traefik/certs/acme-ca.pem"] == (0o444, ACME_CA)


def test_a_new_acme_ca_certificate_restarts_the_edge_in_place():
    a = production(acmeCaCertificate=ACME_CA)
    b = production(acmeCaCertificate=ca_certificate_pem("another ACME CA"))
    assert a.named("traefik-container").plain == b.named("traefik-container").plain
    assert restart_fingerprint(a) != restart_fingerprint(b)


def test_dns_resolvers_and_propagation_check_reach_the_dns_challenge():
    files = production(dnsResolvers=["192.0.2.53", "192.0.2.54:5353"], dnsPropagationCheck="false").named("traefik-files")
    challenge = yaml_file(files, STATIC_FILE)["certificatesResolvers"]["letsencrypt-dns"]["acme"]["dnsChallenge"]
    assert challenge["resolvers"] == ["192.0.2.53:53", "192.0.2.54:5353"]
    assert challenge["propagation"]["disableChecks"] is True


def test_access_log_is_written_under_srv_traefik_logs():
    run = production()
    static = yaml_file(run.named("traefik-files"), STATIC_FILE)
    assert static["accessLog"]["filePath"] == "/logs/access.log"
    assert container_volumes(run.named("traefik-container"))["/logs"]["hostPath"] == "/srv/traefik/logs"
    assert container_volumes(run.named("traefik-review-container"))["/logs"]["hostPath"] == "/srv/traefik/review/logs"


# -- routes -------------------------------------------------------------------------------------
def test_gitlab_and_registry_are_routed_to_services_over_https():
    files = production().named("traefik-files")
    http = yaml_file(files, ROUTES_FILE)["http"]
    assert http["routers"]["gitlab"]["rule"] == "Host(`gitlab.company.ru`)"
    assert http["routers"]["registry"]["rule"] == "Host(`registry.company.ru`)"
    for name in ("gitlab", "registry"):
        assert http["routers"][name]["entryPoints"] == ["websecure"], name
        assert http["routers"][name]["tls"] == {"certResolver": "letsencrypt"}, name
    assert http["services"]["gitlab"]["loadBalancer"]["servers"] == [{"url": "http://192.168.88.2:80"}]
    assert http["services"]["registry"]["loadBalancer"]["servers"] == [{"url": "http://192.168.88.2:5005"}]


def test_gitlab_ssh_is_tcp_routed_from_1023_to_services():
    files = production().named("traefik-files")
    tcp = yaml_file(files, ROUTES_FILE)["tcp"]
    assert tcp["routers"]["gitlab-ssh"] == {"entryPoints": ["gitlab-ssh"], "rule": "HostSNI(`*`)", "service": "gitlab-ssh"}
    assert tcp["services"]["gitlab-ssh"]["loadBalancer"]["servers"] == [{"address": "192.168.88.2:1023"}], files.urn


def test_production_apps_from_config_get_routes_and_http01_certificates():
    files = production(
        productionApps=[
            {"name": "shop", "host": "shop.company.ru", "url": "http://192.168.88.1:8080"},
            {"name": "api", "host": "api.company.ru", "url": "http://192.168.88.1:9000/"},
        ]
    ).named("traefik-files")
    http = yaml_file(files, ROUTES_FILE)["http"]
    assert http["routers"]["app-shop"]["rule"] == "Host(`shop.company.ru`)"
    assert http["routers"]["app-api"]["tls"] == {"certResolver": "letsencrypt"}
    assert http["services"]["app-api"]["loadBalancer"]["servers"] == [{"url": "http://192.168.88.1:9000"}]
    assert "app-demo" not in http["routers"], files.urn


def test_default_tls_options_are_tls12_with_mozilla_intermediate_ciphers():
    options = yaml_file(production().named("traefik-files"), ROUTES_FILE)["tls"]["options"]["default"]
    assert options["minVersion"] == "VersionTLS12"
    assert options["cipherSuites"] == list(MOZILLA_INTERMEDIATE_CIPHERS)
    # Forward secrecy and AEAD only: no CBC, no static-RSA key exchange.
    assert all(c.startswith("TLS_ECDHE_") and ("GCM" in c or "CHACHA20" in c) for c in options["cipherSuites"])


def test_security_headers_middleware_is_defined_and_used_by_every_file_router():
    files = production().named("traefik-files")
    routes = yaml_file(files, ROUTES_FILE)
    headers = routes["http"]["middlewares"]["security-headers"]["headers"]
    assert headers["stsSeconds"] >= 15552000 and headers["contentTypeNosniff"] is True
    dashboard = yaml_file(files, DASHBOARD_FILE)
    routers = {**routes["http"]["routers"], **dashboard["http"]["routers"]}
    missing = [n for n, r in routers.items() if "security-headers" not in r.get("middlewares", [])]
    assert not missing, f"{files.urn}: routers without security-headers: {missing}"


# -- dashboard -------------------------------------------------------------------------------
def test_dashboard_is_api_internal_on_websecure_behind_basic_auth():
    files = production().named("traefik-files")
    mode, _ = bundle(files)[DASHBOARD_FILE]
    dashboard = yaml_file(files, DASHBOARD_FILE)["http"]
    router = dashboard["routers"]["dashboard"]
    assert router["service"] == "api@internal" and router["entryPoints"] == ["websecure"]
    assert router["rule"].startswith("Host(`traefik.company.ru`)")
    assert router["middlewares"][0] == "dashboard-auth"
    assert dashboard["middlewares"]["dashboard-auth"]["basicAuth"]["users"] == [DASHBOARD_USERS]
    assert mode == 0o600, f"{files.urn}: dashboard.yml holds the users"


def test_without_dashboard_users_there_is_no_api_and_no_dashboard_file():
    cfg = {k: v for k, v in production_config().items() if k != "traefikDashboardUsers"}
    run = run_stack(cfg, secrets=tuple(s for s in PRODUCTION_SECRETS if s in cfg))
    files = run.named("traefik-files")
    assert "api" not in yaml_file(files, STATIC_FILE)
    assert DASHBOARD_FILE not in bundle(files)
    assert f"remove={DASHBOARD_FILE}" in script_args(files), files.urn
    assert "traefikDashboardUrl" not in run.outputs


# -- restarts: static config restarts the container in place, dynamic config does not --------------
def restart_fingerprint(run) -> str:
    step = run.named("traefik-restart")
    assert step.plain["create"].split()[-3:] == ["/srv/traefik/.applied-at-start", "traefik", "restart"], step.urn
    assert run.named("traefik-container").urn in step.dependencies and run.named("traefik-files").urn in step.dependencies
    container_id, fingerprint = step.plain["stdin"].split()
    assert container_id and len(fingerprint) == 64, step.urn
    return fingerprint


def test_a_static_config_change_restarts_the_edge_in_place_never_replaces_it():
    before, after = production(), production(acmeStaging="true")
    assert restart_fingerprint(before) != restart_fingerprint(after), "a new static config must restart Traefik"
    assert before.named("traefik-container").plain == after.named("traefik-container").plain, "...in place"
    assert before.named("traefik-container").replacement_trigger == after.named("traefik-container").replacement_trigger


def test_a_dns_credentials_change_restarts_the_edge_in_place_and_its_fingerprint_stays_secret():
    before = production()
    after = production(dnsCredentials={"CF_DNS_API_TOKEN": "another-token-0123"})
    assert restart_fingerprint(before) != restart_fingerprint(after)
    assert before.named("traefik-container").plain == after.named("traefik-container").plain
    assert after.named("traefik-restart").secret("stdin"), "the hash of the credentials is a secret"


def test_a_dynamic_config_change_reloads_without_restart():
    base = production()
    changed = production(productionApps=[{"name": "shop", "host": "shop.company.ru", "url": "http://192.168.88.1:8080"}])
    assert base.named("traefik-container").plain == changed.named("traefik-container").plain
    assert restart_fingerprint(base) == restart_fingerprint(changed)
    assert base.named("traefik-container").plain == changed.named("traefik-container").plain
    assert bundle(base.named("traefik-files"))[ROUTES_FILE] != bundle(changed.named("traefik-files"))[ROUTES_FILE]


# -- containers ---------------------------------------------------------------------------------
@pytest.mark.parametrize("prefix, name", [("traefik", "traefik"), ("traefik-review", "traefik-review")])
def test_containers_run_the_pinned_image_on_the_traefik_host(prefix, name):
    run = production()
    image = run.named(f"{prefix}-image")
    container = run.named(f"{prefix}-container")
    assert image.plain["name"] == "traefik:v3.6.15"
    assert container.plain["image"].startswith("sha256:"), f"{container.urn}: use RemoteImage.image_id"
    assert container.provider.startswith(run.named("production-docker").urn), container.urn
    assert container.plain["name"] == name and container.delete_before_replace
    assert container.plain["restart"] == "always"


def test_edge_component_keeps_the_urns_of_the_single_traefik_it_replaces():
    edge = production().named("traefik")
    assert edge.type == "delivery:traefik:EdgeTraefik"
    run = production()
    assert run.named("traefik-container").parent == run.named("traefik").urn


def test_container_health_check_uses_the_ping_entrypoint():
    run = production()
    container = run.named("traefik-container")
    assert container.plain["healthcheck"]["tests"] == ["CMD", "traefik", "healthcheck", "--ping"]
    static = yaml_file(run.named("traefik-files"), STATIC_FILE)
    assert static["ping"] == {"entryPoint": "ping"}
    assert static["entryPoints"]["ping"]["address"].startswith("127.0.0.1:"), "ping stays inside the container"


def test_container_mounts_the_files_under_srv_traefik():
    volumes = container_volumes(production().named("traefik-container"))
    assert volumes["/etc/traefik/traefik.yml"] == {"hostPath": "/srv/traefik/traefik.yml", "containerPath": "/etc/traefik/traefik.yml", "readOnly": True}
    assert volumes["/certs"]["hostPath"] == "/srv/traefik/certs" and volumes["/certs"]["readOnly"]


def test_container_waits_for_its_files():
    run = production()
    container = run.named("traefik-container")
    assert run.named("traefik-files").urn in container.dependencies
    assert run.named("wildcard-certificate-credentials").urn in container.dependencies
    assert run.named("traefik-review-files").urn in run.named("traefik-review-container").dependencies


def test_traefik_is_placed_on_the_host_with_the_traefik_role():
    hosts = [
        {"name": "production", "address": "192.168.88.1", "hostKey": HOST_KEY, "roles": ["production-runner"]},
        {"name": "edge", "address": "192.168.88.9", "hostKey": HOST_KEY, "roles": ["traefik"]},
        {"name": "services", "address": "192.168.88.2", "hostKey": HOST_KEY, "roles": ["gitlab"]},
    ]
    run = production(hosts=hosts)
    for name in ("traefik-container", "traefik-review-container"):
        assert run.named(name).provider.startswith(run.named("edge-docker").urn), name
    assert run.named("traefik-files").plain["connection"]["host"] == "192.168.88.9"


def test_no_traefik_in_a_stack_without_the_traefik_role(staging_run):
    assert not staging_run.of_type("delivery:traefik:EdgeTraefik")
    assert not staging_run.of_type("delivery:traefik:ReviewTraefik")
    assert not staging_run.of_type("delivery:services:GitLabServer")


# -- rate limits (traefikRateLimits, traefikInFlightRequests) -------------------------------------
LIMITS = {"gitlabSignIn": {"average": 3, "period": 30, "burst": 2}, "registry": {"burst": 50}}


def test_sign_in_api_and_registry_routes_are_rate_limited_per_client_with_the_configured_limits():
    run = production(traefikRateLimits=LIMITS, traefikInFlightRequests=7)
    dynamic = yaml_file(run.named("traefik-files"), ROUTES_FILE)["http"]
    assert schema_errors(DYNAMIC_SCHEMA, {"http": dynamic}) == []
    routers, middlewares = dynamic["routers"], dynamic["middlewares"]
    expected = {
        "gitlab-sign-in": {"average": 3, "period": "30s", "burst": 2},
        "gitlab-api": {"average": 50, "period": "1s", "burst": 200},
        "registry": {"average": 100, "period": "1s", "burst": 50},
    }
    for router, limit in expected.items():
        first = routers[router]["middlewares"][0]
        assert middlewares[first] == {"rateLimit": {**limit, "sourceCriterion": {"ipStrategy": {"depth": 0}}}}, router
    assert routers["gitlab-sign-in"]["rule"] == "Host(`gitlab.company.ru`) && (Path(`/users/sign_in`) || Path(`/oauth/token`))"
    assert routers["gitlab-api"]["rule"] == "Host(`gitlab.company.ru`) && PathPrefix(`/api/`)"
    assert "middlewares" not in routers["gitlab"] or not any(m.startswith("ratelimit") for m in routers["gitlab"]["middlewares"])
    assert middlewares["in-flight"] == {"inFlightReq": {"amount": 7, "sourceCriterion": {"ipStrategy": {"depth": 0}}}}


def test_in_flight_limit_is_on_both_public_http_entrypoints():
    static = yaml_file(production().named("traefik-files"), STATIC_FILE)
    assert schema_errors(STATIC_SCHEMA, static) == []
    for ep in ("web", "websecure"):
        assert static["entryPoints"][ep]["http"]["middlewares"] == ["in-flight@file"], ep
    dynamic = yaml_file(production().named("traefik-files"), ROUTES_FILE)
    assert dynamic["http"]["middlewares"]["in-flight"]["inFlightReq"]["amount"] == 200


def test_a_rate_limit_change_reloads_without_restart():
    base, changed = production(), production(traefikRateLimits=LIMITS)
    assert restart_fingerprint(base) == restart_fingerprint(changed)
    assert base.named("traefik-container").plain == changed.named("traefik-container").plain


@pytest.mark.parametrize("value, key", [
    ({"gitlabSignIn": {"average": 0}}, "delivery:traefikRateLimits.gitlabSignIn.average"),
    ({"gitlabSignin": {"average": 1}}, "delivery:traefikRateLimits.gitlabSignin"),
    ({"registry": {"burst": 1, "rate": 2}}, "delivery:traefikRateLimits.registry.rate"),
    ({"gitlabApi": {"period": "1m"}}, "delivery:traefikRateLimits.gitlabApi.period"),
])
def test_rate_limit_errors_name_the_key(value, key):
    with pytest.raises(Exception, match=re.escape(key)):
        production(traefikRateLimits=value)


def test_in_flight_requests_must_be_a_positive_integer():
    with pytest.raises(Exception, match="delivery:traefikInFlightRequests"):
        production(traefikInFlightRequests=0)
