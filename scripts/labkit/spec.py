"""The lab spec (TOML): which hosts to fake, how their GPUs look, and where the lab's network lives."""

from __future__ import annotations

import ipaddress
import re
import tomllib
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from .fakenvml import host_values
from .fakenvml.config import DEFAULTS as HARDWARE_DEFAULTS

DEFAULT_SPEC = Path(__file__).with_name("default-spec.toml")
LAB_KEYS = {"bastion": False, "prefix": "fl", "subnet": "10.250.0.0/24", "docker": True, "reboot_s": 3.0}
MAX_REBOOT_S = 3600
HOST_KEYS = {"name", "ring", "python3", "docker", "reboot_s", *HARDWARE_DEFAULTS}
RESERVED_NAMES = {"bastion", "br"}  # would clash with the lab's own interface names
NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,62}")
RING = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,62}")
PREFIX = re.compile(r"[a-z][a-z0-9]{0,7}")  # short: interface names are at most 15 characters
LAB_NETWORKS = [ipaddress.ip_network(n) for n in ("10.0.0.0/8", "172.16.0.0/12", "192.168.0.0/16")]
FIRST_HOST = 11  # .1 root side, .2 bastion, .3 bastion's inner leg


class LabError(Exception):
    """An expected failure of the lab tool: one line for the operator."""


class SpecError(LabError):
    """A bad spec: ``FILE:LINE: problem`` or ``FILE: key: problem``."""


@dataclass(frozen=True)
class HostSpec:
    name: str
    ring: str | None
    python3: bool
    raw: dict[str, Any]  # the host's table as written
    docker: bool = True  # its own dockerd ([lab] docker gives the default)
    reboot_s: float = 3.0  # how long a reboot keeps it down ([lab] reboot_s gives the default)

    @property
    def table(self) -> dict[str, Any]:
        """The table with hardware defaults filled in: what labkit.fakenvml takes."""
        return host_values(self.raw)

    @property
    def nvml(self) -> str:
        return self.table["nvml"]


@dataclass(frozen=True)
class LabSpec:
    hosts: tuple[HostSpec, ...]
    bastion: bool = False
    prefix: str = "fl"
    subnet: str = "10.250.0.0/24"
    source: str = "<spec>"
    docker: bool = True  # the default for hosts that do not say
    reboot_s: float = 3.0  # the default for hosts that do not say

    def host(self, name: str) -> HostSpec:
        for host in self.hosts:
            if host.name == name:
                return host
        raise LabError(f"no host {name!r} in this lab")

    def to_dict(self) -> dict[str, Any]:
        lab = {
            "bastion": self.bastion,
            "prefix": self.prefix,
            "subnet": self.subnet,
            "docker": self.docker,
            "reboot_s": self.reboot_s,
        }
        return {"lab": lab, "hosts": [dict(h.raw) for h in self.hosts]}

    def with_network(self, prefix: str, subnet: str) -> LabSpec:
        """The same hosts under another prefix and subnet (two labs side by side)."""
        spec = replace(self, prefix=prefix, subnet=subnet)
        return parse_spec(spec.to_dict(), source=self.source)


def load_spec(path: str | Path | None = None) -> LabSpec:
    """Read a spec file (None: the default spec); SpecError says where it is wrong."""
    path = Path(path) if path is not None else DEFAULT_SPEC
    try:
        text = path.read_text()
    except OSError as e:
        raise SpecError(f"{path}: cannot read: {e.strerror}") from e
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as e:
        raise SpecError(f"{path}:{_toml_error_line(e)}") from e
    try:
        return _parse(data, source=str(path))
    except _Problem as p:
        line = _locate(text, p.table, p.index, p.key)
        where = f"{path}:{line}" if line else str(path)
        raise SpecError(f"{where}: {p.message}") from None


def parse_spec(data: dict[str, Any], source: str = "<spec>") -> LabSpec:
    """Check a spec given as data (as tomllib returns it)."""
    try:
        return _parse(data, source)
    except _Problem as p:
        raise SpecError(f"{source}: {p.message}") from None


def _parse(data: dict[str, Any], source: str) -> LabSpec:
    for key in data:
        if key not in ("lab", "hosts"):
            raise _Problem(f"{key}: unknown key (expected [lab] and [[hosts]])", None, None, key)
    lab = _parse_lab(data.get("lab", {}))
    hosts = data.get("hosts")
    if not isinstance(hosts, list) or not hosts or not all(isinstance(h, dict) for h in hosts):
        raise _Problem("hosts: expected one or more [[hosts]] tables", None, None, "hosts")
    parsed = tuple(_parse_host(i, h, lab["docker"], lab["reboot_s"]) for i, h in enumerate(hosts))
    names = [h.name for h in parsed]
    for i, name in enumerate(names):
        if name in names[:i]:
            raise _Problem(f"host {name}: name: used twice", "hosts", i, "name")
    _check_capacity(lab["subnet"], len(parsed))
    return LabSpec(
        hosts=parsed,
        bastion=lab["bastion"],
        prefix=lab["prefix"],
        subnet=lab["subnet"],
        source=source,
        docker=lab["docker"],
        reboot_s=lab["reboot_s"],
    )


def _parse_lab(lab: Any) -> dict[str, Any]:
    if not isinstance(lab, dict):
        raise _Problem("lab: expected a table", None, None, "lab")
    for key in lab:
        if key not in LAB_KEYS:
            raise _Problem(f"lab: {key}: unknown key (expected {', '.join(LAB_KEYS)})", "lab", 0, key)
    values = {**LAB_KEYS, **lab}
    for key in ("bastion", "docker"):
        if not isinstance(values[key], bool):
            raise _Problem(f"lab: {key}: expected true or false", "lab", 0, key)
    if not isinstance(values["prefix"], str) or not PREFIX.fullmatch(values["prefix"]):
        raise _Problem(
            "lab: prefix: expected 1-8 lowercase letters or digits, starting with a letter", "lab", 0, "prefix"
        )
    values["subnet"] = _parse_subnet(values["subnet"])
    if not _reboot_s_ok(values["reboot_s"]):
        raise _Problem(f"lab: reboot_s: expected seconds from 0 to {MAX_REBOOT_S}", "lab", 0, "reboot_s")
    return values


def _reboot_s_ok(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and 0 <= value <= MAX_REBOOT_S


def _parse_subnet(value: Any) -> str:
    try:
        net = ipaddress.IPv4Network(value)
    except (ValueError, TypeError):
        raise _Problem(
            f"lab: subnet: expected an IPv4 network like 10.250.0.0/24 (got {value!r})", "lab", 0, "subnet"
        ) from None
    if not any(net.subnet_of(private) for private in LAB_NETWORKS):
        raise _Problem(
            "lab: subnet: expected a private network inside 10/8, 172.16/12 or 192.168/16", "lab", 0, "subnet"
        )
    return str(net)


def _parse_host(index: int, raw: dict[str, Any], docker_default: bool, reboot_default: float) -> HostSpec:
    name = raw.get("name")
    if not isinstance(name, str) or not NAME.fullmatch(name) or name in RESERVED_NAMES:
        raise _Problem(
            f"hosts[{index}]: name: expected letters, digits, '.', '_' or '-' (not bastion or br), got {name!r}",
            "hosts",
            index,
            "name",
        )
    for key in raw:
        if key not in HOST_KEYS:
            raise _Problem(f"host {name}: {key}: unknown key", "hosts", index, key)
    ring = raw.get("ring")
    if ring is not None and (not isinstance(ring, str) or not RING.fullmatch(ring)):
        raise _Problem(f"host {name}: ring: expected a short word", "hosts", index, "ring")
    flags = {key: raw.get(key, default) for key, default in (("python3", True), ("docker", docker_default))}
    for key, value in flags.items():
        if not isinstance(value, bool):
            raise _Problem(f"host {name}: {key}: expected true or false", "hosts", index, key)
    reboot_s = raw.get("reboot_s", reboot_default)
    if not _reboot_s_ok(reboot_s):
        raise _Problem(f"host {name}: reboot_s: expected seconds from 0 to {MAX_REBOOT_S}", "hosts", index, "reboot_s")
    try:
        host_values(raw)
    except ValueError as e:
        key = re.match(r"host [^:]+: (\w+):", str(e))
        raise _Problem(str(e), "hosts", index, key.group(1) if key else None) from None
    return HostSpec(
        name=name,
        ring=ring,
        python3=flags["python3"],
        raw=dict(raw),
        docker=flags["docker"],
        reboot_s=float(reboot_s),
    )


def _check_capacity(subnet: str, count: int) -> None:
    net = ipaddress.IPv4Network(subnet)
    room = net.num_addresses - FIRST_HOST - 1
    if count > room:
        raise _Problem(
            f"lab: subnet: {subnet} has room for {max(room, 0)} hosts, the spec has {count}", "lab", 0, "subnet"
        )


class _Problem(Exception):
    """A spec problem and where it sits (table, index of the [[hosts]] table, key), to find its line."""

    def __init__(self, message: str, table: str | None, index: int | None, key: str | None) -> None:
        super().__init__(message)
        self.message, self.table, self.index, self.key = message, table, index, key


def _toml_error_line(e: tomllib.TOMLDecodeError) -> str:
    """tomllib says "... (at line 3, column 7)": turn it into "3: ..."."""
    m = re.match(r"(.*) \(at line (\d+), column \d+\)$", str(e))
    return f"{m.group(2)}: {m.group(1)}" if m else f" {e}"


def _locate(text: str, table: str | None, index: int | None, key: str | None) -> int | None:
    """The line of `key` in [lab] or in the index-th [[hosts]] table (or at top level); None if not found."""
    current, hosts_seen = None, -1
    key_line = re.compile(rf"""\s*["']?{re.escape(key or "")}["']?\s*=""")
    for number, line in enumerate(text.splitlines(), start=1):
        stripped = line.strip()
        if stripped.startswith("[["):
            current = "hosts" if re.fullmatch(r"\[\[\s*hosts\s*\]\].*", stripped) else "?"
            hosts_seen += current == "hosts"
        elif stripped.startswith("["):
            current = "lab" if re.fullmatch(r"\[\s*lab\s*\].*", stripped) else "?"
        else:
            here = current == table and (table != "hosts" or hosts_seen == index)
            if key and here and key_line.match(line):
                return number
            if table is None and current is None and key and key_line.match(line):
                return number
        if table is None and key and stripped.startswith("[") and key in stripped:
            return number
    return None
