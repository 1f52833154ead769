#!/usr/bin/env python3
"""Echo application of the e2e harness: every request is answered with JSON naming the app
($APP_NAME, else the container's hostname) and echoing the request line, Host and headers."""

import json
import os
import signal
import socket
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

NAME = os.environ.get("APP_NAME") or socket.gethostname()
PORT = int(os.environ.get("PORT", "8080"))


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def _answer(self) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        if length:
            self.rfile.read(length)
        body = json.dumps({
            "app": NAME,
            "method": self.command,
            "raw_path": self.path,
            "host": self.headers.get("Host"),
            "headers": [[k, v] for k, v in self.headers.items()],
            "client": self.client_address[0],
        }).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)

    do_GET = do_POST = do_PUT = do_DELETE = do_HEAD = do_PATCH = _answer

    def log_message(self, fmt: str, *args) -> None:
        print(f"{self.client_address[0]} host={self.headers.get('Host') if hasattr(self, 'headers') else '-'} {fmt % args}", flush=True)


# PID 1 ignores signals it has no handler for: stop on SIGTERM as an app should.
signal.signal(signal.SIGTERM, lambda *_: os._exit(0))
ThreadingHTTPServer(("", PORT), Handler).serve_forever()
