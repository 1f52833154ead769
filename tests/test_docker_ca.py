"""DockerCa under mocks: identity root protected, SANs and usages per host, keys secret."""

from __future__ import annotations

from conftest import StackRun

from components.host.docker_ca import CA_USES, CLIENT_USES, SERVER_USES

LSC = "tls:index/locallySignedCert:LocallySignedCert"
CSR = "tls:index/certRequest:CertRequest"
KEY = "tls:index/privateKey:PrivateKey"


def test_ca_key_and_certificate_are_protected(production_run: StackRun):
    for name in ("docker-ca-ca-key", "docker-ca-ca-cert"):
        r = production_run.named(name)
        assert r.protect, f"{r.urn} must be protect=True"


def test_ca_certificate_is_a_ca_with_signing_uses(production_run: StackRun):
    r = production_run.named("docker-ca-ca-cert")
    assert r.plain["isCaCertificate"] is True, r.urn
    assert r.plain["allowedUses"] == CA_USES, r.urn
    assert r.plain["validityPeriodHours"] == 87600, r.urn


def test_keys_use_p256_ecdsa(production_run: StackRun):
    keys = production_run.of_type(KEY)
    assert keys
    for r in keys:
        assert (r.plain["algorithm"], r.plain.get("ecdsaCurve")) == ("ECDSA", "P256"), r.urn


def test_every_managed_host_and_the_delegated_daemon_get_a_server_certificate(production_run: StackRun):
    sans = {r.name: (r.plain.get("ipAddresses", []), r.plain.get("dnsNames", [])) for r in production_run.of_type(CSR)}
    assert sans["docker-ca-server-production-csr"] == (["192.168.88.1"], [])
    assert sans["docker-ca-server-services-csr"] == (["192.168.88.2"], [])
    assert sans["docker-ca-server-staging-csr"] == (["192.168.88.3"], [])


def test_dns_names_of_a_host_are_in_its_san(production_run: StackRun):
    from conftest import production_config, run_stack, PRODUCTION_SECRETS

    cfg = production_config()
    cfg["hosts"][1]["dnsNames"] = ["services.company.ru"]
    run = run_stack(cfg, secrets=PRODUCTION_SECRETS)
    csr = run.named("docker-ca-server-services-csr")
    assert csr.plain["dnsNames"] == ["services.company.ru"], csr.urn
    assert csr.plain["ipAddresses"] == ["192.168.88.2"], csr.urn


def test_server_certificates_are_for_server_auth_only(production_run: StackRun):
    servers = [r for r in production_run.of_type(LSC) if "-server-" in r.name]
    assert len(servers) == 3
    for r in servers:
        assert r.plain["allowedUses"] == SERVER_USES, r.urn
        assert "client_auth" not in r.plain["allowedUses"], r.urn


def test_operator_and_traefik_client_certificates_are_for_client_auth(production_run: StackRun):
    clients = {r.name: r for r in production_run.of_type(LSC) if "-client-" in r.name}
    assert set(clients) == {"docker-ca-client-operator-cert", "docker-ca-client-traefik-cert"}
    for r in clients.values():
        assert r.plain["allowedUses"] == CLIENT_USES, r.urn


def test_validity_and_early_renewal_come_from_config():
    from conftest import production_config, run_stack, PRODUCTION_SECRETS

    run = run_stack(production_config(dockerCertValidityHours=2000, dockerCertEarlyRenewalHours=100), secrets=PRODUCTION_SECRETS)
    for r in run.of_type(LSC):
        assert (r.plain["validityPeriodHours"], r.plain["earlyRenewalHours"]) == (2000, 100), r.urn


def test_ca_private_key_is_passed_as_a_secret(production_run: StackRun):
    for r in production_run.of_type(LSC):
        assert r.secret("caPrivateKeyPem"), f"{r.urn}: caPrivateKeyPem must be secret"


def test_tls_resources_are_children_of_the_ca_component(production_run: StackRun):
    ca = production_run.named("docker-ca")
    assert ca.type == "delivery:tls:DockerCa"
    for r in production_run.of_type(KEY) + production_run.of_type(LSC) + production_run.of_type(CSR):
        assert r.parent == ca.urn, f"{r.urn} is not parented to {ca.urn}"
        assert r.name.startswith("docker-ca-"), r.urn


def test_satellite_stack_owns_no_ca(staging_run: StackRun):
    assert not staging_run.of_type(KEY)
    assert staging_run.named("docker-ca").type == "delivery:tls:DockerCaReference"
