"""A small Docker Engine API client for the e2e harness: the hosts' daemons over mutual TLS (the
endpoint and certificates the program configured) and the harness's own daemon over its unix
socket. Only the standard library: http.client, ssl, json.

Every call is bounded by a timeout. Errors carry the method, path, status and the daemon's
message.
"""

from __future__ import annotations

import http.client
import json
import os
import socket
import ssl
import tempfile
import urllib.parse
from typing import Any, Iterable, Iterator, Mapping, Optional

API = "/v1.41"  # Docker 20.10 (Debian 12's docker.io) speaks API 1.41; later engines accept it


class DockerApiError(RuntimeError):
    def __init__(self, method: str, path: str, status: int, message: str) -> None:
        super().__init__(f"{method} {path}: {status} {message}")
        self.status = status
        self.message = message


class _UnixConnection(http.client.HTTPConnection):
    def __init__(self, path: str, timeout: float) -> None:
        super().__init__("docker", timeout=timeout)
        self._path = path

    def connect(self) -> None:
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.sock.settimeout(self.timeout)
        self.sock.connect(self._path)


class _TlsConnection(http.client.HTTPConnection):
    """HTTPS to `dial`, the certificate checked against `server_name` (the endpoint's host)."""

    def __init__(self, dial: tuple[str, int], server_name: str, context: ssl.SSLContext, timeout: float) -> None:
        super().__init__(dial[0], dial[1], timeout=timeout)
        self._context = context
        self._server_name = server_name

    def connect(self) -> None:
        sock = socket.create_connection((self.host, self.port), self.timeout)
        self.sock = self._context.wrap_socket(sock, server_hostname=self._server_name)


class DockerEngine:
    """One Docker daemon.

    :param url: ``tcp://host:port`` (TLS, with ``ca``/``cert``/``key`` PEM text) or
        ``unix:///path``.
    :param connect_to: (host, port) actually dialed, when it differs from the URL's (the harness
        maps stack addresses to ports published on 127.0.0.1); the server certificate is still
        checked against the URL's host.
    """

    def __init__(
        self,
        url: str,
        *,
        ca: Optional[str] = None,
        cert: Optional[str] = None,
        key: Optional[str] = None,
        connect_to: Optional[tuple[str, int]] = None,
        timeout: float = 120,
    ) -> None:
        self.url = url
        self.timeout = timeout
        parsed = urllib.parse.urlparse(url)
        self.scheme = parsed.scheme
        if self.scheme == "unix":
            self.socket_path = parsed.path
            self._ssl = None
        elif self.scheme == "tcp":
            if not (ca and cert and key):
                raise ValueError(f"{url}: the harness talks to tcp:// daemons with mutual TLS only")
            self.server_name = parsed.hostname or ""
            self.dial = connect_to or (self.server_name, parsed.port or 2376)
            self._ssl = self._tls_context(ca, cert, key)
        else:
            raise ValueError(f"unsupported Docker endpoint {url!r}")

    @staticmethod
    def _tls_context(ca: str, cert: str, key: str) -> ssl.SSLContext:
        ctx = ssl.create_default_context(ssl.Purpose.SERVER_AUTH, cadata=ca)
        ctx.check_hostname = True
        # load_cert_chain needs files: a private temp folder, removed at once.
        with tempfile.TemporaryDirectory(prefix="delivery-e2e-tls-") as d:
            os.chmod(d, 0o700)
            cert_path, key_path = os.path.join(d, "cert.pem"), os.path.join(d, "key.pem")
            with open(cert_path, "w") as f:
                f.write(cert)
            with open(os.open(key_path, os.O_WRONLY | os.O_CREAT, 0o600), "w") as f:
                f.write(key)
            ctx.load_cert_chain(cert_path, key_path)
        return ctx

    def _connection(self, timeout: Optional[float]) -> http.client.HTTPConnection:
        t = timeout or self.timeout
        if self.scheme == "unix":
            return _UnixConnection(self.socket_path, t)
        assert self._ssl is not None
        return _TlsConnection(self.dial, self.server_name, self._ssl, t)

    # -- plumbing -----------------------------------------------------------------------------
    def request(
        self,
        method: str,
        path: str,
        *,
        query: Optional[Mapping[str, Any]] = None,
        body: Any = None,
        raw: Optional[bytes | Iterable[bytes]] = None,
        content_type: str = "application/json",
        timeout: Optional[float] = None,
        expect: Iterable[int] = (200, 201, 204),
    ) -> tuple[int, bytes]:
        url = API + path
        if query:
            url += "?" + urllib.parse.urlencode({k: v for k, v in query.items() if v is not None})
        headers = {"Host": "docker"}
        data: Any = None
        chunked = False
        if body is not None:
            data = json.dumps(body).encode()
            headers["Content-Type"] = "application/json"
        elif raw is not None:
            data = raw
            headers["Content-Type"] = content_type
            chunked = not isinstance(raw, (bytes, bytearray))
        conn = self._connection(timeout)
        try:
            conn.request(method, url, body=data, headers=headers, encode_chunked=chunked)
            resp = conn.getresponse()
            payload = resp.read()
        finally:
            conn.close()
        if resp.status not in tuple(expect):
            try:
                message = json.loads(payload).get("message", payload.decode(errors="replace"))
            except ValueError:
                message = payload.decode(errors="replace")
            raise DockerApiError(method, path, resp.status, message.strip())
        return resp.status, payload

    def json(self, method: str, path: str, **kwargs: Any) -> Any:
        _, payload = self.request(method, path, **kwargs)
        return json.loads(payload) if payload.strip() else None

    def stream(self, method: str, path: str, *, timeout: Optional[float] = None) -> Iterator[bytes]:
        """The body of a GET, chunk by chunk (image export)."""
        conn = self._connection(timeout)
        try:
            conn.request(method, API + path, headers={"Host": "docker"})
            resp = conn.getresponse()
            if resp.status != 200:
                raise DockerApiError(method, path, resp.status, resp.read().decode(errors="replace"))
            while True:
                chunk = resp.read(1 << 20)
                if not chunk:
                    return
                yield chunk
        finally:
            conn.close()

    # -- objects ------------------------------------------------------------------------------
    def ping(self) -> bool:
        try:
            _, body = self.request("GET", "/_ping", timeout=10)
        except (OSError, DockerApiError, ssl.SSLError):
            return False
        return body.strip() == b"OK"

    def inspect(self, kind: str, name: str) -> Optional[dict[str, Any]]:
        """containers/images/networks/volumes by name or ID; None when missing."""
        path = {"container": "/containers/{}/json", "image": "/images/{}/json", "network": "/networks/{}",
                "volume": "/volumes/{}"}[kind].format(urllib.parse.quote(name, safe=""))
        try:
            return self.json("GET", path)
        except DockerApiError as e:
            if e.status == 404:
                return None
            raise

    def load_image(self, chunks: Iterable[bytes], timeout: float = 600) -> str:
        _, body = self.request("POST", "/images/load", query={"quiet": "1"}, raw=chunks,
                               content_type="application/x-tar", timeout=timeout)
        text = body.decode(errors="replace")
        if '"error"' in text:
            raise DockerApiError("POST", "/images/load", 200, text)
        return text

    def containers(self, label: Optional[str] = None) -> list[dict[str, Any]]:
        filters = json.dumps({"label": [label]}) if label else None
        return self.json("GET", "/containers/json", query={"all": "1", "filters": filters})

    def exec(self, container: str, cmd: list[str], timeout: float = 60) -> tuple[int, str]:
        """Run `cmd` in a running container; (exit code, combined output)."""
        created = self.json("POST", f"/containers/{container}/exec",
                            body={"Cmd": cmd, "AttachStdout": True, "AttachStderr": True})
        _, raw = self.request("POST", f"/exec/{created['Id']}/start", body={"Detach": False, "Tty": False},
                              timeout=timeout)
        out = _demux(raw)
        info = self.json("GET", f"/exec/{created['Id']}/json")
        return int(info["ExitCode"]), out


def _demux(raw: bytes) -> str:
    """Docker's multiplexed stream (8-byte frame headers) as text."""
    out = bytearray()
    i = 0
    while i + 8 <= len(raw):
        size = int.from_bytes(raw[i + 4 : i + 8], "big")
        out += raw[i + 8 : i + 8 + size]
        i += 8 + size
    return out.decode(errors="replace")
