"""Where inventory's own CPU went, pinned: paramiko without invoke, the payload built once however many
threads ask, known_hosts parsed once per command, and facts turned into JSON data without deep copies."""

from __future__ import annotations

import dataclasses
import subprocess
import sys
import threading
from concurrent.futures import ThreadPoolExecutor

import paramiko

from fleetctl import probe
from fleetctl.core.facts import GpuFacts, HostFacts
from fleetctl.transport.ssh import KnownHosts


def test_the_ssh_transport_does_not_import_invoke():
    code = "import sys, fleetctl.transport.ssh; print('invoke' in sys.modules); import invoke"
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr  # and invoke itself stays importable for anyone else
    assert done.stdout.strip() == "False"


def test_the_probe_payload_is_built_once_when_every_thread_asks_at_once(monkeypatch):
    calls = []
    gate = threading.Barrier(8)

    def bundle():
        calls.append(1)
        return "b64"

    monkeypatch.setattr(probe, "_built", [])
    monkeypatch.setattr(probe, "_pynvml_bundle", bundle)

    def ask(_):
        gate.wait(5)
        return probe.probe_payload()

    with ThreadPoolExecutor(8) as ex:
        payloads = set(ex.map(ask, range(8)))
    assert len(calls) == 1 and len(payloads) == 1 and next(iter(payloads)).startswith(b"PYNVML_BUNDLE = 'b64'\n")


def test_known_hosts_is_parsed_once_and_each_client_gets_only_its_hosts_keys(tmp_path, monkeypatch):
    keys = {name: paramiko.RSAKey.generate(1024) for name in "ab"}
    lines = [f"{name} {key.get_name()} {key.get_base64()}" for name, key in keys.items()]
    lines.append(f"[c]:2222 {keys['a'].get_name()} {keys['a'].get_base64()}")
    path = tmp_path / "known_hosts"
    path.write_text("\n".join(lines) + "\n")
    loads = []
    real_load = paramiko.HostKeys.load
    monkeypatch.setattr(paramiko.HostKeys, "load", lambda self, f: (loads.append(f), real_load(self, f))[1])
    known = KnownHosts(str(path))
    clients = {name: paramiko.SSHClient() for name in ("a", "b", "[c]:2222")}
    for name, client in clients.items():
        known.load_into(client, name)
    assert len(loads) == 1
    assert list(clients["a"].get_host_keys().keys()) == ["a"]
    assert clients["b"].get_host_keys().lookup("b")[keys["b"].get_name()] == keys["b"]
    assert list(clients["[c]:2222"].get_host_keys().keys()) == ["[c]:2222"]
    fresh = paramiko.SSHClient()
    known.load_into(fresh, "unknown")
    assert len(fresh.get_host_keys()) == 0


def test_facts_to_dict_is_what_asdict_gives():
    gpu = GpuFacts(0, "H100", throttle_reasons=["sw_power_cap"], memory_total_mib=81559, lost=True)
    facts = HostFacts(hostname="h", driver_version="570.133.20", gpus=(gpu, dataclasses.replace(gpu, index=1)))
    d = facts.to_dict()
    assert d == dataclasses.asdict(facts) | {"gpus": [dataclasses.asdict(g) for g in facts.gpus]}
    assert d["gpus"][0]["throttle_reasons"] is not gpu.throttle_reasons  # a copy: the facts stay as they were


def test_the_saved_snapshot_has_one_host_per_line_and_reads_back_the_same():
    import json

    from fleetctl.core.inventory import HostReport, Snapshot
    from fleetctl.services.snapshot import snapshot_text

    hosts = tuple(
        HostReport(f"gpu{i}", f"10.0.0.{i}", None, HostFacts(hostname="ü"), probed_at="2026-11-30T12:00:00Z")
        for i in range(3)
    )
    snap = Snapshot(taken_at="2026-11-30T12:00:00Z", fleet="lab", hosts=hosts)
    text = snapshot_text(snap)
    assert Snapshot.from_dict(json.loads(text)) == snap
    assert [line.startswith('{"name": "gpu') for line in text.splitlines()] == [False, True, True, True, False]
    assert snapshot_text(Snapshot(taken_at="2026-11-30T12:00:00Z")).endswith('"hosts": [\n\n]}\n')
    assert json.loads(snapshot_text(Snapshot(taken_at="2026-11-30T12:00:00Z")))["hosts"] == []


def test_inventory_closes_each_hosts_connection_when_its_probe_is_done_unless_asked_to_keep_them():
    from fleetctl.core.fleet import Fleet, Host
    from fleetctl.services.inventory import collect_inventory
    from fleetctl.transport.ssh import RunResult

    class Pool:
        def __init__(self):
            self.events: list[tuple[str, str]] = []

        def target(self, host):
            return None

        def run(self, host, command, *, stdin=None, timeout_s=0):
            self.events.append(("run", host.name))
            return RunResult(127, b"", b"python3: not found")

        def release(self, host):
            self.events.append(("release", host.name))

    hosts = (Host("a", "a"), Host("b", "b"))
    fleet = Fleet(name="lab", path="/nonexistent/fleet.toml", hosts=hosts)
    pool = Pool()
    collect_inventory(fleet, hosts, forks=1, pool=pool, keep_connections=False)
    assert pool.events == [("run", "a"), ("release", "a"), ("run", "b"), ("release", "b")]
    kept = Pool()
    collect_inventory(fleet, hosts, forks=1, pool=kept)
    assert [e for e in kept.events if e[0] == "release"] == []
