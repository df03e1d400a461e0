"""One flaky host is that host's error: what vLLM or Docker answer badly becomes the host's HostError, never an
exception that escapes a fan-out. vLLM is a local http.server on 127.0.0.1 answering from a table; Docker is a
fake client that raises what docker-py, requests, urllib3 and paramiko raise."""

from __future__ import annotations

import json
import socket
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import docker.errors
import paramiko
import pytest
import requests
import urllib3.exceptions

from fleetctl.core.metrics import TTFT
from fleetctl.errors import HostError
from fleetctl.services.runtime import HostRuntime
from fleetctl.transport.vllm import VllmClient

GOOD_METRICS = (
    "# TYPE vllm:num_requests_running gauge\nvllm:num_requests_running 0\n"
    "# TYPE vllm:num_requests_waiting gauge\nvllm:num_requests_waiting 0\n"
)


def serve(answers: dict[str, tuple[int, str]]):
    """A server answering each path from ``answers`` (status, body); anything else 404."""

    class Handler(BaseHTTPRequestHandler):
        def _answer(self):
            status, body = answers.get(self.path, (404, "not found"))
            data = body.encode()
            self.send_response(status)
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        do_GET = do_POST = _answer

        def log_message(self, *args):
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, args=(0.05,), daemon=True).start()
    return server


@pytest.fixture
def vllm():
    servers = []

    def start(answers):
        server = serve(answers)
        servers.append(server)
        return VllmClient("gpu-01", f"http://127.0.0.1:{server.server_port}", timeout_s=5)

    yield start
    for s in servers:
        s.shutdown()
        s.server_close()


def kind_of(call) -> str:
    with pytest.raises(HostError) as e:
        call()
    assert e.value.host == "gpu-01" and "\n" not in e.value.reason
    return e.value.kind


@pytest.mark.parametrize(
    ("body", "kind"),
    [
        ("<html>gateway</html>", "vllm_bad_answer"),
        ("[1, 2]", "vllm_bad_answer"),
        ('{"data": "m"}', "vllm_bad_answer"),
        ('{"object": "list"}', "vllm_bad_answer"),
        ("", "vllm_bad_answer"),
    ],
)
def test_models_that_are_not_vllms_json_are_the_hosts_error(vllm, body, kind):
    assert kind_of(vllm({"/v1/models": (200, body)}).models) == kind


def test_models_skips_entries_without_a_name(vllm):
    body = json.dumps({"data": [{"id": "m"}, {"id": 3}, "x", {"name": "n"}]})
    assert vllm({"/v1/models": (200, body)}).models() == ["m"]


@pytest.mark.parametrize(
    ("status", "body", "kind"),
    [
        (200, "not json", "vllm_bad_answer"),
        (200, '"a string"', "vllm_bad_answer"),
        (200, '{"choices": "x"}', "unhealthy"),
        (200, '{"choices": [3]}', "unhealthy"),
        (200, '{"choices": [{"finish_reason": "abort"}]}', "unhealthy"),
        (500, "Internal Server Error\nTraceback...", "unhealthy"),
    ],
)
def test_a_bad_completion_is_the_hosts_error(vllm, status, body, kind):
    assert kind_of(lambda: vllm({"/v1/completions": (status, body)}).complete("m")) == kind


def test_a_good_completion(vllm):
    body = json.dumps({"choices": [{"finish_reason": "length", "text": "hi"}]})
    assert vllm({"/v1/completions": (200, body)}).complete("m")["choices"][0]["text"] == "hi"


@pytest.mark.parametrize(
    "page",
    [
        "<html>this is not prometheus</html>",
        "vllm:num_requests_running{engine=0} 1\n",
        f"# TYPE {TTFT} histogram\n{TTFT}_bucket 1\n",  # a bucket without its le label
        f'# TYPE {TTFT} histogram\n{TTFT}_bucket{{le="abc"}} 1\n',
        "\x00\x01\x02",
    ],
)
def test_a_metrics_page_that_does_not_parse_is_the_hosts_error(vllm, page):
    assert kind_of(vllm({"/metrics": (200, page)}).metrics) == "metrics_unreadable"


def test_a_family_fleetctl_does_not_read_is_not_parsed_but_the_page_must_still_be_prometheus(vllm):
    page = '# TYPE vllm:x histogram\nvllm:x_bucket{le="abc"} 1\n# TYPE vllm:num_requests_running gauge\n'
    page += 'vllm:num_requests_running{engine="0"} 2\n'
    assert vllm({"/metrics": (200, page)}).metrics().gauge("vllm:num_requests_running") == 2.0
    assert kind_of(vllm({"/metrics": (200, page + "<html>\n")}).metrics) == "metrics_unreadable"


def test_a_metrics_page_that_parses(vllm):
    assert vllm({"/metrics": (200, GOOD_METRICS)}).metrics().gauge("vllm:num_requests_running") == 0.0


def test_nothing_listening_is_unreachable():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    client = VllmClient("gpu-01", f"http://127.0.0.1:{port}", timeout_s=5)
    assert kind_of(client.health) == "vllm_unreachable"
    assert kind_of(lambda: client.complete("m")) == "vllm_unreachable"


# -- Docker ---------------------------------------------------------------------------------------------------------

BROKEN = [
    requests.ConnectionError("('Connection aborted.', RemoteDisconnected('closed'))"),
    requests.ReadTimeout("read timed out"),
    urllib3.exceptions.ProtocolError("Connection broken: IncompleteRead"),
    paramiko.ChannelException(2, "Connect failed"),
    paramiko.SSHException("SSH session not active"),
    docker.errors.DockerException("the SSH connection to the host is closed"),
    docker.errors.APIError("500 Server Error: Internal Server Error"),
    TimeoutError("timed out"),
    EOFError(),
]


class Broken:
    """A docker-py client whose every call raises ``error``."""

    def __init__(self, error):
        self.error = error
        self.containers = self.images = self.api = self

    def get(self, *args, **kwargs):
        raise self.error

    run = pull = get


@pytest.mark.parametrize("error", BROKEN, ids=lambda e: type(e).__name__)
@pytest.mark.parametrize(
    "operation",
    [
        lambda r: r.current(),
        lambda r: r.previous(),
        lambda r: r.start(),
        lambda r: r.stop(10),
        lambda r: r.restore(),
        lambda r: r.ensure_image("vllm/vllm-openai:v1"),
    ],
    ids=["current", "previous", "start", "stop", "restore", "ensure_image"],
)
def test_a_broken_docker_transport_is_the_hosts_error(error, operation):
    with pytest.raises(HostError) as e:
        operation(HostRuntime("gpu-01", Broken(error)))
    assert e.value.host == "gpu-01" and e.value.kind in ("docker_unavailable", "pull_failed")
    assert e.value.__cause__ is error


def test_a_bug_is_still_a_bug():
    with pytest.raises(ZeroDivisionError):
        HostRuntime("gpu-01", Broken(ZeroDivisionError())).current()
