"""A flaky host through the whole command: `fleetctl drain` of two hosts where one vLLM answers a /metrics page
that does not parse. That host fails (exit 3), the other is drained and reported; no internal error.
Everything is local: a fake vllm-router and two fake vLLMs on 127.0.0.1, told apart by port."""

from __future__ import annotations

import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, urlsplit

import pytest
from typer.testing import CliRunner

from fleetctl.cli.app import app

GOOD = "# TYPE vllm:num_requests_running gauge\nvllm:num_requests_running 0\n"
BAD = "<html><body>502 Bad Gateway</body></html>\n"


def start(handler_class):
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler_class)
    threading.Thread(target=server.serve_forever, args=(0.05,), daemon=True).start()
    return server


def vllm_answering(page: str):
    class Vllm(BaseHTTPRequestHandler):
        def do_GET(self):
            data = page.encode()
            self.send_response(200)
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def log_message(self, *args):
            pass

    return Vllm


def router_holding(workers: list[str]):
    class Router(BaseHTTPRequestHandler):
        def _answer(self, doc):
            data = json.dumps(doc).encode()
            self.send_response(200)
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def do_GET(self):
            self._answer({"urls": workers})

        def do_POST(self):
            parts = urlsplit(self.path)
            url = parse_qs(parts.query)["url"][0]
            (workers.append if parts.path == "/add_worker" else workers.remove)(url)
            self._answer({})

        def log_message(self, *args):
            pass

    return Router


@pytest.fixture
def servers():
    started = []
    yield started
    for s in started:
        s.shutdown()
        s.server_close()


def test_a_metrics_page_that_does_not_parse_fails_that_host_only(tmp_path, servers, monkeypatch):
    monkeypatch.setenv("HOME", str(tmp_path))  # no ~/.ssh/config of the machine running the tests
    good, bad = start(vllm_answering(GOOD)), start(vllm_answering(BAD))
    urls = {"gpu-01": f"http://127.0.0.1:{good.server_port}", "gpu-02": f"http://127.0.0.1:{bad.server_port}"}
    workers = list(urls.values())
    router = start(router_holding(workers))
    servers += [good, bad, router]
    fleet = tmp_path / "fleet.toml"
    fleet.write_text(
        f'[fleet]\nname = "t"\n\n[router]\nurl = "http://127.0.0.1:{router.server_port}"\nmin_serving = 0\n\n'
        '[[hosts]]\nname = "gpu-01"\naddress = "127.0.0.1"\n\n[[hosts]]\nname = "gpu-02"\naddress = "127.0.0.1"\n'
    )
    record = {"profile": "p", "image": "i", "revision": "r1", "since": "2026-01-01T00:00:00Z"}
    state = {"schema": "fleetctl.state/v1", "serving": {h: {"url": u, **record} for h, u in urls.items()}}
    (tmp_path / ".fleetctl").mkdir()
    (tmp_path / ".fleetctl" / "state.json").write_text(json.dumps(state))

    result = CliRunner().invoke(app, ["--fleet", str(fleet), "drain", "gpu-01", "gpu-02", "--timeout", "5"])

    assert result.exit_code == 3, result.output
    assert "internal error" not in result.output and "Traceback" not in result.output
    assert "gpu-01: drained" in result.stdout
    assert "gpu-02: /metrics: not Prometheus text" in result.stdout
    assert workers == []  # both are out of the router: the failed one stays out
