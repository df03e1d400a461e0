"""The one drain/undrain sequence that `fleetctl drain`/`undrain` and the rollout executor share:
mark drained in state.json → router sync (verified) → wait for in-flight requests; and its reverse.
A fake vllm-router on 127.0.0.1 and fake hosts; no SSH, no Docker, no waiting (fake clock)."""

from __future__ import annotations

import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, urlsplit

import pytest

from fleetctl.core.fleet import Fleet, Host, RouterSettings
from fleetctl.core.fleetstate import DrainRecord, ServingRecord
from fleetctl.errors import HostError, RouterError
from fleetctl.services.serving import DrainOptions, DrainTarget, FleetLedger, drain_hosts, undrain_hosts
from fleetctl.services.statefile import load_state, update_state
from tests.fake.clock import FakeClock

URLS = {"a": "http://10.0.0.1:8000", "b": "http://10.0.0.2:8000", "c": "http://10.0.0.3:8000"}


class FakeRouter(BaseHTTPRequestHandler):
    workers: list[str] = []
    refuse_removal = False

    def _answer(self, code, doc=None):
        body = json.dumps(doc or {}).encode()
        self.send_response(code)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def do_GET(self):
        self._answer(200, {"urls": list(self.workers)})

    def do_POST(self):
        parts = urlsplit(self.path)
        url = parse_qs(parts.query)["url"][0]
        if parts.path == "/add_worker":
            self.workers.append(url)
        elif self.refuse_removal:
            return self._answer(500, {"error": "no"})
        else:
            self.workers.remove(url)
        self._answer(200)

    def log_message(self, *args):
        pass


@pytest.fixture
def router():
    handler = type("Router", (FakeRouter,), {"workers": list(URLS.values()), "refuse_removal": False})
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=server.serve_forever, args=(0.05,), daemon=True).start()
    yield handler, f"http://127.0.0.1:{server.server_port}"
    server.shutdown()
    server.server_close()


@pytest.fixture
def fleet(tmp_path, router):
    (tmp_path / "fleet.toml").write_text("")
    hosts = tuple(Host(name=n, address=urlsplit(u).hostname) for n, u in URLS.items())
    fleet = Fleet(name="t", path=str(tmp_path / "fleet.toml"), hosts=hosts, router=RouterSettings(url=router[1]))

    def serve_all(s):
        for n, u in URLS.items():
            s = s.with_serving(ServingRecord(n, u, "p", "i", "r1", "2026-01-01T00:00:00Z"))
        return s

    update_state(fleet, serve_all)
    return fleet


class Container:
    def __init__(self, running):
        self.running = running


class Ops:
    """A host as the sequence uses it: in-flight counts from a script, a container that runs or not."""

    def __init__(self, fleet, name, script=((0.0, 0.0),), running=True, router=None):
        self.host, self.script, self.clock = fleet.host(name), list(script), FakeClock(mono=0.0)
        self.running, self.asked, self.stopped, self.router = running, 0, False, router
        self.runtime = self

    def in_flight(self, port):
        assert port == 8000
        self.asked += 1
        if self.router is not None:  # it is asked only once the router no longer holds it
            assert URLS[self.host.name] not in self.router.workers
        answer = self.script.pop(0) if len(self.script) > 1 else self.script[0]
        if isinstance(answer, str):
            raise HostError(self.host.name, answer, answer)
        return answer

    def current(self):
        return Container(self.running)

    def stop(self, timeout_s):
        self.stopped = True


def target(ops, reason="why"):
    return DrainTarget(ops, 8000, DrainRecord(ops.host.name, reason, "alice", "2026-01-01T01:00:00Z"))


def test_drain_marks_syncs_then_waits(fleet, router):
    events = []
    a = Ops(fleet, "a", [(2.0, 1.0), (1.0, 0.0), (0.0, 0.0)], router=router[0])
    b = Ops(fleet, "b", router=router[0])
    results = {
        h.name: r for h, r in drain_hosts(FleetLedger(fleet), [target(a), target(b)], DrainOptions(60), events.append)
    }
    assert results == {"a": "drained", "b": "drained"}
    assert set(load_state(fleet).drained) == {"a", "b"}
    assert router[0].workers == [URLS["c"]]
    assert events[0] == {"event": "router", "removed": [URLS["a"], URLS["b"]], "added": []}
    assert sorted(e["host"] for e in events[1:]) == ["a", "b"] and a.asked == 3


def test_one_host_still_busy_is_that_hosts_error(fleet, router):
    a, b = Ops(fleet, "a", [(1.0, 0.0)]), Ops(fleet, "b")
    results = {
        h.name: r for h, r in drain_hosts(FleetLedger(fleet), [target(a), target(b)], DrainOptions(5), lambda e: None)
    }
    assert isinstance(results["a"], HostError) and results["a"].kind == "drain_timeout"
    assert results["b"] == "drained" and set(load_state(fleet).drained) == {"a", "b"}  # a stays out


def test_stop_and_skip_stopped(fleet):
    a, b = Ops(fleet, "a"), Ops(fleet, "b", running=False)
    opts = DrainOptions(60, stop=True, skip_stopped=True)
    results = {h.name: r for h, r in drain_hosts(FleetLedger(fleet), [target(a), target(b)], opts, lambda e: None)}
    assert results == {"a": "drained and stopped", "b": "not running"}
    assert a.stopped and b.asked == 0


def test_an_existing_drain_record_is_replaced_or_kept(fleet):
    a = Ops(fleet, "a")
    drain_hosts(FleetLedger(fleet), [target(a, "first")], DrainOptions(60), lambda e: None)
    drain_hosts(FleetLedger(fleet), [target(a, "second")], DrainOptions(60, keep_existing=True), lambda e: None)
    assert load_state(fleet).drained["a"].reason == "first"
    drain_hosts(FleetLedger(fleet), [target(a, "third")], DrainOptions(60), lambda e: None)
    assert load_state(fleet).drained["a"].reason == "third"


def test_a_router_that_refuses_the_change_stops_before_any_wait(fleet, router):
    router[0].refuse_removal = True
    a = Ops(fleet, "a")
    with pytest.raises(RouterError, match="answered POST /remove_worker with 500"):
        drain_hosts(FleetLedger(fleet), [target(a)], DrainOptions(60), lambda e: None)
    assert a.asked == 0 and load_state(fleet).is_drained("a")  # the intent is recorded: `router sync` honours it


def test_no_router_event_when_not_announced(fleet):
    events = []
    drain_hosts(FleetLedger(fleet), [target(Ops(fleet, "a"))], DrainOptions(60, announce_router=False), events.append)
    assert [e["event"] for e in events] == ["drained"]


def test_undrain_clears_records_and_puts_hosts_back(fleet, router):
    drain_hosts(
        FleetLedger(fleet), [target(Ops(fleet, "a")), target(Ops(fleet, "b"))], DrainOptions(60), lambda e: None
    )
    events = []
    diff = undrain_hosts(FleetLedger(fleet), ["a"], events.append)
    assert diff.add == (URLS["a"],) and sorted(router[0].workers) == [URLS["a"], URLS["c"]]
    assert set(load_state(fleet).drained) == {"b"}
    assert events == [{"event": "router", "added": [URLS["a"]], "removed": []}]


def test_undrain_records_what_a_host_serves_now(fleet, router):
    drain_hosts(FleetLedger(fleet), [target(Ops(fleet, "a"))], DrainOptions(60), lambda e: None)
    new = ServingRecord("a", URLS["a"], "p2", "i2", "r2", "2026-01-01T02:00:00Z", model="m")
    undrain_hosts(FleetLedger(fleet), ["a"], lambda e: None, serving={"a": new}, announce_router=False)
    state = load_state(fleet)
    assert not state.drained and state.serving["a"] == new and URLS["a"] in router[0].workers
