"""A fault-injecting HTTP proxy on loopback, in front of moto's S3 server (tests only).

Every request is forwarded to the upstream server unless `fail(method, path, headers)` says
otherwise; a failed request gets its connection closed without a response (what a dying
endpoint or a reset looks like to a client). A request `cut(method, path, headers)` selects is
answered with the object's full length announced and half its body sent (a connection that
breaks mid-transfer). A request `hang(method, path, headers)` selects is never answered: the
connection stays open and silent until the proxy stops (a hung endpoint). A request
`answer(method, path, headers)` returns `(status, body)` for is answered that way by the proxy
itself (a store refusing it).
"""

from __future__ import annotations

import http.client
import http.server
import socket
import threading
from typing import Callable


class FaultProxy:
    def __init__(self, upstream: str, fail: Callable[[str, str, dict], bool] | None = None, cut: Callable[[str, str, dict], bool] | None = None,
                 hang: Callable[[str, str, dict], bool] | None = None,
                 answer: Callable[[str, str, dict], tuple[int, bytes] | None] | None = None):
        host, port = upstream.split("://", 1)[1].rsplit(":", 1)
        self.upstream = (host, int(port))
        self.fail = fail or (lambda method, path, headers: False)
        self.cut = cut or (lambda method, path, headers: False)
        self.hang = hang or (lambda method, path, headers: False)
        self._stopped = threading.Event()
        self.answer = answer or (lambda method, path, headers: None)
        self.requests: list[tuple[str, str, bool]] = []
        proxy = self

        class Handler(http.server.BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def _forward(self):
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length) if length else None
                headers = {k: v for k, v in self.headers.items()}
                failed = proxy.fail(self.command, self.path, headers)
                proxy.requests.append((self.command, self.path, failed))
                if proxy.hang(self.command, self.path, headers):
                    proxy._stopped.wait()
                    self.close_connection = True
                    return
                if failed:
                    self.close_connection = True
                    self.connection.shutdown(socket.SHUT_RDWR)
                    return
                answered = proxy.answer(self.command, self.path, headers)
                if answered is not None:
                    status, content = answered
                    self.send_response(status)
                    self.send_header("Content-Type", "application/json")
                    self.send_header("Content-Length", str(len(content)))
                    self.end_headers()
                    self.wfile.write(content)
                    return
                conn = http.client.HTTPConnection(*proxy.upstream, timeout=30)
                conn.request(self.command, self.path, body=body, headers=headers)
                response = conn.getresponse()
                data = response.read()
                self.send_response(response.status)
                for key, value in response.getheaders():
                    if key.lower() not in ("content-length", "transfer-encoding", "connection"):
                        self.send_header(key, value)
                # A HEAD answer keeps the object's own length (its size, to the client).
                length = response.getheader("Content-Length") if self.command == "HEAD" else None
                self.send_header("Content-Length", length or str(len(data)))
                self.end_headers()
                if self.command != "HEAD" and proxy.cut(self.command, self.path, headers):
                    self.wfile.write(data[: len(data) // 2])
                    self.wfile.flush()
                    self.close_connection = True
                    self.connection.shutdown(socket.SHUT_RDWR)
                elif self.command != "HEAD":
                    self.wfile.write(data)
                conn.close()

            do_GET = do_PUT = do_POST = do_DELETE = do_HEAD = _forward

            def log_message(self, *args):
                pass

        self._server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._server.daemon_threads = True
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self._server.server_address[1]}"

    def __enter__(self):
        self._thread.start()
        return self

    def __exit__(self, *exc):
        self._stopped.set()
        self._server.shutdown()
        self._server.server_close()


def closed_port() -> int:
    """A loopback port nothing listens on."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]
