#!/usr/bin/env python3
"""GitLab STAND-IN (not GitLab) for the delivery e2e harness.

* :80 (GitLab's nginx) and :5005 (the registry's nginx): every request is answered with JSON
  echoing the raw request target byte for byte, Host, every header and the client address;
  `/-/readiness` and `/-/health` answer only loopback clients, as GitLab's monitoring
  whitelist does by default; readiness turns ready 3 s after start, or as configured in
  /etc/gitlab/gitlab-standin.json ({"ready": false} keeps it not ready until the file
  /etc/gitlab/gitlab-standin.ready exists). `/api/v4/...` answers like the echo (200).
* :22: an SSH identification banner (RFC 4253), then the connection is closed.
* Each HTTP request is appended to /var/log/gitlab/standin-requests.jsonl.
"""

import json
import os
import signal
import socket
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

START = time.monotonic()
CONFIG = "/etc/gitlab/gitlab-standin.json"
READY_FLAG = "/etc/gitlab/gitlab-standin.ready"
REQUESTS_LOG = "/var/log/gitlab/standin-requests.jsonl"
VERSION = os.environ.get("GITLAB_STANDIN_VERSION", "")
_log_lock = threading.Lock()


def settings() -> dict:
    try:
        with open(CONFIG) as f:
            return json.load(f)
    except (OSError, ValueError):
        return {}


def ready() -> bool:
    if os.path.exists(READY_FLAG):
        return True
    cfg = settings()
    if cfg.get("ready") is False:
        return False
    return time.monotonic() - START >= float(cfg.get("ready_after_seconds", 3))


def handler_for(service: str, port: int):
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def _send(self, status: int, payload: dict) -> None:
            body = json.dumps(payload).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            if self.command != "HEAD":
                self.wfile.write(body)

        def _answer(self) -> None:
            length = int(self.headers.get("Content-Length") or 0)
            if length:
                self.rfile.read(length)
            client = self.client_address[0]
            record = {
                "service": service, "port": port, "method": self.command, "raw_path": self.path,
                "host": self.headers.get("Host"), "headers": [[k, v] for k, v in self.headers.items()],
                "client": client, "version": VERSION,
            }
            with _log_lock:
                try:
                    with open(REQUESTS_LOG, "a") as f:
                        f.write(json.dumps(record) + "\n")
                except OSError:
                    pass
            path = self.path.split("?", 1)[0]
            if path in ("/-/readiness", "/-/health", "/-/liveness"):
                if not client.startswith("127."):
                    self._send(404, {"message": "404 Not Found"})
                elif ready():
                    self._send(200, {"status": "ok", "master_check": [{"status": "ok"}]})
                else:
                    self._send(503, {"status": "failed", "master_check": [{"status": "failed"}]})
                return
            self._send(200, record)

        do_GET = do_POST = do_PUT = do_DELETE = do_HEAD = do_PATCH = _answer

        def log_message(self, fmt: str, *args) -> None:
            print(f"[{service}] {self.client_address[0]} {fmt % args}", flush=True)

    return Handler


def ssh_banner() -> None:
    srv = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    srv.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    srv.bind(("", 22))
    srv.listen(16)
    while True:
        conn, addr = srv.accept()
        try:
            conn.sendall(b"SSH-2.0-GitLab-standin\r\n")
            print(f"[ssh] banner sent to {addr[0]}", flush=True)
        finally:
            conn.close()


def main() -> None:
    # PID 1 ignores signals it has no handler for: stop on SIGTERM as GitLab does.
    signal.signal(signal.SIGTERM, lambda *_: os._exit(0))
    os.makedirs(os.path.dirname(REQUESTS_LOG), exist_ok=True)
    for service, port in (("gitlab", 80), ("registry", 5005)):
        server = ThreadingHTTPServer(("", port), handler_for(service, port))
        threading.Thread(target=server.serve_forever, daemon=True).start()
    threading.Thread(target=ssh_banner, daemon=True).start()
    print(f"GitLab stand-in {VERSION} listening on 80, 5005, 22", flush=True)
    while True:
        time.sleep(3600)


if __name__ == "__main__":
    main()
