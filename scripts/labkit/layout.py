"""Where every part of a lab goes: namespace, interface and bridge names, addresses. Pure, no I/O.

Plain lab: the root namespace holds bridge `<prefix>-br` with .1; each host's eth0 sits on it.
Bastion lab: the bastion's eth0 (.2) sits on that bridge; the hosts' eth0s sit on bridge `br-in` inside the
bastion's own namespace (where it has .3), so the root namespace has no address on the hosts' network and
reaches them only by jumping through the bastion.
"""

from __future__ import annotations

import hashlib
import ipaddress
from dataclasses import dataclass

from .spec import FIRST_HOST, HostSpec, LabSpec

IFNAMSIZ = 15
INNER_BRIDGE = "br-in"
NODE_DEV = "eth0"


@dataclass(frozen=True)
class Node:
    """One namespace with its own sshd: a GPU host or the bastion."""

    name: str
    namespace: str
    veth: str  # the outer end of eth0's veth pair
    outer_ns: str | None  # namespace of the outer end (None: the root namespace)
    bridge: str  # bridge the outer end is attached to, in outer_ns
    address: str
    cidr: str  # eth0's address/prefix length
    host: HostSpec | None  # None for the bastion
    routes: tuple[str, ...] = ()


@dataclass(frozen=True)
class Layout:
    bridge: str  # in the root namespace
    gateway_cidr: str  # the root namespace's address on it
    bastion: Node | None
    hosts: tuple[Node, ...]
    inner_cidr: str | None  # the bastion's address on br-in

    @property
    def nodes(self) -> tuple[Node, ...]:
        return ((self.bastion,) if self.bastion else ()) + self.hosts

    def node(self, name: str) -> Node:
        for node in self.nodes:
            if node.name == name:
                return node
        raise KeyError(name)


def interface_name(prefix: str, name: str) -> str:
    """`<prefix>-<name>` when that fits in 15 characters, else `<prefix>-<hash of name>`."""
    full = f"{prefix}-{name}"
    if len(full) <= IFNAMSIZ:
        return full
    room = IFNAMSIZ - len(prefix) - 1
    return f"{prefix}-{hashlib.sha1(name.encode()).hexdigest()[:room]}"


def plan_layout(spec: LabSpec) -> Layout:
    net = ipaddress.IPv4Network(spec.subnet)
    at = lambda n: str(net.network_address + n)  # noqa: E731
    bridge = f"{spec.prefix}-br"
    bastion = None
    if spec.bastion:
        # eth0 holds only .2 and a route to .1: the hosts' whole subnet is on br-in, not on eth0.
        bastion = Node(
            name="bastion",
            namespace=f"{spec.prefix}-bastion",
            veth=interface_name(spec.prefix, "bastion"),
            outer_ns=None,
            bridge=bridge,
            address=at(2),
            cidr=f"{at(2)}/32",
            host=None,
            routes=(f"{at(1)}/32",),
        )
    hosts = tuple(
        _host_node(spec, host, at(FIRST_HOST + i), net.prefixlen, bastion, bridge) for i, host in enumerate(spec.hosts)
    )
    return Layout(
        bridge=bridge,
        gateway_cidr=f"{at(1)}/{net.prefixlen}",
        bastion=bastion,
        hosts=hosts,
        inner_cidr=f"{at(3)}/{net.prefixlen}" if bastion else None,
    )


def _host_node(spec: LabSpec, host: HostSpec, address: str, prefixlen: int, bastion: Node | None, bridge: str) -> Node:
    return Node(
        name=host.name,
        namespace=f"{spec.prefix}-{host.name}",
        veth=interface_name(spec.prefix, host.name),
        outer_ns=bastion.namespace if bastion else None,
        bridge=INNER_BRIDGE if bastion else bridge,
        address=address,
        cidr=f"{address}/{prefixlen}",
        host=host,
    )
