"""RealMocks' TLS part on its own: real keys and certificates, no host needed (fast tier)."""

from __future__ import annotations

import datetime as dt
import ipaddress
import socket
import ssl
import tempfile
import threading
from pathlib import Path

import pulumi
import pulumi_tls as tls
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID
from cryptography.x509.verification import PolicyBuilder, Store

from .real_mocks import RealMocks, subject_key_id


@pytest.fixture
def mocks() -> RealMocks:
    m = RealMocks(stack_outputs={"org/delivery/production": {"caCertPem": "PEM", "answer": 42}},
                  secret_output_names={"org/delivery/production": ["caCertPem"]})
    pulumi.runtime.set_mocks(m, project="delivery", stack="test", preview=False)
    return m


def _docker_pki():
    """The CA / server / client shape DockerCa builds, declared through pulumi-tls."""
    ca_key = tls.PrivateKey("ca-key", algorithm="ECDSA", ecdsa_curve="P256")
    ca = tls.SelfSignedCert(
        "ca",
        private_key_pem=ca_key.private_key_pem,
        is_ca_certificate=True,
        allowed_uses=["cert_signing", "crl_signing", "digital_signature"],
        validity_period_hours=87600,
        early_renewal_hours=720,
        subject=tls.SelfSignedCertSubjectArgs(common_name="Delivery Docker CA", organization="Delivery"),
    )
    srv_key = tls.PrivateKey("srv-key", algorithm="RSA", rsa_bits=2048)
    srv_csr = tls.CertRequest(
        "srv-csr",
        private_key_pem=srv_key.private_key_pem,
        subject=tls.CertRequestSubjectArgs(common_name="staging", organization="Delivery"),
        dns_names=["staging.example.test", "localhost"],
        ip_addresses=["127.0.0.1", "192.0.2.10"],
    )
    srv = tls.LocallySignedCert(
        "srv",
        cert_request_pem=srv_csr.cert_request_pem,
        ca_private_key_pem=ca_key.private_key_pem,
        ca_cert_pem=ca.cert_pem,
        allowed_uses=["digital_signature", "key_encipherment", "server_auth"],
        validity_period_hours=8760,
        early_renewal_hours=720,
    )
    cli_key = tls.PrivateKey("cli-key", algorithm="ED25519")
    cli_csr = tls.CertRequest(
        "cli-csr", private_key_pem=cli_key.private_key_pem, subject=tls.CertRequestSubjectArgs(common_name="traefik")
    )
    cli = tls.LocallySignedCert(
        "cli",
        cert_request_pem=cli_csr.cert_request_pem,
        ca_private_key_pem=ca_key.private_key_pem,
        ca_cert_pem=ca.cert_pem,
        allowed_uses=["digital_signature", "key_encipherment", "client_auth"],
        validity_period_hours=8760,
    )
    return ca_key, ca, srv_key, srv, cli_key, cli


def _cert(pem: str) -> x509.Certificate:
    return x509.load_pem_x509_certificate(pem.encode())


@pulumi.runtime.test
def test_ca_signs_server_and_client_certificates_that_verify(mocks):
    _, ca, _, srv, _, cli = _docker_pki()

    def check(args):
        ca_pem, srv_pem, cli_pem = args
        ca_c, srv_c, cli_c = _cert(ca_pem), _cert(srv_pem), _cert(cli_pem)
        srv_c.verify_directly_issued_by(ca_c)
        cli_c.verify_directly_issued_by(ca_c)
        store = Store([ca_c])
        # RFC 5280 / CA-B-Forum path validation: EKU, SAN match, CA constraints.
        PolicyBuilder().store(store).build_server_verifier(x509.IPAddress(ipaddress.ip_address("127.0.0.1"))).verify(
            srv_c, []
        )
        PolicyBuilder().store(store).build_server_verifier(x509.DNSName("staging.example.test")).verify(srv_c, [])
        # (cryptography's client verifier insists on a SAN, which Docker client certificates
        # do not carry; the handshake test below proves the client certificate with OpenSSL.)
        assert list(cli_c.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value) == [
            ExtendedKeyUsageOID.CLIENT_AUTH
        ]
        assert cli_c.extensions.get_extension_for_class(x509.BasicConstraints).value.ca is False

    return pulumi.Output.all(ca.cert_pem, srv.cert_pem, cli.cert_pem).apply(check)


@pulumi.runtime.test
def test_server_certificate_carries_declared_sans_usages_and_subject(mocks):
    ca_key, ca, _, srv, _, _ = _docker_pki()

    def check(args):
        ca_pem, srv_pem = args
        c = _cert(srv_pem)
        san = c.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
        assert san.get_values_for_type(x509.DNSName) == ["staging.example.test", "localhost"]
        assert [str(i) for i in san.get_values_for_type(x509.IPAddress)] == ["127.0.0.1", "192.0.2.10"]
        ku = c.extensions.get_extension_for_class(x509.KeyUsage)
        assert ku.critical
        assert (ku.value.digital_signature, ku.value.key_encipherment, ku.value.key_cert_sign) == (True, True, False)
        eku = c.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value
        assert list(eku) == [ExtendedKeyUsageOID.SERVER_AUTH]
        bc = c.extensions.get_extension_for_class(x509.BasicConstraints)
        assert bc.critical and bc.value.ca is False
        assert c.subject.get_attributes_for_oid(NameOID.COMMON_NAME)[0].value == "staging"
        assert c.issuer == _cert(ca_pem).subject
        aki = c.extensions.get_extension_for_class(x509.AuthorityKeyIdentifier).value.key_identifier
        assert aki == _cert(ca_pem).extensions.get_extension_for_class(x509.SubjectKeyIdentifier).value.digest

    return pulumi.Output.all(ca.cert_pem, srv.cert_pem).apply(check)


@pulumi.runtime.test
def test_ca_certificate_is_a_critical_ca_with_terraform_subject_key_id(mocks):
    ca_key, ca, *_ = _docker_pki()

    def check(args):
        pem, key_pem = args
        c = _cert(pem)
        bc = c.extensions.get_extension_for_class(x509.BasicConstraints)
        assert bc.critical and bc.value.ca is True and bc.value.path_length is None
        ku = c.extensions.get_extension_for_class(x509.KeyUsage).value
        assert (ku.key_cert_sign, ku.crl_sign, ku.digital_signature, ku.key_encipherment) == (True, True, True, False)
        with pytest.raises(x509.ExtensionNotFound):
            c.extensions.get_extension_for_class(x509.ExtendedKeyUsage)
        key = serialization.load_pem_private_key(key_pem.encode(), None)
        ski = c.extensions.get_extension_for_class(x509.SubjectKeyIdentifier).value.digest
        assert ski == subject_key_id(key.public_key())
        assert c.subject == c.issuer
        assert [a.value for a in c.subject] == ["Delivery", "Delivery Docker CA"]  # Go order: O before CN

    return pulumi.Output.all(ca.cert_pem, ca_key.private_key_pem).apply(check)


@pulumi.runtime.test
def test_validity_period_and_renewal_fields_follow_inputs(mocks):
    _, _, _, srv, _, _ = _docker_pki()
    soon_key = tls.PrivateKey("soon-key", algorithm="ECDSA", ecdsa_curve="P256")
    soon = tls.SelfSignedCert(
        "soon",
        private_key_pem=soon_key.private_key_pem,
        allowed_uses=["server_auth"],
        validity_period_hours=10,
        early_renewal_hours=10,
        subject=tls.SelfSignedCertSubjectArgs(common_name="soon"),
    )

    def check(args):
        pem, start, end, ready, soon_ready = args
        c = _cert(pem)
        assert (c.not_valid_after_utc - c.not_valid_before_utc) == dt.timedelta(hours=8760)
        assert start == c.not_valid_before_utc.strftime("%Y-%m-%dT%H:%M:%SZ")
        assert end == c.not_valid_after_utc.strftime("%Y-%m-%dT%H:%M:%SZ")
        assert abs(dt.datetime.now(dt.timezone.utc) - c.not_valid_before_utc) < dt.timedelta(minutes=5)
        assert ready is False
        assert soon_ready is True  # early_renewal_hours >= validity: due at once

    return pulumi.Output.all(
        srv.cert_pem, srv.validity_start_time, srv.validity_end_time, srv.ready_for_renewal, soon.ready_for_renewal
    ).apply(check)


@pytest.mark.parametrize(
    ("algorithm", "extra", "pem_type", "ssh_prefix"),
    [
        ("RSA", {"rsa_bits": 3072}, "RSA PRIVATE KEY", "ssh-rsa "),
        ("ECDSA", {"ecdsa_curve": "P384"}, "EC PRIVATE KEY", "ecdsa-sha2-nistp384 "),
        ("ECDSA", {"ecdsa_curve": "P224"}, "EC PRIVATE KEY", ""),
        ("ED25519", {}, "PRIVATE KEY", "ssh-ed25519 "),
    ],
)
def test_private_key_outputs_match_terraform_provider_formats(mocks, algorithm, extra, pem_type, ssh_prefix):
    @pulumi.runtime.test
    def body():
        k = tls.PrivateKey("k", algorithm=algorithm, **extra)

        def check(args):
            pem, pkcs8, pub_pem, pub_ssh, fp = args
            assert pem.startswith(f"-----BEGIN {pem_type}-----\n"), pem.splitlines()[0]
            assert pkcs8.startswith("-----BEGIN PRIVATE KEY-----\n")
            key = serialization.load_pem_private_key(pem.encode(), None)
            assert key.public_key().public_bytes(
                serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
            ).decode() == pub_pem
            if algorithm == "RSA":
                assert key.key_size == 3072
            if algorithm == "ECDSA":
                assert key.curve.name == {"P384": "secp384r1", "P224": "secp224r1"}[extra["ecdsa_curve"]]
            if ssh_prefix:
                assert pub_ssh.startswith(ssh_prefix) and pub_ssh.endswith("\n")
                assert fp.startswith("SHA256:")
            else:  # P-224: x/crypto/ssh cannot encode it; TF leaves these empty
                assert pub_ssh == "" and fp == ""

        return pulumi.Output.all(
            k.private_key_pem, k.private_key_pem_pkcs8, k.public_key_pem, k.public_key_openssh,
            k.public_key_fingerprint_sha256,
        ).apply(check)

    body()


@pulumi.runtime.test
def test_private_key_material_is_secret_like_the_real_provider(mocks):
    k = tls.PrivateKey("k", algorithm="ED25519")

    def check(args):
        pem_secret, pub_secret = args
        assert pem_secret is True, "private_key_pem must be secret"
        assert pub_secret is False, "public_key_pem is not secret"

    return pulumi.Output.all(
        pulumi.Output.from_input(k.private_key_pem.is_secret()), pulumi.Output.from_input(k.public_key_pem.is_secret())
    ).apply(check)


@pulumi.runtime.test
def test_stack_reference_returns_configured_outputs(mocks):
    ref = pulumi.StackReference("org/delivery/production")

    def check(args):
        answer, ca = args
        assert answer == 42
        assert ca == "PEM"

    return pulumi.Output.all(ref.require_output("answer"), ref.require_output("caCertPem")).apply(check)


@pulumi.runtime.test
def test_certificates_complete_a_real_mutual_tls_handshake(mocks):
    """OpenSSL (Python's ssl) accepts the pair exactly as dockerd's --tlsverify would be used."""
    ca_key, ca, srv_key, srv, cli_key, cli = _docker_pki()

    def check(args):
        ca_pem, srv_pem, srv_key_pem, cli_pem, cli_key_pem = args
        with tempfile.TemporaryDirectory() as d:
            p = Path(d)
            for n, v in {"ca": ca_pem, "srv": srv_pem, "srvkey": srv_key_pem, "cli": cli_pem, "clikey": cli_key_pem}.items():
                (p / f"{n}.pem").write_text(v)
            sctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
            sctx.load_cert_chain(p / "srv.pem", p / "srvkey.pem")
            sctx.load_verify_locations(p / "ca.pem")
            sctx.verify_mode = ssl.CERT_REQUIRED
            cctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
            cctx.load_verify_locations(p / "ca.pem")
            cctx.load_cert_chain(p / "cli.pem", p / "clikey.pem")
            listener = socket.create_server(("127.0.0.1", 0))
            listener.settimeout(10)
            port = listener.getsockname()[1]
            seen: dict = {}

            def serve():
                conn, _ = listener.accept()
                conn.settimeout(10)
                with sctx.wrap_socket(conn, server_side=True) as tls_conn:
                    seen["peer_cn"] = dict(x[0] for x in tls_conn.getpeercert()["subject"])["commonName"]
                    tls_conn.sendall(b"ok")

            t = threading.Thread(target=serve, daemon=True)
            t.start()
            with socket.create_connection(("127.0.0.1", port), timeout=10) as raw:
                with cctx.wrap_socket(raw, server_hostname="127.0.0.1") as c:
                    assert c.recv(2) == b"ok"
            t.join(10)
            listener.close()
            assert seen["peer_cn"] == "traefik"

    return pulumi.Output.all(
        ca.cert_pem, srv.cert_pem, srv_key.private_key_pem, cli.cert_pem, cli_key.private_key_pem
    ).apply(check)
