"""Network namespaces, veth pairs and bridges through iproute2's `ip`, each step idempotent."""

from __future__ import annotations

import ipaddress
import json
import os
import signal
import subprocess
import time

from .commands import tool
from .layout import INNER_BRIDGE, NODE_DEV, Layout, Node
from .spec import LabError


def ip(*args: str, ns: str | None = None, check: bool = True) -> subprocess.CompletedProcess[str]:
    """Run `ip [-n NS] ARGS`; a failure raises LabError with ip's own message."""
    cmd = [tool("ip"), *(("-n", ns) if ns else ()), *args]
    run = subprocess.run(cmd, capture_output=True, text=True)
    if check and run.returncode != 0:
        raise LabError(f"{' '.join(cmd)}: {run.stderr.strip() or f'exit {run.returncode}'}")
    return run


def namespaces() -> set[str]:
    out = ip("-j", "netns", "list").stdout.strip()
    return {entry["name"] for entry in json.loads(out)} if out else set()


def links(ns: str | None = None) -> dict[str, dict]:
    """Interface name → `ip -j addr` entry (flags, master, addr_info), in ns or the root namespace."""
    run = ip("-j", "addr", "show", ns=ns, check=False)
    if run.returncode != 0 or not run.stdout.strip():
        return {}
    return {entry["ifname"]: entry for entry in json.loads(run.stdout)}


def addresses(entry: dict) -> set[str]:
    return {f"{a['local']}/{a['prefixlen']}" for a in entry.get("addr_info", []) if a.get("family") == "inet"}


def ensure_namespace(ns: str) -> None:
    if ns not in namespaces():
        ip("netns", "add", ns)
    ip("link", "set", "lo", "up", ns=ns)


def ensure_bridge(name: str, ns: str | None = None, cidr: str | None = None) -> None:
    """A bridge that is up, with exactly `cidr` on it (or no address)."""
    entry = links(ns).get(name)
    if entry is None:
        ip("link", "add", name, "type", "bridge", ns=ns)
        entry = {}
    _ensure_addresses(name, ns, entry, {cidr} if cidr else set())
    ip("link", "set", name, "up", ns=ns)


def ensure_node_link(node: Node) -> None:
    """eth0 in the node's namespace, its veth peer on the right bridge, the address and routes in place."""
    inner = links(node.namespace).get(NODE_DEV)
    outer = links(node.outer_ns).get(node.veth)
    if inner is None or outer is None or outer.get("master") != node.bridge or not _paired(inner, outer):
        _recreate_pair(node)
        inner = links(node.namespace)[NODE_DEV]
    _ensure_addresses(NODE_DEV, node.namespace, inner, {node.cidr})
    ip("link", "set", NODE_DEV, "up", ns=node.namespace)
    for route in node.routes:
        ip("route", "replace", route, "dev", NODE_DEV, ns=node.namespace)


def _paired(inner: dict, outer: dict) -> bool:
    return inner.get("link_index") == outer.get("ifindex") and outer.get("link_index") == inner.get("ifindex")


def _recreate_pair(node: Node) -> None:
    ip("link", "del", NODE_DEV, ns=node.namespace, check=False)
    ip("link", "del", node.veth, ns=node.outer_ns, check=False)
    ip("link", "add", node.veth, "type", "veth", "peer", "name", NODE_DEV, "netns", node.namespace, ns=node.outer_ns)
    ip("link", "set", node.veth, "master", node.bridge, "up", ns=node.outer_ns)
    # The new eth0 has a new MAC: forget the old one where the node's peers resolve its address.
    ip("neigh", "flush", "to", node.address, ns=node.outer_ns, check=False)


def _ensure_addresses(dev: str, ns: str | None, entry: dict, wanted: set[str]) -> None:
    have = addresses(entry)
    for cidr in have - wanted:
        ip("addr", "del", cidr, "dev", dev, ns=ns)
    for cidr in wanted - have:
        ip("addr", "add", cidr, "dev", dev, ns=ns)


def check_network_free(layout: Layout, subnet: str, ours: bool) -> None:
    """Refuse a subnet or bridge that something else uses; ours=False: this folder has no lab yet."""
    net = ipaddress.IPv4Network(subnet)
    for name, entry in links().items():
        if name == layout.bridge and not ours:
            raise LabError(
                f"bridge {name} already exists: another lab with this prefix is up "
                "(take it down, or give this lab another [lab] prefix and subnet)"
            )
        for cidr in addresses(entry):
            if name != layout.bridge and ipaddress.IPv4Interface(cidr).network.overlaps(net):
                raise LabError(
                    f"subnet {subnet} is already used by {name} ({cidr}); give this lab another [lab] subnet"
                )


def ensure_network(layout: Layout) -> None:
    """The bridges and, if there is one, the bastion's namespace and links (hosts come after)."""
    ensure_bridge(layout.bridge, cidr=layout.gateway_cidr)
    if layout.bastion:
        ensure_namespace(layout.bastion.namespace)
        ensure_node_link(layout.bastion)
        ensure_bridge(INNER_BRIDGE, ns=layout.bastion.namespace, cidr=layout.inner_cidr)


def kill_namespace_processes(ns: str, grace_s: float = 3.0) -> None:
    """TERM every process inside the namespace (sshd and its sessions), KILL what is left after grace_s."""
    if ns not in namespaces():
        return
    terminate(namespace_pids(ns), grace_s)


def terminate(pids: list[int], grace_s: float) -> None:
    """TERM the processes, wait up to grace_s for them to go, then KILL what is left (and wait again)."""
    for sig in (signal.SIGTERM, signal.SIGKILL):
        for pid in pids:
            try:
                os.kill(pid, sig)
            except ProcessLookupError:
                pass
        deadline = time.monotonic() + grace_s
        while pids and time.monotonic() < deadline:
            time.sleep(0.05)
            pids = [p for p in pids if process_alive(p)]
        if not pids:
            return


def namespace_pids(ns: str) -> list[int]:
    """Every process in the namespace but this one."""
    out = ip("netns", "pids", ns, check=False).stdout
    return [int(p) for p in out.split() if p.isdigit() and int(p) != os.getpid()]


def process_alive(pid: int) -> bool:
    """True while pid runs (a zombie does not count)."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] != "Z"
    except (FileNotFoundError, IndexError):
        return False


def delete_node(node_namespace: str, veth: str, outer_ns: str | None) -> None:
    """Remove a node's processes, veth pair (synchronously: both ends go at once) and namespace."""
    kill_namespace_processes(node_namespace)
    ip("link", "del", veth, ns=outer_ns, check=False)
    if node_namespace in namespaces():
        ip("link", "del", NODE_DEV, ns=node_namespace, check=False)
        ip("netns", "del", node_namespace)


def delete_bridge(name: str) -> None:
    if name in links():
        ip("link", "del", name)
