"""A lab host spec (dict) → the key=value text that fake_nvml.c reads from FAKE_NVML_CONFIG."""

from __future__ import annotations

import hashlib
import re
import uuid
from dataclasses import dataclass
from typing import Any

MIB = 1024 * 1024
MAX_GPUS = 16  # MAX_GPUS in fake_nvml.c

DEFAULTS: dict[str, Any] = {
    "gpu": "NVIDIA H100 80GB HBM3",
    "gpu_count": 1,
    "compute_capability": "9.0",
    "memory_mib": 81559,
    "driver": "570.133.20",
    "cuda": "12.8",
    "nvidia_container_toolkit": None,
    "fabric_manager": None,
    "nvml": "ok",
    "ecc_uncorrected_volatile": 0,
    "remapped_rows_pending": False,
    "temperature_c": 35,
    "power_draw_w": 72.5,
    "power_limit_w": 700,
    "utilization_pct": 0,
    "memory_used_mib": 0,
    "persistence_mode": True,
    "mig_mode": False,
    "throttle_reasons": 0,
}

# PCI buses of the eight GPUs on an HGX H100 board, in NVML index order; more GPUs continue at 0xE0.
HGX_BUSES = (0x18, 0x2A, 0x3A, 0x5D, 0x9A, 0xAB, 0xBA, 0xDB)


@dataclass(frozen=True)
class Board:
    pci_device_id: int  # device << 16 | vendor 0x10DE
    pci_subsystem_id: int
    vbios_version: str
    part_number: str


# Device ids are the real ones; subsystem ids, VBIOS versions and part numbers are plausible stand-ins.
BOARDS = {
    "NVIDIA H100 80GB HBM3": Board(0x233010DE, 0x16C110DE, "96.00.74.00.0B", "692-2G520-0200-000"),
    "NVIDIA H200": Board(0x233510DE, 0x18BE10DE, "96.00.9F.00.04", "692-2G520-0280-001"),
    "NVIDIA A100-SXM4-80GB": Board(0x20B210DE, 0x147F10DE, "92.00.36.00.02", "692-2G506-0212-002"),
    "NVIDIA L40S": Board(0x26B910DE, 0x185110DE, "95.02.66.00.02", "900-2G133-0080-000"),
}
GENERIC_BOARD = Board(0x000010DE, 0x000010DE, "00.00.00.00.01", "000-00000-0000-000")

NVML_STATES = re.compile(r"ok|driver-not-loaded|version-mismatch|library-missing|gpu-lost:\d+")
INIT_STATES = ("driver-not-loaded", "version-mismatch")  # nvmlInit itself fails (fake_nvml.c)
VERSION = re.compile(r"\d+(\.\d+)+")
MAJOR_MINOR = re.compile(r"(\d+)\.(\d+)")


def host_values(host: dict[str, Any]) -> dict[str, Any]:
    """The spec with defaults filled in, checked; ValueError names the host and key."""
    name = host.get("name")
    if not isinstance(name, str) or not name.strip() or "\n" in name:
        raise ValueError("host: name: expected a non-empty one-line string")
    values = {**DEFAULTS, **host}
    for key, check in CHECKS.items():
        problem = check(values[key])
        if problem:
            raise ValueError(f"host {name}: {key}: {problem} (got {values[key]!r})")
    lost = lost_gpu(values)
    if lost is not None and lost >= values["gpu_count"]:
        raise ValueError(f"host {name}: nvml: GPU {lost} does not exist (gpu_count = {values['gpu_count']})")
    if values["memory_used_mib"] > values["memory_mib"]:
        raise ValueError(f"host {name}: memory_used_mib: more than memory_mib")
    return values


def _int(lo: int, hi: int):
    def check(v: Any) -> str | None:
        ok = isinstance(v, int) and not isinstance(v, bool) and lo <= v <= hi
        return None if ok else f"expected an integer from {lo} to {hi}"

    return check


def _number(lo: float, hi: float):
    def check(v: Any) -> str | None:
        ok = isinstance(v, (int, float)) and not isinstance(v, bool) and lo <= v <= hi
        return None if ok else f"expected a number from {lo} to {hi}"

    return check


def _text(pattern: re.Pattern[str] | None, maxlen: int, optional: bool = False):
    def check(v: Any) -> str | None:
        if v is None and optional:
            return None
        if not isinstance(v, str) or not v or len(v) >= maxlen or "\n" in v:
            return f"expected a one-line string shorter than {maxlen} characters"
        if pattern is not None and not pattern.fullmatch(v):
            return f"expected something like {pattern.pattern}"
        return None

    return check


def _bool(v: Any) -> str | None:
    return None if isinstance(v, bool) else "expected true or false"


CHECKS = {
    "gpu": _text(None, 96),
    "gpu_count": _int(0, MAX_GPUS),
    "compute_capability": _text(MAJOR_MINOR, 16),
    "memory_mib": _int(1, 2**40),
    "driver": _text(VERSION, 60),
    "cuda": _text(MAJOR_MINOR, 16),
    "nvidia_container_toolkit": _text(VERSION, 40, optional=True),
    "fabric_manager": _text(VERSION, 40, optional=True),
    "nvml": _text(NVML_STATES, 40),
    "ecc_uncorrected_volatile": _int(0, 2**63),
    "remapped_rows_pending": _bool,
    "temperature_c": _int(0, 200),
    "power_draw_w": _number(0, 100_000),
    "power_limit_w": _number(0, 100_000),
    "utilization_pct": _int(0, 100),
    "memory_used_mib": _int(0, 2**40),
    "persistence_mode": _bool,
    "mig_mode": _bool,
    "throttle_reasons": _int(0, 2**64 - 1),
}


def lost_gpu(values: dict[str, Any]) -> int | None:
    """N for nvml = "gpu-lost:N", else None."""
    state = values["nvml"]
    return int(state.split(":", 1)[1]) if state.startswith("gpu-lost:") else None


def gpu_uuid(host_name: str, index: int) -> str:
    """Deterministic per host and index, shaped like a real one: GPU-xxxxxxxx-xxxx-xxxx-xxxx-xxxxxxxxxxxx."""
    digest = hashlib.sha256(f"fleetctl-lab/{host_name}/{index}".encode()).digest()
    return f"GPU-{uuid.UUID(bytes=digest[:16])}"


def gpu_serial(host_name: str, index: int) -> str:
    digest = hashlib.sha256(f"fleetctl-lab-serial/{host_name}/{index}".encode()).digest()
    return "165" + str(int.from_bytes(digest[:8], "big") % 10**10).zfill(10)


def pci_bus_id(index: int) -> str:
    bus = HGX_BUSES[index] if index < len(HGX_BUSES) else 0xE0 + index - len(HGX_BUSES)
    return f"00000000:{bus:02X}:00.0"


def cuda_version_int(cuda: str) -> int:
    """ "12.8" → 12080, as nvmlSystemGetCudaDriverVersion returns it."""
    major, minor = MAJOR_MINOR.fullmatch(cuda).groups()
    return int(major) * 1000 + int(minor) * 10


def gpu_lines(values: dict[str, Any], index: int) -> list[str]:
    board = BOARDS.get(values["gpu"], GENERIC_BOARD)
    cc_major, cc_minor = MAJOR_MINOR.fullmatch(values["compute_capability"]).groups()
    limit_mw = round(values["power_limit_w"] * 1000)
    mig = int(values["mig_mode"])
    ecc_unc = values["ecc_uncorrected_volatile"]
    fields = {
        "name": values["gpu"],
        "uuid": gpu_uuid(values["name"], index),
        "serial": gpu_serial(values["name"], index),
        "pci_bus_id": pci_bus_id(index),
        "pci_device_id": f"0x{board.pci_device_id:08X}",
        "pci_subsystem_id": f"0x{board.pci_subsystem_id:08X}",
        "vbios_version": board.vbios_version,
        "board_part_number": board.part_number,
        "minor_number": index,
        "memory_total_bytes": values["memory_mib"] * MIB,
        "memory_reserved_bytes": 0,
        "memory_used_bytes": values["memory_used_mib"] * MIB,
        "cc_major": cc_major,
        "cc_minor": cc_minor,
        "temperature_c": values["temperature_c"],
        "power_draw_mw": round(values["power_draw_w"] * 1000),
        "power_limit_mw": limit_mw,
        "enforced_power_limit_mw": limit_mw,
        "utilization_gpu": values["utilization_pct"],
        "utilization_memory": 0,
        "ecc_current": 1,
        "ecc_pending": 1,
        "ecc_uncorrected_volatile": ecc_unc,
        "ecc_uncorrected_aggregate": ecc_unc,
        "ecc_corrected_volatile": 0,
        "ecc_corrected_aggregate": 0,
        "remapped_rows_correctable": 0,
        "remapped_rows_uncorrectable": 0,
        "remapped_rows_pending": int(values["remapped_rows_pending"]),
        "remapped_rows_failure": 0,
        "retired_pages_supported": 1,
        "retired_pages_pending": 0,
        "retired_pages_sbe": "",
        "retired_pages_dbe": "",
        "clocks_event_reasons": f"0x{values['throttle_reasons']:X}",
        "persistence_mode": int(values["persistence_mode"]),
        "mig_current": mig,
        "mig_pending": mig,
        "lost": int(lost_gpu(values) == index),
    }
    return [f"gpu.{index}.{key}={value}" for key, value in fields.items()]


def render_config(host: dict[str, Any]) -> str:
    """The fake-hardware config text for one lab host (see fake_nvml.c for the keys)."""
    values = host_values(host)
    lines = [
        f"# fake NVML config for lab host {values['name']} (labkit.fakenvml.render_config)",
        "# key=value per line; later lines win; gpu.N.* keys describe GPU N",
        f"nvml={values['nvml'] if values['nvml'] in INIT_STATES else 'ok'}",
        f"driver_version={values['driver']}",
        f"nvml_version={values['cuda'].split('.')[0]}.{values['driver']}",
        f"cuda_driver_version={cuda_version_int(values['cuda'])}",
        f"gpu_count={values['gpu_count']}",
    ]
    for index in range(values["gpu_count"]):
        lines += gpu_lines(values, index)
    return "\n".join(lines) + "\n"
