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
    # The review-app daemon is in the staging trust domain.
    assert sans["docker-staging-ca-server-staging-csr"] == (["192.168.88.3"], [])
    assert "docker-ca-server-staging-csr" not in sans


def _issuer_of(run: StackRun, cert: str) -> str:
    """The CA component whose CA certificate signs `cert` (the mocks name PEMs after resources)."""
    ca_pem = run.named(cert).plain["caCertPem"]
    return "docker-staging-ca" if "docker-staging-ca-ca-cert" in ca_pem else "docker-ca"


def test_two_trust_domains_sign_what_they_must(production_run: StackRun):
    signed = {r.name: _issuer_of(production_run, r.name) for r in production_run.of_type(LSC)}
    assert signed == {
        "docker-ca-server-production-cert": "docker-ca",
        "docker-ca-server-services-cert": "docker-ca",
        "docker-ca-client-operator-cert": "docker-ca",
        "docker-staging-ca-server-staging-cert": "docker-staging-ca",
        "docker-staging-ca-client-review-traefik-cert": "docker-staging-ca",
        "docker-staging-ca-client-staging-deployer-cert": "docker-staging-ca",
    }


def test_production_daemons_trust_only_the_production_ca(production_run: StackRun):
    import base64, io, tarfile  # noqa: E401

    for host in ("production", "services"):
        stdin = production_run.named(f"{host}-docker-config").plain["stdin"]
        with tarfile.open(fileobj=io.BytesIO(base64.b64decode(stdin))) as tar:
            ca = tar.extractfile("etc/docker/tls/ca.pem").read().decode()
        assert "docker-ca-ca-cert" in ca and "docker-staging-ca" not in ca, host


def test_the_staging_stack_receives_only_keys_that_open_staging(production_run: StackRun):
    entry = production_run.outputs["delegatedDockerServers"]["staging"]
    assert "docker-staging-ca-client-staging-deployer-cert" in entry["client"]["certPem"]
    assert "docker-staging-ca-server-staging-cert" in entry["certPem"]
    # Nothing of the operator's (the production-CA key that opens every daemon).
    assert "operator" not in str(entry)
    assert entry["identity"] == {"address": "192.168.88.3", "port": 2376, "dnsNames": []}
    assert "delegatedDockerServers" in production_run.secret_outputs


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


def test_client_certificates_are_for_client_auth(production_run: StackRun):
    clients = {r.name: r for r in production_run.of_type(LSC) if "-client-" in r.name}
    assert set(clients) == {
        "docker-ca-client-operator-cert",
        "docker-staging-ca-client-review-traefik-cert",
        "docker-staging-ca-client-staging-deployer-cert",
    }
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


def test_tls_resources_are_children_of_their_ca_component(production_run: StackRun):
    cas = {n: production_run.named(n) for n in ("docker-ca", "docker-staging-ca")}
    for ca in cas.values():
        assert ca.type == "delivery:tls:DockerCa"
    for r in production_run.of_type(KEY) + production_run.of_type(LSC) + production_run.of_type(CSR):
        owner = "docker-staging-ca" if r.name.startswith("docker-staging-ca-") else "docker-ca"
        assert r.parent == cas[owner].urn, f"{r.urn} is not parented to {cas[owner].urn}"
        assert r.name.startswith(f"{owner}-"), r.urn


def test_both_ca_identities_are_protected(production_run: StackRun):
    for name in ("docker-staging-ca-ca-key", "docker-staging-ca-ca-cert"):
        assert production_run.named(name).protect, name


def test_satellite_stack_owns_no_ca(staging_run: StackRun):
    assert not staging_run.of_type(KEY)
    assert staging_run.named("docker-ca").type == "delivery:tls:DockerCaReference"
