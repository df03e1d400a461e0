"""Host facts as the probe reports them, and the pure parser from probe output to facts.

The remote probe prints one JSON document (schema ``fleetctl.probe/v1``). ``parse_probe_output`` turns it
into typed facts or raises ``ProbeOutputError``; it never invents a value: what the probe could not read is None.
"""

from __future__ import annotations

import json
import operator
import re
from dataclasses import dataclass, field, fields
from typing import Any

PROBE_SCHEMA = "fleetctl.probe/v1"

#: a driver package was installed but the host has not rebooted into it: NVML answers
#: NVML_ERROR_LIB_RM_VERSION_MISMATCH (nvidia-smi: "Driver/library version mismatch")
NVML_VERSION_MISMATCH = "nvml_version_mismatch"
#: error kinds the probe itself reports (the SSH layer adds unreachable, timeout, auth, host_key_*, no_python)
PROBE_ERROR_KINDS = frozenset({"nvml_library_missing", "nvml_driver_not_loaded", NVML_VERSION_MISMATCH, "probe_failed"})


class ProbeOutputError(ValueError):
    """The probe's output is not a probe document we understand."""


@dataclass(frozen=True)
class GpuFacts:
    index: int
    name: str | None = None
    uuid: str | None = None
    pci_bus_id: str | None = None
    memory_total_mib: int | None = None
    memory_used_mib: int | None = None
    compute_capability: str | None = None
    temperature_c: int | None = None
    power_draw_w: float | None = None
    power_limit_w: float | None = None
    utilization_pct: int | None = None
    ecc_mode: bool | None = None
    ecc_uncorrected_volatile: int | None = None
    remapped_rows_pending: bool | None = None
    remapped_rows_failed: bool | None = None
    throttle_reasons: list[str] | None = None
    persistence_mode: bool | None = None
    mig_mode: bool | None = None
    lost: bool = False


@dataclass(frozen=True)
class HostFacts:
    hostname: str | None = None
    os: str | None = None
    kernel: str | None = None
    driver_version: str | None = None
    cuda_driver_version: str | None = None
    nvml_version: str | None = None
    docker_version: str | None = None
    nvidia_container_toolkit_version: str | None = None
    fabric_manager_version: str | None = None
    kernel_module_version: str | None = None  # the loaded kernel module (/proc/driver/nvidia/version)
    gpus: tuple[GpuFacts, ...] = field(default_factory=tuple)

    def to_dict(self) -> dict[str, Any]:
        """As JSON-ready data (the same as ``dataclasses.asdict``, without its deep copies: values are flat)."""
        d = {k: getattr(self, k) for k in _HOST_FIELDS}
        d["gpus"] = [_gpu_dict(g) for g in self.gpus]
        return d

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> HostFacts:
        if not isinstance(d, dict):
            raise ProbeOutputError("facts must be an object")
        values = _host_values(d)
        known = (
            {k: _typed(d, k, _HOST_TYPES[k]) for k in _HOST_TYPES} if values is None else dict(zip(_HOST_KEYS, values))
        )
        gpus = d.get("gpus") or []
        if not isinstance(gpus, list):
            raise ProbeOutputError("facts.gpus must be a list")
        return cls(**known, gpus=tuple(gpu_from_dict(g) for g in gpus))


_HOST_FIELDS = tuple(f.name for f in fields(HostFacts) if f.name != "gpus")
_GPU_FIELDS = tuple(f.name for f in fields(GpuFacts))


def _gpu_dict(gpu: GpuFacts) -> dict[str, Any]:
    d = {k: getattr(gpu, k) for k in _GPU_FIELDS}
    if d["throttle_reasons"] is not None:
        d["throttle_reasons"] = list(d["throttle_reasons"])
    return d


_HOST_TYPES: dict[str, tuple[type, ...]] = {k: (str,) for k in HostFacts.__dataclass_fields__ if k != "gpus"}
_GPU_TYPES: dict[str, tuple[type, ...]] = {
    "index": (int,),
    "name": (str,),
    "uuid": (str,),
    "pci_bus_id": (str,),
    "memory_total_mib": (int,),
    "memory_used_mib": (int,),
    "compute_capability": (str,),
    "temperature_c": (int,),
    "power_draw_w": (int, float),
    "power_limit_w": (int, float),
    "utilization_pct": (int,),
    "ecc_mode": (bool,),
    "ecc_uncorrected_volatile": (int,),
    "remapped_rows_pending": (bool,),
    "remapped_rows_failed": (bool,),
    "throttle_reasons": (list,),
    "persistence_mode": (bool,),
    "mig_mode": (bool,),
    "lost": (bool,),
}


_HOST_KEYS = tuple(_HOST_TYPES)
_PICK_HOST = operator.itemgetter(*_HOST_KEYS)
_STR_OR_NONE = {str, type(None)}


def _host_values(d: dict[str, Any]) -> tuple[Any, ...] | None:
    """Every host field's value when the document names them all and each is a string or None (what ``_typed``
    passes unchanged), found in C; None otherwise."""
    try:
        values: tuple[Any, ...] = _PICK_HOST(d)
    except KeyError:
        return None
    return values if {*map(type, values)} <= _STR_OR_NONE else None


def _typed(d: dict[str, Any], key: str, types: tuple[type, ...]) -> Any:
    """The value of ``key`` if it is None or of one of ``types`` (bool is never taken for int)."""
    value = d.get(key)
    if value is None or type(value) in types:  # the common case, decided without isinstance chains
        return value
    if isinstance(value, bool) and bool not in types:
        raise ProbeOutputError(f"{key}: expected {types[0].__name__}, got a boolean")
    if not isinstance(value, types):
        raise ProbeOutputError(f"{key}: expected {types[0].__name__}, got {type(value).__name__}")
    return value


_GPU_KEYS = tuple(_GPU_TYPES)
_PICK_GPU = operator.itemgetter(*_GPU_KEYS)
#: per field, the exact types ``_typed`` passes unchanged (None included)
_GPU_EXACT = tuple(frozenset((type(None), *types)) for types in _GPU_TYPES.values())
_GOOD_KINDS: set[tuple[type, ...]] = set()  # the types of whole GPU entries already found all exact


def gpu_from_dict(d: dict[str, Any]) -> GpuFacts:
    values = _exact_values(d)
    known = _typed_gpu(d) if values is None else dict(zip(_GPU_KEYS, values))
    known["lost"] = bool(known["lost"])
    reasons = known["throttle_reasons"]
    if reasons is not None and not all(isinstance(r, str) for r in reasons):
        raise ProbeOutputError("throttle_reasons: expected a list of names")
    _check_gpu_values(known)
    return _gpu_facts(known)


def _exact_values(d: Any) -> tuple[Any, ...] | None:
    """Every field's value when the entry names them all and each is of a type ``_typed`` passes unchanged (any
    GPU fleetctl wrote), found in C with the entry's types looked up whole; None otherwise (``_typed_gpu`` then
    says what is wrong, or passes what ``_typed`` passes)."""
    if type(d) is not dict:
        return None
    try:
        values: tuple[Any, ...] = _PICK_GPU(d)
    except KeyError:
        return None
    kinds = tuple(map(type, values))
    if kinds not in _GOOD_KINDS:
        if kinds[0] is not int or not all(map(frozenset.__contains__, _GPU_EXACT, kinds)):
            return None
        if len(_GOOD_KINDS) < 4096:
            _GOOD_KINDS.add(kinds)
    return values


def _typed_gpu(d: Any) -> dict[str, Any]:
    """Each field through ``_typed``: its value, or the ProbeOutputError that says what is wrong with it."""
    if not isinstance(d, dict) or not isinstance(d.get("index"), int):
        raise ProbeOutputError(f"GPU entry without an integer index: {str(d)[:80]}")
    return {k: _typed(d, k, t) for k, t in _GPU_TYPES.items()}


def _gpu_facts(known: dict[str, Any]) -> GpuFacts:
    """``GpuFacts(**known)`` for a dict that names every field, already checked, at half the cost: a frozen
    dataclass's ``__init__`` sets each of its 19 fields through ``object.__setattr__``, the largest part of
    reading a 10,000-host snapshot (~64,000 GPUs). Nothing is skipped: GpuFacts has no ``__post_init__``."""
    gpu = object.__new__(GpuFacts)
    gpu.__dict__.update(known)
    return gpu


_COMPUTE_CAPABILITY = re.compile(r"\d{1,3}\.\d{1,3}")
_NOT_NEGATIVE = ("index", "memory_total_mib", "memory_used_mib", "ecc_uncorrected_volatile")
_INFINITY = float("inf")


def _check_gpu_values(gpu: dict[str, Any]) -> None:
    """Values no GPU can have (a hand-edited or corrupted snapshot): a bad compute capability, negative sizes."""
    cc = gpu["compute_capability"]
    if cc is not None and _COMPUTE_CAPABILITY.fullmatch(cc) is None:
        raise ProbeOutputError(f'{_at(gpu)}.compute_capability: expected MAJOR.MINOR like "9.0", got {cc[:40]!r}')
    for key in _NOT_NEGATIVE:
        value = gpu[key]
        if value is not None and value < 0:
            raise ProbeOutputError(f"{_at(gpu)}.{key}: must not be negative, got {value}")
    for key in ("power_draw_w", "power_limit_w"):
        value = gpu[key]
        if value is not None and not 0 <= value < _INFINITY:
            raise ProbeOutputError(f"{_at(gpu)}.{key}: expected watts (0 or more), got {value}")
    utilization = gpu["utilization_pct"]
    if utilization is not None and not 0 <= utilization <= 100:
        raise ProbeOutputError(f"{_at(gpu)}.utilization_pct: expected 0 to 100, got {utilization}")


def _at(gpu: dict[str, Any]) -> str:
    return f"gpus[{gpu['index']}]"


@dataclass(frozen=True)
class ProbeResult:
    """What one host's probe said: facts (possibly partial) and, if it failed, an error kind and reason."""

    facts: HostFacts | None
    error_kind: str | None = None
    error_message: str | None = None


def parse_probe_output(text: str) -> ProbeResult:
    """Parse the probe's stdout. The document is the last line that starts with ``{`` (tolerates banners)."""
    doc = _last_json_line(text)
    if doc.get("schema") != PROBE_SCHEMA:
        raise ProbeOutputError(f"unknown probe schema {doc.get('schema')!r}")
    facts_doc = doc.get("facts")
    if not isinstance(facts_doc, dict):
        raise ProbeOutputError("probe document has no facts object")
    tools = {} if doc.get("tools") is None else doc["tools"]
    if not isinstance(tools, dict):
        raise ProbeOutputError("probe document: tools must be an object")
    module = doc.get("kernel_module")
    loaded = parse_kernel_module_version(module if isinstance(module, str) else None)
    facts = HostFacts.from_dict({**facts_doc, **tool_versions(tools), "kernel_module_version": loaded})
    error = doc.get("error")
    if error is None:
        return ProbeResult(facts=facts)
    kind = error.get("kind") if isinstance(error, dict) else None
    if kind not in PROBE_ERROR_KINDS:
        raise ProbeOutputError(f"unknown probe error kind {kind!r}")
    message = str(error.get("message") or kind)
    if kind == NVML_VERSION_MISMATCH and loaded is not None:
        message += f" (loaded kernel module: {loaded})"
    return ProbeResult(facts=facts, error_kind=kind, error_message=message)


def tool_versions(tools: dict[str, Any]) -> dict[str, str | None]:
    """Versions of Docker, the container toolkit and Fabric Manager from the raw tool outputs."""
    return {
        "docker_version": parse_docker_version(_tool_out(tools, "docker")),
        "nvidia_container_toolkit_version": (
            parse_ctk_version(_tool_out(tools, "nvidia_ctk"))
            or parse_container_cli_version(_tool_out(tools, "nvidia_container_cli"))
        ),
        "fabric_manager_version": parse_fabric_manager_version(_tool_out(tools, "fabric_manager")),
    }


def _tool_out(tools: dict[str, Any], name: str) -> str | None:
    """The tool's stdout if it ran and succeeded, else None (not installed, failed, timed out)."""
    run = tools.get(name)
    if not isinstance(run, dict) or run.get("rc") != 0:
        return None
    out = run.get("out")
    return out if isinstance(out, str) else None


_VERSION = re.compile(r"\d+(?:\.\d+)+(?:[-+~][0-9A-Za-z.\-+~]*)?")


def parse_docker_version(out: str | None) -> str | None:
    """``docker version --format {{.Server.Version}}`` prints the bare server version, e.g. ``20.10.24+dfsg1``."""
    if not out:
        return None
    match = _VERSION.fullmatch(out.strip())
    return match.group(0) if match else None


def parse_ctk_version(out: str | None) -> str | None:
    """``nvidia-ctk --version``: ``NVIDIA Container Toolkit CLI version 1.17.8`` then ``commit: ...``."""
    return _after(out, r"NVIDIA Container Toolkit CLI version\s+")


def parse_container_cli_version(out: str | None) -> str | None:
    """``nvidia-container-cli --version``: ``cli-version: 1.17.8`` (older releases: ``version: 1.3.0``)."""
    return _after(out, r"(?:cli-)?version:\s*")


def parse_fabric_manager_version(out: str | None) -> str | None:
    """``nv-fabricmanager --version``: ``Fabric Manager version is : 570.133.20``."""
    return _after(out, r"Fabric Manager version is\s*:\s*")


def parse_kernel_module_version(text: str | None) -> str | None:
    """``/proc/driver/nvidia/version``: ``NVRM version: NVIDIA UNIX x86_64 Kernel Module  570.133.20  Fri ...``
    (open modules: ``NVRM version: NVIDIA UNIX Open Kernel Module for x86_64  570.133.20  Release Build ...``)."""
    return _after(text, r"NVRM version:.*?Kernel Module(?: for \S+)?\s+")


def _after(out: str | None, prefix: str) -> str | None:
    if not out:
        return None
    match = re.search(r"^\s*" + prefix + r"(\d+(?:\.\d+)+)", out, re.MULTILINE)
    return match.group(1) if match else None


def _last_json_line(text: str) -> dict[str, Any]:
    for line in reversed(text.strip().splitlines()):
        line = line.strip()
        if line.startswith("{"):
            try:
                doc = json.loads(line)
            except json.JSONDecodeError as e:
                raise ProbeOutputError(f"probe output is not valid JSON: {e.msg} at column {e.colno}") from e
            if isinstance(doc, dict):
                return doc
    raise ProbeOutputError("probe printed no JSON document")
