"""Pulumi mocks with real effects, for the disposable-host end-to-end tests.

``RealMocks`` runs the program under ``pulumi.runtime.set_mocks`` while:

* ``command:remote:Command`` really runs its ``create`` script over SSH (paramiko) with the
  declared ``connection`` (host, port, user, private key, pinned host key, dial limits),
  ``stdin`` and ``environment``, the way pulumi-command 1.2.1 does: one trailing newline
  trimmed from stdout/stderr, a non-zero exit fails the resource with the exit code and the
  combined output in the message;
* the pulumi-tls resources make real keys and certificates with ``cryptography``, following
  terraform-provider-tls (which pulumi-tls bridges): PEM types, key usages, extended key
  usages, basic constraints, subject key id, SANs, validity;
* ``pulumi:pulumi:StackReference`` returns the outputs given to the constructor;
* every other resource returns ``(name + "_id", inputs)``.

Under the mock monitor the SDK registers a resource only after the URNs of everything it
depends on are known, and a mocked resource's URN is known only when ``new_resource``
returns: so a command that ``depends_on`` another runs after it, as under ``pulumi up``.
Independent resources are registered from the SDK's thread pool and may run concurrently;
this class is thread-safe.
"""

from __future__ import annotations

import base64
import datetime as dt
import hashlib
import io
import ipaddress
import secrets
import socket
import threading
import time
from dataclasses import dataclass
from typing import Any, Callable, Mapping, Sequence

import paramiko
import pulumi
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID, ObjectIdentifier
from pulumi.runtime import rpc

UNKNOWN = rpc.UNKNOWN

# --------------------------------------------------------------------------------------------
# values as the mock monitor hands them over


def plain(value: Any) -> Any:
    """The value with every RPC secret wrapper removed (recursively)."""
    if rpc.is_rpc_secret(value):
        return plain(rpc.unwrap_rpc_secret(value))
    if isinstance(value, dict):
        return {k: plain(v) for k, v in value.items()}
    if isinstance(value, list):
        return [plain(v) for v in value]
    return value


def _has_unknown(value: Any) -> bool:
    if value == UNKNOWN:
        return True
    if isinstance(value, dict):
        return any(_has_unknown(v) for v in value.values())
    if isinstance(value, list):
        return any(_has_unknown(v) for v in value)
    return False


def _secret(value: Any) -> Any:
    return rpc.wrap_rpc_secret(value)


# --------------------------------------------------------------------------------------------
# SSH, as pulumi-command's remote.Command does it


class RemoteCommandError(Exception):
    """A remote command exited non-zero (or could not run); fails the resource."""


@dataclass(frozen=True)
class CommandRun:
    """One remote command that RealMocks ran."""

    name: str
    host: str
    port: int
    started: float  # time.monotonic() at start
    elapsed: float  # seconds
    exit_code: int
    stdout: str
    stderr: str


def load_private_key(pem: str, password: str | None = None) -> paramiko.PKey:
    """A paramiko key from any PEM Go's ssh.ParsePrivateKey accepts (PKCS#1, SEC1, PKCS#8, OpenSSH)."""
    data = pem.encode()
    pw = password.encode() if password else None
    if b"OPENSSH PRIVATE KEY" in data:
        key = serialization.load_ssh_private_key(data, pw)
    else:
        key = serialization.load_pem_private_key(data, pw)
    openssh = key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.OpenSSH, serialization.NoEncryption()
    ).decode()
    cls: type[paramiko.PKey]
    if isinstance(key, ed25519.Ed25519PrivateKey):
        cls = paramiko.Ed25519Key
    elif isinstance(key, ec.EllipticCurvePrivateKey):
        cls = paramiko.ECDSAKey
    elif isinstance(key, rsa.RSAPrivateKey):
        cls = paramiko.RSAKey
    else:
        raise RemoteCommandError(f"unsupported private key type {type(key).__name__}")
    return cls.from_private_key(io.StringIO(openssh))


def parse_authorized_key(line: str) -> tuple[str, bytes]:
    """(type, blob) of an authorized_keys-style line ("ssh-ed25519 AAAA... comment")."""
    parts = line.strip().split()
    if len(parts) < 2:
        raise RemoteCommandError(f"host key {line!r} is not in authorized_keys form")
    blob = base64.b64decode(parts[1])
    # The blob starts with its own type name; it must agree with the first field.
    n = int.from_bytes(blob[:4], "big")
    if blob[4 : 4 + n].decode() != parts[0]:
        raise RemoteCommandError(f"host key type {parts[0]!r} does not match its blob")
    return parts[0], blob


# Host key algorithms in golang.org/x/crypto/ssh's default preference order (what a Go client
# negotiates when it does not restrict HostKeyAlgorithms).
GO_DEFAULT_HOST_KEY_ORDER = (
    "ecdsa-sha2-nistp256",
    "ecdsa-sha2-nistp384",
    "ecdsa-sha2-nistp521",
    "rsa-sha2-256",
    "rsa-sha2-512",
    "ssh-rsa",
    "ssh-ed25519",
)


def _setenv_strict(chan: paramiko.Channel, name: str, value: str) -> None:
    """Go's session.Setenv: an "env" request that wants a reply, so a refusal is an error."""
    m = paramiko.Message()
    m.add_byte(paramiko.common.cMSG_CHANNEL_REQUEST)
    m.add_int(chan.remote_chanid)
    m.add_string("env")
    m.add_boolean(True)
    m.add_string(name)
    m.add_string(value)
    chan._event_pending()
    chan.transport._send_user_message(m)
    try:
        chan._wait_for_event()
    except paramiko.SSHException as e:
        raise RemoteCommandError(
            f"Unable to set '{name}'. This only works if your SSH server is configured to accept "
            "these variables via AcceptEnv. Alternatively, if a Bash-like shell runs the command "
            "on the remote host, you could prefix the command itself with the variables in the "
            "form 'VAR=value command'"
        ) from e


def run_remote(
    connection: Mapping[str, Any],
    command: str,
    stdin: str | None = None,
    environment: Mapping[str, str] | None = None,
    timeout: float = 1800,
    host_key_algorithms: str = "pinned",
    dial: Callable[[str, int], tuple[str, int]] | None = None,
) -> tuple[int, str, str]:
    """Run ``command`` over SSH as pulumi-command does; return (exit code, stdout, stderr) untrimmed.

    ``dial`` maps the connection's (host, port) to the address actually dialed (the harness
    publishes every host's ports on 127.0.0.1); the host key is verified all the same."""
    if connection.get("proxy"):
        raise RemoteCommandError("RealMocks does not implement connection.proxy")
    host = connection["host"]
    port = int(float(connection.get("port", 22)))
    user = connection.get("user") or "root"
    dial_limit = int(connection.get("dialErrorLimit", 10))
    dial_limit = 60 if dial_limit < 0 else min(dial_limit, 60)  # -1 is "unlimited": bound it
    per_dial = float(connection.get("perDialTimeout", 15)) or 60.0
    expected = parse_authorized_key(connection["hostKey"]) if connection.get("hostKey") else None
    pkey = (
        load_private_key(connection["privateKey"], connection.get("privateKeyPassword"))
        if connection.get("privateKey")
        else None
    )

    order: Sequence[str]
    if expected and host_key_algorithms == "pinned":
        order = ("rsa-sha2-512", "rsa-sha2-256", "ssh-rsa") if expected[0] == "ssh-rsa" else (expected[0],)
    elif host_key_algorithms in ("pinned", "go-default"):
        order = GO_DEFAULT_HOST_KEY_ORDER
    else:
        raise ValueError(f"host_key_algorithms must be 'pinned' or 'go-default', not {host_key_algorithms!r}")

    target = dial(host, port) if dial else (host, port)

    def connect() -> paramiko.Transport:
        sock = socket.create_connection(target, timeout=per_dial)
        t = paramiko.Transport(sock)
        t.banner_timeout = t.handshake_timeout = t.auth_timeout = per_dial
        opts = t.get_security_options()
        # The client's preference order decides the host key algorithm (RFC 4253 7.1).
        opts.key_types = tuple(k for k in order if k in opts.key_types)
        try:
            t.start_client(timeout=per_dial)
            key = t.get_remote_server_key()
            if expected is not None and key.asbytes() != expected[1]:
                raise RemoteCommandError(
                    f"ssh: host key mismatch: {host}:{port} presented {key.get_name()} "
                    f"{key.get_base64()[:24]}..., expected {expected[0]}"
                )
            if pkey is not None:
                t.auth_publickey(user, pkey)
            elif connection.get("password"):
                t.auth_password(user, connection["password"])
            if not t.is_authenticated():
                raise paramiko.AuthenticationException("no authentication method succeeded")
        except BaseException:
            t.close()
            raise
        return t

    last_error: Exception | None = None
    for attempt in range(dial_limit + 1):
        try:
            transport = connect()
            break
        except RemoteCommandError:
            raise
        except paramiko.AuthenticationException as e:
            raise RemoteCommandError(f"ssh: unable to authenticate as {user}@{host}:{port}: {e}") from e
        except (paramiko.SSHException, OSError, EOFError) as e:
            last_error = e
        time.sleep(min(1.0 + attempt, 5.0))
    else:
        raise RemoteCommandError(f"ssh: dial {host}:{port} failed {dial_limit + 1} times: {last_error}")

    try:
        chan = transport.open_session(timeout=per_dial)
        chan.settimeout(timeout)
        for k, v in (environment or {}).items():
            _setenv_strict(chan, k, v)
        chan.exec_command(command)
        out = bytearray()
        err = bytearray()
        deadline = time.monotonic() + timeout

        def drain(recv: Callable[[int], bytes], sink: bytearray) -> None:
            # recv returns b"" at EOF; the channel timeout bounds each call.
            while time.monotonic() < deadline:
                try:
                    chunk = recv(65536)
                except socket.timeout:
                    return
                if not chunk:
                    return
                sink.extend(chunk)

        readers = [
            threading.Thread(target=drain, args=(chan.recv, out), daemon=True),
            threading.Thread(target=drain, args=(chan.recv_stderr, err), daemon=True),
        ]
        for t in readers:
            t.start()
        if stdin is not None:
            chan.sendall(stdin.encode())
        chan.shutdown_write()
        for t in readers:
            t.join(max(0.0, deadline - time.monotonic()) + 1)
        if any(t.is_alive() for t in readers) or not chan.exit_status_ready() and not _wait_status(chan, deadline):
            chan.close()
            raise RemoteCommandError(f"command did not finish within {timeout:.0f}s: {command[:200]!r}")
        return chan.recv_exit_status(), out.decode(errors="replace"), err.decode(errors="replace")
    finally:
        transport.close()


def _wait_status(chan: paramiko.Channel, deadline: float) -> bool:
    while time.monotonic() < deadline:
        if chan.exit_status_ready():
            return True
        time.sleep(0.05)
    return chan.exit_status_ready()


def _trim(s: str) -> str:
    return s[:-1] if s.endswith("\n") else s


# --------------------------------------------------------------------------------------------
# TLS, as terraform-provider-tls does it

KEY_USAGES = {
    "digital_signature": "digital_signature",
    "content_commitment": "content_commitment",
    "key_encipherment": "key_encipherment",
    "data_encipherment": "data_encipherment",
    "key_agreement": "key_agreement",
    "cert_signing": "key_cert_sign",
    "crl_signing": "crl_sign",
    "encipher_only": "encipher_only",
    "decipher_only": "decipher_only",
}

EXTENDED_KEY_USAGES = {
    "any_extended": ObjectIdentifier("2.5.29.37.0"),
    "server_auth": ExtendedKeyUsageOID.SERVER_AUTH,
    "client_auth": ExtendedKeyUsageOID.CLIENT_AUTH,
    "code_signing": ExtendedKeyUsageOID.CODE_SIGNING,
    "email_protection": ExtendedKeyUsageOID.EMAIL_PROTECTION,
    "ipsec_end_system": ObjectIdentifier("1.3.6.1.5.5.7.3.5"),
    "ipsec_tunnel": ObjectIdentifier("1.3.6.1.5.5.7.3.6"),
    "ipsec_user": ObjectIdentifier("1.3.6.1.5.5.7.3.7"),
    "timestamping": ExtendedKeyUsageOID.TIME_STAMPING,
    "ocsp_signing": ExtendedKeyUsageOID.OCSP_SIGNING,
    "microsoft_server_gated_crypto": ObjectIdentifier("1.3.6.1.4.1.311.10.3.3"),
    "netscape_server_gated_crypto": ObjectIdentifier("2.16.840.1.113730.4.1"),
    "microsoft_commercial_code_signing": ObjectIdentifier("1.3.6.1.4.1.311.2.1.22"),
    "microsoft_kernel_code_signing": ObjectIdentifier("1.3.6.1.4.1.311.61.1.1"),
}

CURVES = {"P224": ec.SECP224R1, "P256": ec.SECP256R1, "P384": ec.SECP384R1, "P521": ec.SECP521R1}


def _pem_private_key(pem: str):
    return serialization.load_pem_private_key(pem.encode(), None)


def key_algorithm(key) -> str:
    if isinstance(key, (rsa.RSAPrivateKey, rsa.RSAPublicKey)):
        return "RSA"
    if isinstance(key, (ec.EllipticCurvePrivateKey, ec.EllipticCurvePublicKey)):
        return "ECDSA"
    if isinstance(key, (ed25519.Ed25519PrivateKey, ed25519.Ed25519PublicKey)):
        return "ED25519"
    raise ValueError(f"unsupported key type {type(key).__name__}")


def _signing_hash(private_key):
    """Go's x509 default signature algorithm for the signing key."""
    if isinstance(private_key, ed25519.Ed25519PrivateKey):
        return None
    if isinstance(private_key, ec.EllipticCurvePrivateKey):
        return {384: hashes.SHA384(), 521: hashes.SHA512()}.get(private_key.curve.key_size, hashes.SHA256())
    return hashes.SHA256()


def subject_key_id(public_key) -> bytes:
    """terraform-provider-tls generateSubjectKeyID: SHA-1 of Go's asn1/elliptic marshalling."""
    if isinstance(public_key, rsa.RSAPublicKey):
        raw = public_key.public_bytes(serialization.Encoding.DER, serialization.PublicFormat.PKCS1)
    elif isinstance(public_key, ec.EllipticCurvePublicKey):
        raw = public_key.public_bytes(serialization.Encoding.X962, serialization.PublicFormat.UncompressedPoint)
    elif isinstance(public_key, ed25519.Ed25519PublicKey):
        key = public_key.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
        raw = bytes([0x04, len(key)]) + key  # asn1.Marshal of a byte slice: OCTET STRING
    else:
        raise ValueError(f"unsupported public key type {type(public_key).__name__}")
    return hashlib.sha1(raw).digest()  # noqa: S324 - the identifier TF computes


def subject_name(subject: Mapping[str, Any] | None) -> x509.Name:
    """createSubjectDistinguishedNames + Go's pkix.Name.ToRDNSequence order."""
    s = subject or {}
    rdns: list[x509.RelativeDistinguishedName] = []

    def add(oid, values):
        values = [v for v in values if v is not None]
        if values:
            rdns.append(x509.RelativeDistinguishedName([x509.NameAttribute(oid, v) for v in values]))

    one = lambda k: [s[k]] if s.get(k) else []  # noqa: E731
    add(NameOID.COUNTRY_NAME, one("country"))
    add(NameOID.STATE_OR_PROVINCE_NAME, one("province"))
    add(NameOID.LOCALITY_NAME, one("locality"))
    add(NameOID.STREET_ADDRESS, list(s.get("streetAddresses") or []))
    add(NameOID.POSTAL_CODE, one("postalCode"))
    add(NameOID.ORGANIZATION_NAME, one("organization"))
    add(NameOID.ORGANIZATIONAL_UNIT_NAME, one("organizationalUnit"))
    add(NameOID.COMMON_NAME, one("commonName"))
    add(NameOID.SERIAL_NUMBER, one("serialNumber"))
    add(NameOID.EMAIL_ADDRESS, one("emailAddress"))
    return x509.Name(rdns)


def _go_subject_copy(name: x509.Name) -> x509.Name:
    """A CSR subject as Go re-encodes it from pkix.Name: known attributes only, Go's order.

    (Attributes Go keeps in Names but not ExtraNames, such as emailAddress, are dropped.)
    """
    by_oid: dict = {}
    for attr in name:
        by_oid.setdefault(attr.oid, []).append(attr.value)
    rdns = []
    for oid in (
        NameOID.COUNTRY_NAME,
        NameOID.STATE_OR_PROVINCE_NAME,
        NameOID.LOCALITY_NAME,
        NameOID.STREET_ADDRESS,
        NameOID.POSTAL_CODE,
        NameOID.ORGANIZATION_NAME,
        NameOID.ORGANIZATIONAL_UNIT_NAME,
    ):
        if by_oid.get(oid):
            rdns.append(x509.RelativeDistinguishedName([x509.NameAttribute(oid, v) for v in by_oid[oid]]))
    for oid in (NameOID.COMMON_NAME, NameOID.SERIAL_NUMBER):
        if by_oid.get(oid):
            rdns.append(x509.RelativeDistinguishedName([x509.NameAttribute(oid, by_oid[oid][-1])]))
    return x509.Name(rdns)


def _sans(dns_names, ip_addresses, uris) -> list[x509.GeneralName]:
    names: list[x509.GeneralName] = [x509.DNSName(d) for d in dns_names or []]
    names += [x509.IPAddress(ipaddress.ip_address(i)) for i in ip_addresses or []]
    names += [x509.UniformResourceIdentifier(u) for u in uris or []]
    return names


def _rfc3339(t: dt.datetime) -> str:
    return t.astimezone(dt.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def make_private_key(inputs: Mapping[str, Any]) -> dict[str, Any]:
    algorithm = inputs.get("algorithm", "RSA")
    if algorithm == "RSA":
        key = rsa.generate_private_key(public_exponent=65537, key_size=int(inputs.get("rsaBits", 2048)))
        pem_format = serialization.PrivateFormat.TraditionalOpenSSL  # "RSA PRIVATE KEY"
    elif algorithm == "ECDSA":
        curve = inputs.get("ecdsaCurve", "P224")
        if curve not in CURVES:
            raise ValueError(f"invalid ECDSA curve {curve!r}; supported values are: {sorted(CURVES)}")
        key = ec.generate_private_key(CURVES[curve]())
        pem_format = serialization.PrivateFormat.TraditionalOpenSSL  # "EC PRIVATE KEY"
    elif algorithm == "ED25519":
        key = ed25519.Ed25519PrivateKey.generate()
        pem_format = serialization.PrivateFormat.PKCS8
    else:
        raise ValueError(f"invalid algorithm {algorithm!r}; supported values are: ECDSA, ED25519, RSA")
    pub = key.public_key()
    nopw = serialization.NoEncryption()
    pub_der = pub.public_bytes(serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)
    try:  # x/crypto/ssh has no P-224: TF leaves the OpenSSH fields empty then
        ssh_pub = pub.public_bytes(serialization.Encoding.OpenSSH, serialization.PublicFormat.OpenSSH)
        blob = base64.b64decode(ssh_pub.split()[1])
        openssh_pub = ssh_pub.decode() + "\n"
        md5 = ":".join(f"{b:02x}" for b in hashlib.md5(blob).digest())  # noqa: S324
        sha256 = "SHA256:" + base64.b64encode(hashlib.sha256(blob).digest()).decode().rstrip("=")
        openssh_priv = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.OpenSSH, nopw).decode()
    except ValueError:
        openssh_pub = md5 = sha256 = openssh_priv = ""
    return {
        **inputs,
        "algorithm": algorithm,
        "privateKeyPem": _secret(key.private_bytes(serialization.Encoding.PEM, pem_format, nopw).decode()),
        "privateKeyPemPkcs8": _secret(
            key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, nopw).decode()
        ),
        "privateKeyOpenssh": _secret(openssh_priv),
        "publicKeyPem": pub.public_bytes(
            serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
        ).decode(),
        "publicKeyOpenssh": openssh_pub,
        "publicKeyFingerprintMd5": md5,
        "publicKeyFingerprintSha256": sha256,
        "id": hashlib.sha1(pub_der).hexdigest(),  # noqa: S324 - TF hashForState
    }


def _create_certificate(
    inputs: Mapping[str, Any],
    *,
    subject: x509.Name,
    sans: list[x509.GeneralName],
    public_key,
    issuer_name: x509.Name | None,
    issuer_ski: bytes | None,
    signing_key,
    now: dt.datetime | None = None,
) -> dict[str, Any]:
    """terraform-provider-tls createCertificate (+ Go's x509.CreateCertificate defaults)."""
    now = (now or dt.datetime.now(dt.timezone.utc)).replace(microsecond=0)
    hours = int(inputs["validityPeriodHours"])
    not_after = now + dt.timedelta(hours=hours)
    is_ca = bool(inputs.get("isCaCertificate", False))
    if is_ca and len(subject) == 0:
        raise ValueError("Must contain at least one Distinguished Name when creating Certificate Authority (CA)")

    ku = {v: False for v in KEY_USAGES.values()}
    ekus: list[ObjectIdentifier] = []
    for use in inputs.get("allowedUses") or []:
        if use in KEY_USAGES:
            ku[KEY_USAGES[use]] = True
        if use in EXTENDED_KEY_USAGES:
            ekus.append(EXTENDED_KEY_USAGES[use])
        if use not in KEY_USAGES and use not in EXTENDED_KEY_USAGES:
            raise ValueError(f"allowed_uses: {use!r} is not a supported key usage")

    self_signed = issuer_name is None
    builder = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(subject if self_signed else issuer_name)
        .public_key(public_key)
        .serial_number(secrets.randbelow(2**128 - 1) + 1)
        .not_valid_before(now)
        .not_valid_after(not_after)
    )
    if any(ku.values()):
        if (ku["encipher_only"] or ku["decipher_only"]) and not ku["key_agreement"]:
            raise ValueError("encipher_only/decipher_only need key_agreement in allowed_uses")
        builder = builder.add_extension(x509.KeyUsage(**ku), critical=True)
    if ekus:
        builder = builder.add_extension(x509.ExtendedKeyUsage(ekus), critical=False)
    max_path = inputs.get("maxPathLength")
    path_length = int(max_path) if is_ca and max_path is not None and int(max_path) > 0 else None
    builder = builder.add_extension(x509.BasicConstraints(ca=is_ca, path_length=path_length), critical=True)

    ski = subject_key_id(public_key) if (is_ca or inputs.get("setSubjectKeyId")) else None
    if ski:
        builder = builder.add_extension(x509.SubjectKeyIdentifier(ski), critical=False)
    aki = None
    if self_signed:
        if inputs.get("setAuthorityKeyId"):
            if not ski:
                raise ValueError("Could not determine Authority Key Identifier")
            aki = ski
    elif issuer_ski:
        aki = issuer_ski  # Go: parent.SubjectKeyId when issuer != subject
    if aki:
        builder = builder.add_extension(
            x509.AuthorityKeyIdentifier(aki, None, None), critical=False
        )
    if sans:
        builder = builder.add_extension(x509.SubjectAlternativeName(sans), critical=len(subject) == 0)

    cert = builder.sign(signing_key, _signing_hash(signing_key))
    early = int(inputs.get("earlyRenewalHours", 0) or 0)
    return {
        **inputs,
        "certPem": cert.public_bytes(serialization.Encoding.PEM).decode(),
        "validityStartTime": _rfc3339(now),
        "validityEndTime": _rfc3339(not_after),
        "readyForRenewal": (not_after - dt.timedelta(hours=early)) <= dt.datetime.now(dt.timezone.utc),
        "earlyRenewalHours": early,
        "id": str(cert.serial_number),
    }


def make_self_signed_cert(inputs: Mapping[str, Any]) -> dict[str, Any]:
    key = _pem_private_key(plain(inputs["privateKeyPem"]))
    state = _create_certificate(
        inputs,
        subject=subject_name(inputs.get("subject")),
        sans=_sans(inputs.get("dnsNames"), inputs.get("ipAddresses"), inputs.get("uris")),
        public_key=key.public_key(),
        issuer_name=None,
        issuer_ski=None,
        signing_key=key,
    )
    state["keyAlgorithm"] = key_algorithm(key)
    return state


def make_cert_request(inputs: Mapping[str, Any]) -> dict[str, Any]:
    key = _pem_private_key(plain(inputs["privateKeyPem"]))
    builder = x509.CertificateSigningRequestBuilder().subject_name(subject_name(inputs.get("subject")))
    sans = _sans(inputs.get("dnsNames"), inputs.get("ipAddresses"), inputs.get("uris"))
    if sans:
        builder = builder.add_extension(x509.SubjectAlternativeName(sans), critical=False)
    csr = builder.sign(key, _signing_hash(key))
    pem = csr.public_bytes(serialization.Encoding.PEM).decode()
    return {
        **inputs,
        "certRequestPem": pem,
        "keyAlgorithm": key_algorithm(key),
        "id": hashlib.sha1(pem.encode()).hexdigest(),  # noqa: S324 - TF hashForState
    }


def make_locally_signed_cert(inputs: Mapping[str, Any]) -> dict[str, Any]:
    csr = x509.load_pem_x509_csr(plain(inputs["certRequestPem"]).encode())
    ca_key = _pem_private_key(plain(inputs["caPrivateKeyPem"]))
    ca_cert = x509.load_pem_x509_certificate(plain(inputs["caCertPem"]).encode())
    if ca_cert.public_key().public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    ) != ca_key.public_key().public_bytes(serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo):
        raise ValueError("x509: provided PrivateKey doesn't match parent's PublicKey")
    try:
        san_ext = csr.extensions.get_extension_for_class(x509.SubjectAlternativeName)
        sans = list(san_ext.value)
    except x509.ExtensionNotFound:
        sans = []
    try:
        ca_ski = ca_cert.extensions.get_extension_for_class(x509.SubjectKeyIdentifier).value.digest
    except x509.ExtensionNotFound:
        ca_ski = None
    state = _create_certificate(
        inputs,
        subject=_go_subject_copy(csr.subject),
        sans=sans,
        public_key=csr.public_key(),
        issuer_name=ca_cert.subject,
        issuer_ski=ca_ski,
        signing_key=ca_key,
    )
    state["caKeyAlgorithm"] = key_algorithm(ca_key)
    return state


TLS_HANDLERS: dict[str, Callable[[Mapping[str, Any]], dict[str, Any]]] = {
    "tls:index/privateKey:PrivateKey": make_private_key,
    "tls:index/selfSignedCert:SelfSignedCert": make_self_signed_cert,
    "tls:index/certRequest:CertRequest": make_cert_request,
    "tls:index/locallySignedCert:LocallySignedCert": make_locally_signed_cert,
}


# --------------------------------------------------------------------------------------------
# the mocks


class RealMocks(pulumi.runtime.Mocks):
    """Mocks whose remote commands and TLS material are real.

    :param stack_outputs: outputs per StackReference name (``"org/project/stack"``), or one
        dict for every reference.
    :param secret_output_names: per reference name, which of its outputs are secret.
    :param calls: results for ``call`` by token (a dict, or a callable taking MockCallArgs).
    :param command_timeout: seconds one remote command may run.
    :param host_key_algorithms: ``"pinned"`` offers only the pinned host key's algorithm when
        ``connection.hostKey`` is set; ``"go-default"`` offers golang.org/x/crypto/ssh's default
        list (ECDSA first, Ed25519 last), as a Go client that does not restrict would.
    """

    def __init__(
        self,
        stack_outputs: Mapping[str, Mapping[str, Any]] | Mapping[str, Any] | None = None,
        secret_output_names: Mapping[str, Sequence[str]] | None = None,
        calls: Mapping[str, Any] | None = None,
        command_timeout: float = 1800,
        host_key_algorithms: str = "pinned",
        log: Callable[[str], None] | None = None,
        dial: Callable[[str, int], tuple[str, int]] | None = None,
    ):
        self.dial = dial
        self.stack_outputs = dict(stack_outputs or {})
        self.secret_output_names = dict(secret_output_names or {})
        self.calls = dict(calls or {})
        self.command_timeout = command_timeout
        self.host_key_algorithms = host_key_algorithms
        self.log = log
        self.runs: list[CommandRun] = []
        self.resources: list[tuple[str, str, dict]] = []  # (type, name, state) in creation order
        self._lock = threading.Lock()

    # -- helpers for assertions --
    def run_named(self, name: str) -> CommandRun:
        matches = [r for r in self.runs if r.name == name]
        if len(matches) != 1:
            raise KeyError(f"{len(matches)} runs named {name!r}; ran: {[r.name for r in self.runs]}")
        return matches[0]

    def state_of(self, typ: str, name: str) -> dict:
        for t, n, s in self.resources:
            if t == typ and n == name:
                return s
        raise KeyError(f"no {typ} named {name!r}")

    # -- pulumi.runtime.Mocks --
    def new_resource(self, args: pulumi.runtime.MockResourceArgs):
        typ, name, inputs = args.typ, args.name, dict(args.inputs)
        if typ == "pulumi:pulumi:StackReference":
            ref = args.resource_id or inputs.get("name") or name
            outputs = self.stack_outputs.get(ref, self.stack_outputs)
            state = {
                "name": ref,
                "outputs": dict(outputs),
                "secretOutputNames": list(self.secret_output_names.get(ref, [])),
            }
            rid = ref
        elif typ == "command:remote:Command":
            rid, state = self._command(name, inputs)
        elif typ in TLS_HANDLERS:
            if _has_unknown(inputs):
                raise ValueError(f"{typ} {name}: inputs not known (preview?)")
            state = TLS_HANDLERS[typ](inputs)
            rid = plain(state.get("id")) or f"{name}_id"
        else:
            rid, state = f"{name}_id", inputs
        with self._lock:
            self.resources.append((typ, name, state))
        return rid, state

    def call(self, args: pulumi.runtime.MockCallArgs):
        result = self.calls.get(args.token)
        if callable(result):
            result = result(args)
        return (dict(result or {}), [])

    def _command(self, name: str, inputs: dict) -> tuple[str, dict]:
        if _has_unknown(inputs):
            raise RemoteCommandError(f"{name}: inputs not known (preview?); RealMocks runs commands only on up")
        create = plain(inputs.get("create"))
        rid = f"{name}_{secrets.token_hex(4)}"
        if create is None:  # pulumi-command: nothing runs
            return rid, dict(inputs)
        conn = plain(inputs["connection"])
        stdin = plain(inputs.get("stdin"))
        env = plain(inputs.get("environment")) or {}
        started = time.monotonic()
        if self.log:
            self.log(f"[real-mocks] {name}: running on {conn.get('host')}:{int(float(conn.get('port', 22)))}")
        try:
            code, out, err = run_remote(
                conn,
                create,
                stdin=stdin,
                environment=env,
                timeout=self.command_timeout,
                host_key_algorithms=self.host_key_algorithms,
                dial=self.dial,
            )
        except (OSError, paramiko.SSHException, socket.timeout) as e:
            raise RemoteCommandError(f"{name}: {e}") from e
        elapsed = time.monotonic() - started
        with self._lock:
            self.runs.append(
                CommandRun(
                    name=name,
                    host=conn["host"],
                    port=int(float(conn.get("port", 22))),
                    started=started,
                    elapsed=elapsed,
                    exit_code=code,
                    stdout=_trim(out),
                    stderr=_trim(err),
                )
            )
        if self.log:
            self.log(f"[real-mocks] {name}: exit {code} after {elapsed:.1f}s")
        if code != 0:
            raise RemoteCommandError(
                f"{name}: Process exited with status {code}: running {create[:200]!r}:\n{out}{err}"
            )
        return rid, {**inputs, "stdout": _trim(out), "stderr": _trim(err)}
