"""The front door on the lab, seen from a lab host (a client's position): HAProxy on the lab bridge, vllm-router
on loopback, vLLM stand-ins that want the fleet's worker key. Real sshd, dockerd, vllm-router and HAProxy."""

from __future__ import annotations

import ipaddress
import json
import os
import shutil
import subprocess
import threading
import time
from pathlib import Path

import pytest
from typer.testing import CliRunner

from fleetctl.cli.app import app
from fleetctl.core.door import hash_key
from fleetctl.services.door import door_status
from fleetctl.services.files import load_fleet
from tests.support.env import free_port, require

SPEC = {
    "hosts": [
        {"name": "gpu-01", "nvidia_container_toolkit": "1.17.8"},
        {"name": "gpu-02", "nvidia_container_toolkit": "1.17.8"},
        {"name": "client", "docker": False},
    ]
}
SERVING = "gpu-01,gpu-02"
MODEL = "lab/tiny-llama"
CLIENT_SCRIPT = Path(__file__).with_name("door_client.py")
KEYS = {"alice": ("sk-alice-0123", 100000, 64), "slow": ("sk-slow-0123", 3, 4)}


def keys_toml(clients: dict[str, tuple[str, int, int]]) -> str:
    return "".join(
        f'[[client]]\nname = "{n}"\nkey_sha256 = "{hash_key(k)}"\nrequests_per_minute = {r}\nmax_concurrent = {c}\n\n'
        for n, (k, r, c) in clients.items()
    )


class Door:
    """The lab fleet with a door on the lab bridge, a keys file, a one-slot-per-host profile and a CLI runner."""

    def __init__(self, info) -> None:
        self.info = info
        self.gateway = str(ipaddress.ip_network(info.spec.subnet).network_address + 1)
        self.router_port, self.door_port = free_port(), free_port()
        self.door = f"http://{self.gateway}:{self.door_port}"
        door = f'listen = "{self.gateway}:{self.door_port}"\nkeys_file = "door-keys.toml"\nmax_queue_s = 5\n'
        text = info.fleet_file.read_text().replace(
            'url = "http://127.0.0.1:30000"\n', f'url = "http://127.0.0.1:{self.router_port}"\n{door}'
        )
        info.fleet_file.write_text(text)
        self.keys_file = info.fleet_file.parent / "door-keys.toml"
        self.keys_file.write_text(keys_toml(KEYS))
        profiles = info.fleet_file.parent / "profiles"
        stable = (profiles / "stable.toml").read_text()
        tiny = stable.replace(
            'args = ["--max-model-len", "4096"]', 'args = ["--max-model-len", "4096", "--max-num-seqs", "1"]'
        )
        (profiles / "door-tiny.toml").write_text(tiny.replace('name = "stable"', 'name = "door-tiny"'))
        following = (profiles / "next.toml").read_text()  # the upgrade target: same model, vLLM 0.32.1
        following = following.replace(
            'args = ["--max-model-len", "4096"]', 'args = ["--max-model-len", "4096", "--max-num-seqs", "1"]'
        )
        (profiles / "door-next.toml").write_text(following.replace('name = "next"', 'name = "door-next"'))

    def cli(self, *args: str, ok: bool = True):
        result = CliRunner().invoke(app, ["--fleet", str(self.info.fleet_file), *args])
        if ok:
            assert result.exit_code == 0, f"{args}: exit {result.exit_code}\n{result.stdout}\n{result.stderr}"
        return result

    def in_client(self, *argv: str, timeout: float = 60) -> subprocess.CompletedProcess:
        ns = self.info.host("client").namespace
        return subprocess.run(
            ["nsenter", f"--net=/var/run/netns/{ns}", *argv], capture_output=True, text=True, timeout=timeout
        )

    def curl(self, url: str, *args: str, key: str | None = None) -> tuple[int, dict[str, str], str]:
        """(status or 0 when nothing answered, headers, body) of one request from the client host."""
        auth = ["-H", f"Authorization: Bearer {key}"] if key else []
        run = self.in_client("curl", "-sS", "-m", "30", "-D", "-", *auth, *args, url)
        if run.returncode != 0 or not run.stdout.startswith("HTTP/"):
            return 0, {}, run.stderr
        head, _, body = run.stdout.replace("\r\n", "\n").partition("\n\n")
        lines = head.splitlines()
        headers = {k.strip().lower(): v.strip() for k, _, v in (ln.partition(":") for ln in lines[1:])}
        return int(lines[0].split()[1]), headers, body

    def complete(self, key: str | None, stream: bool = False, max_tokens: int = 4) -> tuple[int, dict[str, str], str]:
        ask = {"model": MODEL, "prompt": "hi", "max_tokens": max_tokens, "stream": stream, "ignore_eos": True}
        body = json.dumps(ask)
        args = ("-H", "Content-Type: application/json", "-d", body)
        return self.curl(f"{self.door}/v1/completions", *args, key=key)

    def load(self, key: str, seconds: float, threads: int, stop_file: str) -> subprocess.Popen:
        ns = self.info.host("client").namespace
        argv = [shutil.which("python3") or "python3", str(CLIENT_SCRIPT), self.door, key, str(seconds), str(threads)]
        return subprocess.Popen(
            ["nsenter", f"--net=/var/run/netns/{ns}", *argv, stop_file], stdout=subprocess.PIPE, text=True
        )


def _require_haproxy() -> None:
    require(shutil.which("haproxy") is not None or os.access("/usr/sbin/haproxy", os.X_OK), "haproxy missing")


@pytest.fixture(scope="module")
def door(lab_factory):
    _require_haproxy()
    d = Door(lab_factory(SPEC, "door"))
    d.cli("router", "up")  # the supervisor starts the door too: the fleet declares [router] listen
    d.cli("deploy", "--profile", "door-tiny", "--limit", SERVING)
    yield d
    d.cli("door", "down", ok=False)
    d.cli("router", "down", ok=False)


def test_admin_paths_are_refused_at_the_door_and_the_router_is_out_of_reach(door):
    for method, path in (("POST", "/add_worker?url=http://10.1.2.3:8000"), ("GET", "/workers"), ("GET", "/metrics")):
        status, _, body = door.curl(f"{door.door}{path}", "-X", method, key=KEYS["alice"][0])
        assert status == 403, (path, status, body)
    assert door.curl(f"{door.door}/health")[0] == 200
    assert door.curl(f"http://{door.gateway}:{door.router_port}/list_workers")[0] == 0  # loopback only
    assert door.curl(f"http://127.0.0.1:{door.router_port}/list_workers")[0] == 0  # the client's own loopback


def test_a_hosts_vllm_port_wants_the_worker_key(door):
    address = door.info.host("gpu-01").address
    status, _, body = door.curl(f"http://{address}:8000/v1/models")
    assert (status, json.loads(body)) == (401, {"error": "Unauthorized"})
    status, _, _ = door.curl(f"http://{address}:8000/v1/completions", "-d", "{}", key=KEYS["alice"][0])
    assert status == 401  # a client key is not the worker key
    assert door.curl(f"http://{address}:8000/health")[0] == 200  # as vLLM: /health is not guarded
    key_file = Path(load_fleet(str(door.info.fleet_file)).state_dir) / "worker.key"
    assert key_file.stat().st_mode & 0o777 == 0o600


def test_inference_streaming_and_not_through_the_door(door):
    status, _, body = door.complete(KEYS["alice"][0])
    assert status == 200 and json.loads(body)["choices"][0]["finish_reason"] in ("stop", "length")
    status, _, body = door.complete(KEYS["alice"][0], stream=True)
    assert status == 200 and body.count("data: ") >= 3 and "data: [DONE]" in body
    status, _, body = door.curl(f"{door.door}/v1/models", key=KEYS["alice"][0])
    assert status == 200 and MODEL in body


def test_no_key_or_a_wrong_key_is_401(door):
    assert door.complete(None)[0] == 401
    assert door.complete("sk-not-a-client")[0] == 401
    assert door.complete(hash_key(KEYS["alice"][0]))[0] == 401  # the stored hash is not a key


def test_past_a_keys_rate_429_with_retry_after(door):
    answers = [door.complete(KEYS["slow"][0]) for _ in range(4)]
    assert [a[0] for a in answers[:3]] == [200, 200, 200]
    status, headers, _ = answers[3]
    assert status == 429 and int(headers["retry-after"]) >= 1


def test_past_the_fleets_capacity_a_request_queues_then_gets_503(door):
    """Two hosts with one slot each: two 10 s streams fill the door; a third waits max_queue_s (5 s), then 503."""
    long = {}

    def stream(i: int) -> None:
        long[i] = door.complete(KEYS["alice"][0], stream=True, max_tokens=1000)[0]

    threads = [threading.Thread(target=stream, args=(i,)) for i in range(2)]
    for t in threads:
        t.start()
    time.sleep(1.0)
    status, _, body = door.complete(KEYS["alice"][0])
    for t in threads:
        t.join()
    assert long == {0: 200, 1: 200}
    assert status == 503, body
    stats = door_status(load_fleet(str(door.info.fleet_file))).stats
    assert stats is not None and stats.slots == 2 and stats.queued_max >= 1 and stats.refusals["capacity"] >= 1


def test_keys_change_under_load_with_no_connection_dropped(door, tmp_path):
    stop = str(tmp_path / "stop")
    load = door.load(KEYS["alice"][0], 60, 3, stop)
    time.sleep(3)
    for n in range(3):
        door.keys_file.write_text(keys_toml({**KEYS, f"new{n}": (f"sk-new-{n}-0123", 600, 4)}))
        door.cli("door", "reload")
        time.sleep(1)
    Path(stop).touch()
    out, _ = load.communicate(timeout=120)
    result = json.loads(out)
    assert result["failed"] == 0 and result["ok"] > 10, result
    assert door.complete("sk-new-2-0123")[0] == 200  # the last keys file is the one in force
    assert door.complete("sk-new-0-0123")[0] == 401


def test_a_drain_under_load_through_the_door_fails_no_request(door, tmp_path):
    stop = str(tmp_path / "stop")
    load = door.load(KEYS["alice"][0], 90, 2, stop)
    time.sleep(3)
    door.cli("drain", "gpu-01", "--reason", "door test")
    assert door_status(load_fleet(str(door.info.fleet_file))).stats.slots == 1  # capacity follows the drain
    time.sleep(2)
    door.cli("undrain", "gpu-01")
    Path(stop).touch()
    out, _ = load.communicate(timeout=120)
    result = json.loads(out)
    assert result["failed"] == 0 and result["ok"] > 10, result
    assert door_status(load_fleet(str(door.info.fleet_file))).stats.slots == 2


def test_an_upgrade_under_load_through_the_door_fails_no_request(door, tmp_path):
    """Both hosts move to another image one at a time while a client with a key keeps asking through the door;
    the new containers carry the worker key too."""
    stop = str(tmp_path / "stop")
    load = door.load(KEYS["alice"][0], 300, 3, stop)
    time.sleep(3)
    door.cli("upgrade", "--profile", "door-next", "--limit", SERVING, "--yes", "--bake-s", "10")
    time.sleep(2)
    Path(stop).touch()
    out, _ = load.communicate(timeout=120)
    result = json.loads(out)
    assert result["failed"] == 0 and result["ok"] > 10, result
    hosts = {h["name"]: h for h in json.loads(door.cli("status", "--limit", SERVING, "--json").stdout)["hosts"]}
    assert {n: (hosts[n]["profile"], hosts[n]["image"]) for n in SERVING.split(",")} == {
        n: ("door-next", "lab/vllm:next") for n in SERVING.split(",")
    }
    for name in SERVING.split(","):
        assert door.curl(f"http://{door.info.host(name).address}:8000/v1/models")[0] == 401
    assert door_status(load_fleet(str(door.info.fleet_file))).stats.slots == 2


@pytest.fixture
def tls_door(door, tmp_path):
    """The door on HTTPS for one test: a self-signed certificate and key in one PEM beside the fleet file
    (relative, as keys_file), then back to plain HTTP."""
    require(shutil.which("openssl") is not None, "openssl missing")
    pem = door.info.fleet_file.parent / "door-tls.pem"
    cert, key = tmp_path / "cert.pem", tmp_path / "key.pem"
    subprocess.run(
        ["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1", "-subj", "/CN=door"]
        + ["-keyout", str(key), "-out", str(cert)],
        check=True,
        capture_output=True,
    )
    pem.write_text(cert.read_text() + key.read_text())
    plain = door.info.fleet_file.read_text()
    door.info.fleet_file.write_text(plain.replace("max_queue_s = 5\n", 'max_queue_s = 5\ntls_cert = "door-tls.pem"\n'))
    try:
        door.cli("door", "reload")
        yield f"https://{door.gateway}:{door.door_port}"
    finally:
        door.info.fleet_file.write_text(plain)
        door.cli("door", "reload")


def test_https_at_the_door_with_tls_cert(door, tls_door):
    status, _, body = door.curl(f"{tls_door}/v1/models", "-k", key=KEYS["alice"][0])
    assert status == 200 and MODEL in body
    status, _, body = door.curl(
        f"{tls_door}/v1/completions",
        "-k",
        "-H",
        "Content-Type: application/json",
        "-d",
        json.dumps({"model": MODEL, "prompt": "hi", "max_tokens": 4}),
        key=KEYS["alice"][0],
    )
    assert status == 200 and json.loads(body)["choices"], body
    assert door.curl(f"{tls_door}/v1/models", "-k")[0] == 401  # the keys still apply behind TLS
    assert door.curl(f"{door.door}/health")[0] == 0  # plain HTTP on the TLS port gets no HTTP answer
    doc = json.loads(door.cli("door", "status", "--json").stdout)
    assert doc["pid"] is not None, doc


def test_router_up_started_the_door_and_router_down_stops_it(door):
    """Last in this file: it takes the shared router and door down."""
    doc = json.loads(door.cli("door", "status", "--json").stdout)
    assert doc["declared"] and doc["pid"] is not None, doc
    assert door.curl(f"{door.door}/health")[0] == 200
    door.cli("router", "down")
    stopped = door.cli("door", "status", "--json", ok=False)
    assert stopped.exit_code == 2 and json.loads(stopped.stdout)["pid"] is None  # "the front door is not running"
    assert door.curl(f"{door.door}/health")[0] == 0  # nothing listens at the door any more
