"""Shared HTTP plumbing for the reference engine servers (tts_server.py, stt_server.py).

Standard library only. Provides:
  * ApiError / send_json / send_error: OpenAI-shaped JSON errors
    {"error": {"message", "type", "param", "code"}}
  * ChunkedWriter: HTTP/1.1 chunked response bodies
  * request_body_reader: a bounded reader over the request body that understands
    both Content-Length and Transfer-Encoding: chunked
  * serve(): ThreadingHTTPServer on --host/--port (port 0 = any free port) that prints
    "listening on http://HOST:PORT" (flushed) once the socket is bound.
"""

from __future__ import annotations

import argparse
import hmac
import json
import os
import signal
import socket
import sys
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


class ApiError(Exception):
    """An error that becomes an OpenAI-shaped JSON error response."""

    def __init__(self, status, message, *, param=None, code=None, type_=None):
        super().__init__(message)
        self.status = status
        self.message = message
        self.param = param
        self.code = code
        if type_ is None:
            type_ = "invalid_request_error" if status < 500 else "server_error"
        self.type = type_

    def body(self):
        return {
            "error": {
                "message": self.message,
                "type": self.type,
                "param": self.param,
                "code": self.code,
            }
        }


class BodyTooLarge(ApiError):
    def __init__(self, limit):
        super().__init__(
            413,
            f"request body is larger than the limit of {limit} bytes",
            code="request_too_large",
        )


class JsonHandler(BaseHTTPRequestHandler):
    """BaseHTTPRequestHandler with helpers for JSON APIs. HTTP/1.1 with keep-alive."""

    protocol_version = "HTTP/1.1"
    server_version = "switchyard-engine/1"
    quiet = False
    api_key = None  # when set, every route but /health needs "Authorization: Bearer <api_key>"

    def authorized(self):
        """True when no key is configured or the request carries it; else answers 401."""
        if not self.api_key or self.path.split("?", 1)[0].rstrip("/") == "/health":
            return True
        auth = self.headers.get("Authorization", "")
        if auth.startswith("Bearer ") and hmac.compare_digest(auth[7:].strip().encode(), self.api_key.encode()):
            return True
        self.send_api_error(ApiError(401, "Incorrect API key provided", code="invalid_api_key"),
                            close=self.command == "POST")
        return False

    def log_message(self, fmt, *args):  # noqa: D401 - stdlib signature
        if not self.quiet:
            sys.stderr.write("%s %s\n" % (self.address_string(), fmt % args))

    def send_bytes(self, status, body, content_type, extra_headers=None):
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        for k, v in (extra_headers or {}).items():
            self.send_header(k, v)
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)

    def send_json(self, status, obj, extra_headers=None):
        body = json.dumps(obj).encode()
        self.send_bytes(status, body, "application/json", extra_headers)

    def send_api_error(self, err: ApiError, close=False):
        headers = {"Connection": "close"} if close else None
        if close:
            self.close_connection = True
        self.send_json(err.status, err.body(), headers)

    def read_json_body(self, limit=1 << 20):
        """Read the whole body (at most `limit` bytes), then parse it as a JSON object."""
        data = request_body_reader(self, limit).read_all()
        ctype = self.headers.get("Content-Type", "")
        if "json" not in ctype.lower():
            raise ApiError(400, "expected Content-Type: application/json", code="invalid_content_type")
        try:
            obj = json.loads(data or b"null")
        except ValueError as exc:
            raise ApiError(400, f"request body is not valid JSON: {exc}", code="invalid_json")
        if not isinstance(obj, dict):
            raise ApiError(400, "request body must be a JSON object", code="invalid_json")
        return obj


class BodyReader:
    """Reads a request body (Content-Length or chunked) and refuses more than `limit` bytes.

    read(n) returns up to n bytes (b"" at the end). Raises BodyTooLarge past the limit and
    ApiError(400) on a malformed chunked encoding.
    """

    def __init__(self, rfile, length, chunked, limit):
        self.rfile = rfile
        self.remaining = length  # for Content-Length bodies
        self.chunked = chunked
        self.limit = limit
        self.total = 0
        self.chunk_left = 0
        self.done = (not chunked) and (length == 0)

    def _count(self, data):
        self.total += len(data)
        if self.limit is not None and self.total > self.limit:
            raise BodyTooLarge(self.limit)
        return data

    def read(self, n=65536):
        if self.done:
            return b""
        if not self.chunked:
            data = self.rfile.read(min(n, self.remaining))
            if not data:
                raise ApiError(400, "request body ended early", code="incomplete_body")
            self.remaining -= len(data)
            if self.remaining == 0:
                self.done = True
            return self._count(data)
        if self.chunk_left == 0:
            line = self.rfile.readline(1024)
            try:
                size = int(line.split(b";", 1)[0].strip(), 16)
            except ValueError:
                raise ApiError(400, "malformed chunked request body", code="invalid_body")
            if size == 0:
                # trailers, then the empty line
                while True:
                    line = self.rfile.readline(8192)
                    if line in (b"\r\n", b"\n", b""):
                        break
                self.done = True
                return b""
            self.chunk_left = size
        data = self.rfile.read(min(n, self.chunk_left))
        if not data:
            raise ApiError(400, "request body ended early", code="incomplete_body")
        self.chunk_left -= len(data)
        if self.chunk_left == 0:
            self.rfile.readline(16)  # CRLF after the chunk
        return self._count(data)

    def read_all(self):
        parts = []
        while True:
            b = self.read()
            if not b:
                return b"".join(parts)
            parts.append(b)


def request_body_reader(handler, limit):
    """Return a BodyReader for the handler's request; 413 early when Content-Length > limit."""
    te = handler.headers.get("Transfer-Encoding", "").lower()
    if "chunked" in te:
        return BodyReader(handler.rfile, None, True, limit)
    cl = handler.headers.get("Content-Length")
    if cl is None:
        return BodyReader(handler.rfile, 0, False, limit)
    try:
        length = int(cl)
    except ValueError:
        raise ApiError(400, "invalid Content-Length", code="invalid_body")
    if length < 0:
        raise ApiError(400, "invalid Content-Length", code="invalid_body")
    if limit is not None and length > limit:
        raise BodyTooLarge(limit)
    return BodyReader(handler.rfile, length, False, limit)


class ChunkedWriter:
    """Writes an HTTP/1.1 chunked body. Call write() per chunk and close() at the end."""

    def __init__(self, wfile):
        self.wfile = wfile

    def write(self, data):
        if data:
            self.wfile.write(b"%x\r\n%s\r\n" % (len(data), data))
            self.wfile.flush()

    def close(self):
        self.wfile.write(b"0\r\n\r\n")
        self.wfile.flush()


def base_arg_parser(description):
    p = argparse.ArgumentParser(description=description)
    p.add_argument("--host", default="127.0.0.1", help="address to bind (default 127.0.0.1)")
    p.add_argument("--port", type=int, default=0, help="port to bind; 0 = any free port (default)")
    p.add_argument("--quiet", action="store_true", help="do not log each request to stderr")
    p.add_argument("--api-key", default=os.environ.get("ENGINE_API_KEY") or None,
                   help="require 'Authorization: Bearer KEY' (default $ENGINE_API_KEY; none = open)")
    return p


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True
    request_queue_size = 64


class _Server6(_Server):
    address_family = socket.AF_INET6


def make_server(host, port, handler_cls):
    cls = _Server6 if ":" in host else _Server
    return cls((host, port), handler_cls)


def serve(host, port, handler_cls):
    """Bind, print the listening line, serve until SIGTERM/SIGINT."""
    httpd = make_server(host, port, handler_cls)
    bound_host, bound_port = httpd.server_address[:2]
    shown = bound_host if ":" not in bound_host else f"[{bound_host}]"
    print(f"listening on http://{shown}:{bound_port}", flush=True)

    def stop(signum, frame):
        threading.Thread(target=httpd.shutdown, daemon=True).start()

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    try:
        httpd.serve_forever(poll_interval=0.2)
    finally:
        httpd.server_close()
