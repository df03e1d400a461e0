"""The stand-in's HTTP side: vLLM 0.32's routes on a ThreadingHTTPServer, SSE streams in chunked encoding."""

from __future__ import annotations

import contextlib
import hashlib
import hmac
import json
import socketserver
import sys
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

try:
    from . import engine as eng
    from . import metrics as m
    from . import shapes
except ImportError:  # run as a script: server.py's folder is on sys.path
    import engine as eng  # type: ignore[no-redef]
    import metrics as m  # type: ignore[no-redef]
    import shapes  # type: ignore[no-redef]

GET, POST = "GET", "POST"
ROUTES = {
    ("/health", GET): "health",
    ("/ping", GET): "health",
    ("/ping", POST): "health",
    ("/version", GET): "version",
    ("/v1/models", GET): "models",
    ("/metrics", GET): "metrics",
    ("/v1/completions", POST): "completions",
    ("/v1/chat/completions", POST): "chat",
}
PATHS = {path for path, _ in ROUTES}
GUARDED_PREFIX = ("/v1", "/v2", "/inference", "/cohere")  # vLLM 0.32's AuthenticationMiddleware
UNAUTHORIZED = {"error": "Unauthorized"}


class StandinServer(ThreadingHTTPServer):
    """Holds what handlers share; counts the requests being answered so a drain can wait for them."""

    daemon_threads = True
    request_queue_size = 128

    def __init__(
        self,
        address,
        served: shapes.Served,
        engine: eng.Engine,
        metrics: m.Metrics,
        access_log: bool = True,
        api_keys: tuple[str, ...] = (),
    ) -> None:
        super().__init__(address, Handler, bind_and_activate=False)
        self.served, self.engine, self.metrics, self.access_log = served, engine, metrics, access_log
        self.key_hashes = tuple(hashlib.sha256(k.encode()).digest() for k in api_keys)
        self.active = 0
        self.active_cond = threading.Condition()

    def server_bind(self) -> None:
        # HTTPServer.server_bind would look up the host's FQDN, which can hang where DNS is unreachable.
        socketserver.TCPServer.server_bind(self)
        self.server_name, self.server_port = str(self.server_address[0]), int(self.server_address[1])

    def authorized(self, path: str, authorization: str | None) -> bool:
        """vLLM's check: paths under GUARDED_PREFIX need ``Bearer <one of the keys>`` when keys are set."""
        if not self.key_hashes or not path.startswith(GUARDED_PREFIX):
            return True
        scheme, _, token = (authorization or "").partition(" ")
        if scheme.lower() != "bearer":
            return False
        digest = hashlib.sha256(token.encode()).digest()
        return any(hmac.compare_digest(digest, k) for k in self.key_hashes)

    def wait_answered(self, timeout: float) -> bool:
        with self.active_cond:
            return self.active_cond.wait_for(lambda: self.active == 0, timeout)


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server: StandinServer

    def version_string(self) -> str:
        return "uvicorn"

    def do_GET(self) -> None:
        self._dispatch(GET)

    def do_POST(self) -> None:
        self._dispatch(POST)

    def log_request(self, code: int | str = "-", size: int | str = "-") -> None:
        """uvicorn's access line: request, status, reason phrase."""
        status = int(code) if code != "-" else 0
        self.log_message('"%s" %s %s', self.requestline, status or "-", self.responses.get(status, ("",))[0])

    def log_message(self, format: str, *args: Any) -> None:
        if self.server.access_log:
            sys.stdout.write(f"INFO:     {self.client_address[0]}:{self.client_address[1]} - {format % args}\n")
            sys.stdout.flush()

    def _dispatch(self, method: str) -> None:
        path = self.path.split("?", 1)[0]
        route = ROUTES.get((path, method))
        with self.server.active_cond:
            self.server.active += 1
        try:
            if not self.server.authorized(path, self.headers.get("Authorization")):
                self._read_body()
                self._json(401, UNAUTHORIZED)
            elif route is None:
                self._no_route(path, method)
            else:
                if route not in ("completions", "chat"):  # those count their own status
                    self.server.metrics.count_http(path, method, 200)
                getattr(self, f"_{route}")()
        except shapes.ApiError as e:
            self._json(e.status, e.body())
        except (BrokenPipeError, ConnectionResetError):
            self.close_connection = True
        finally:
            with self.server.active_cond:
                self.server.active -= 1
                self.server.active_cond.notify_all()

    def _no_route(self, path: str, method: str) -> None:
        self._read_body()
        status, detail = (405, "Method Not Allowed") if path in PATHS else (404, "Not Found")
        self.server.metrics.count_http("none", method, status)
        self._json(status, {"detail": detail})

    def _health(self) -> None:
        self._send(200, b"", None)

    def _version(self) -> None:
        self._json(200, {"version": self.server.served.version})

    def _models(self) -> None:
        self._json(200, shapes.models(self.server.served))

    def _metrics(self) -> None:
        self._send(200, self.server.metrics.render().encode(), "text/plain; version=0.0.4; charset=utf-8")

    def _completions(self) -> None:
        self._generate(chat=False)

    def _chat(self) -> None:
        self._generate(chat=True)

    def _generate(self, chat: bool) -> None:
        path = "/v1/chat/completions" if chat else "/v1/completions"
        try:
            ask = shapes.parse_ask(shapes.parse_body(self._read_body()), chat, self.server.served)
            job = self.server.engine.submit(ask.prompt_tokens, ask.max_tokens, ask.ignore_eos)
        except shapes.ApiError as e:
            self.server.metrics.count_http(path, POST, e.status)
            raise
        except (eng.Closed, eng.Rejected) as e:
            self.server.metrics.count_http(path, POST, 500)
            raise shapes.ApiError(500, str(e), "InternalServerError") from e
        if ask.stream:
            self.server.metrics.count_http(path, POST, 200)
            self._stream(ask, job)
        else:
            self._complete(ask, job, path)

    def _complete(self, ask: shapes.Ask, job: eng.Job, path: str) -> None:
        with contextlib.closing(self.server.engine.run(job)) as tokens:
            text = "".join(piece for piece, _ in tokens)
        if job.finish_reason == "error":  # vLLM turns an engine error into HTTP 500
            self.server.metrics.count_http(path, POST, 500)
            raise shapes.ApiError(500, "Internal server error", "InternalServerError")
        self.server.metrics.count_http(path, POST, 200)
        served = self.server.served
        self._json(
            200,
            shapes.full_response(
                ask, shapes.new_id(ask.chat), text, job.finish_reason or "abort", job.generated, served
            ),
        )

    def _stream(self, ask: shapes.Ask, job: eng.Job) -> None:
        served, rid = self.server.served, shapes.new_id(ask.chat)
        self._start_stream()
        with contextlib.closing(self.server.engine.run(job)) as tokens:
            for i, (piece, last) in enumerate(tokens):
                if i == 0 and ask.chat:
                    self._event(shapes.compact(shapes.role_chunk(ask, rid)))
                if last and job.finish_reason == "error":  # vLLM raises before sending that chunk
                    break
                chunk = shapes.token_chunk(ask, rid, piece, job.finish_reason if last else None, served)
                self._event(shapes.compact(chunk))
        if job.finish_reason == "error":
            error = shapes.ApiError(500, "Internal server error", "InternalServerError").body()
            self._event(json.dumps(error).encode())  # vLLM writes this one with json.dumps' spaces
        else:
            if job.finish_reason == "abort":
                self._event(shapes.compact(shapes.token_chunk(ask, rid, "", "abort", served)))
            if ask.include_usage:
                self._event(shapes.compact(shapes.usage_chunk(ask, rid, job.generated, served)))
        self._event(b"[DONE]")
        self._write_chunk(b"")

    def _start_stream(self) -> None:
        self.send_response(200)
        self.send_header("content-type", "text/event-stream; charset=utf-8")
        self.send_header("transfer-encoding", "chunked")
        self.end_headers()

    def _event(self, data: bytes) -> None:
        self._write_chunk(b"data: " + data + b"\n\n")

    def _write_chunk(self, data: bytes) -> None:
        self.wfile.write(b"%x\r\n%s\r\n" % (len(data), data))
        self.wfile.flush()

    def _read_body(self) -> bytes:
        length = int(self.headers.get("content-length") or 0)
        return self.rfile.read(length) if length > 0 else b""

    def _json(self, status: int, body: Any) -> None:
        self._send(status, shapes.compact(body), "application/json")

    def _send(self, status: int, data: bytes, content_type: str | None) -> None:
        self.send_response(status)
        self.send_header("content-length", str(len(data)))
        if content_type:
            self.send_header("content-type", content_type)
        self.end_headers()
        self.wfile.write(data)
