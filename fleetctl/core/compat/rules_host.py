"""Rules about the host itself: GPU count, memory and health, mixed GPUs, Docker, the toolkit, Fabric Manager.

Each rule takes (host facts, profile, matrix) and returns one ``RuleResult``, or None when it does not apply.
"""

from __future__ import annotations

from collections import Counter

from fleetctl.core.compat.document import ver, within
from fleetctl.core.compat.matrix import Matrix
from fleetctl.core.compat.profile import Profile
from fleetctl.core.compat.result import FAIL, PASS, WARN, RuleResult, parsed, result
from fleetctl.core.facts import GpuFacts, HostFacts


def gpu_count(facts: HostFacts, profile: Profile, matrix: Matrix) -> RuleResult:
    usable = [g for g in facts.gpus if not g.lost]
    lost = len(facts.gpus) - len(usable)
    wanted = profile.requires.gpus
    actual = f"{len(usable)}" + (f" ({lost} lost)" if lost else "")
    if within(wanted, str(len(usable))):
        return result("gpu_count", PASS, str(wanted), actual, f"{len(usable)} usable GPUs meet {wanted}")
    return result(
        "gpu_count",
        FAIL,
        str(wanted),
        actual,
        f"{len(usable)} usable GPUs do not meet {wanted}",
        "run this profile on hosts with enough GPUs" + (", or recover the lost GPUs" if lost else ""),
    )


def gpu_memory(facts: HostFacts, profile: Profile, matrix: Matrix) -> RuleResult | None:
    wanted = profile.requires.gpu_memory_mib
    usable = [g for g in facts.gpus if not g.lost]
    if wanted is None or not usable:
        return None
    sizes = [g.memory_total_mib for g in usable if g.memory_total_mib is not None]
    if len(sizes) < len(usable):
        return result(
            "gpu_memory",
            WARN,
            f"{wanted} MiB",
            "unknown",
            "the memory of a GPU is unknown",
            "check the GPU with nvidia-smi",
        )
    low = min(sizes)
    if within(wanted, str(low)):
        return result("gpu_memory", PASS, f"{wanted} MiB", f"{low} MiB", f"smallest GPU has {low} MiB")
    return result(
        "gpu_memory",
        FAIL,
        f"{wanted} MiB",
        f"{low} MiB",
        f"smallest GPU has {low} MiB, profile needs {wanted} MiB",
        "run this profile on GPUs with more memory, or lower the model's memory needs",
    )


_FINDINGS = {
    "lost": (
        "GPU {i} is lost (fallen off the bus)",
        "drain the host and reset the GPU (reboot); if it stays lost, replace it",
    ),
    "remapped_rows_failed": ("GPU {i} failed to remap a memory row", "drain the host and have the GPU replaced"),
    "ecc_uncorrected_volatile": (
        "GPU {i} has {n} volatile uncorrected ECC error(s)",
        "drain the host and reset the GPU (nvidia-smi -r or reboot)",
    ),
    "remapped_rows_pending": (
        "GPU {i} has memory row remapping pending",
        "drain the host and reset the GPU (nvidia-smi -r or reboot) to apply the remapping",
    ),
}


def gpu_health(facts: HostFacts, profile: Profile, matrix: Matrix) -> RuleResult | None:
    """Lost GPUs, volatile uncorrected ECC errors, pending or failed row remapping."""
    if not facts.gpus:
        return None
    found = [(kind, gpu) for gpu in facts.gpus for kind in _findings(gpu)]
    if not found:
        return result(
            "gpu_health",
            PASS,
            "no lost GPU, no uncorrected ECC error, no pending remap",
            "healthy",
            f"{len(facts.gpus)} GPUs healthy",
        )
    statuses = [matrix.runtime.health[kind] for kind, _ in found]
    status = FAIL if FAIL in statuses else WARN
    messages = [_FINDINGS[kind][0].format(i=g.index, n=g.ecc_uncorrected_volatile) for kind, g in found]
    fixes = list(dict.fromkeys(_FINDINGS[kind][1] for kind, _ in found))
    return result(
        "gpu_health",
        status,
        "no lost GPU, no uncorrected ECC error, no pending remap",
        f"{len(found)} finding(s)",
        "; ".join(messages),
        "; ".join(fixes),
    )


def _findings(gpu: GpuFacts) -> list[str]:
    kinds = []
    if gpu.lost:
        kinds.append("lost")
    if gpu.remapped_rows_failed:
        kinds.append("remapped_rows_failed")
    if gpu.ecc_uncorrected_volatile:
        kinds.append("ecc_uncorrected_volatile")
    if gpu.remapped_rows_pending:
        kinds.append("remapped_rows_pending")
    return kinds


def mixed_gpus(facts: HostFacts, profile: Profile, matrix: Matrix) -> RuleResult | None:
    if not facts.gpus:
        return None
    models = Counter((g.name or "unknown GPU").removeprefix("NVIDIA ") for g in facts.gpus)
    actual = ", ".join(f"{n} × {name}" for name, n in models.items())
    if len(models) == 1:
        return result("mixed_gpus", PASS, "one GPU model", actual, f"all GPUs are {next(iter(models))}")
    return result(
        "mixed_gpus",
        matrix.runtime.mixed_status,
        "one GPU model",
        actual,
        f"mixed GPU models ({actual}): tensor parallelism runs at the smallest GPU's memory and speed",
        "pin the deployment to one model with [serve] gpus / CUDA_VISIBLE_DEVICES, or exclude the host",
    )


def docker(facts: HostFacts, profile: Profile, matrix: Matrix) -> RuleResult:
    need = matrix.runtime.docker_min
    version = parsed(facts.docker_version)
    if facts.docker_version is None:
        return result(
            "docker",
            FAIL,
            f">= {need}",
            "not found",
            "Docker not found (or `docker version` failed)",
            f"install Docker ≥ {need} and make sure the SSH user may use it",
        )
    if version is None:
        return result(
            "docker",
            WARN,
            f">= {need}",
            facts.docker_version,
            f"Docker version {facts.docker_version!r} cannot be compared",
            "",
        )
    if version < ver(need):
        return result(
            "docker",
            FAIL,
            f">= {need}",
            facts.docker_version,
            f"Docker {facts.docker_version} < {need}: `docker run --gpus` needs {need}",
            f"upgrade Docker to ≥ {need}",
        )
    return result("docker", PASS, f">= {need}", facts.docker_version, f"Docker {facts.docker_version} >= {need}")


def container_toolkit(facts: HostFacts, profile: Profile, matrix: Matrix) -> RuleResult | None:
    if not matrix.runtime.toolkit_required:
        return None
    version = facts.nvidia_container_toolkit_version
    if version is None:
        return result(
            "container_toolkit",
            FAIL,
            "installed",
            "not found",
            "NVIDIA Container Toolkit not found (neither nvidia-ctk nor nvidia-container-cli answered): "
            "Docker cannot give containers GPUs",
            "install nvidia-container-toolkit, run `nvidia-ctk runtime configure --runtime=docker` and restart Docker",
        )
    return result("container_toolkit", PASS, "installed", version, f"NVIDIA Container Toolkit {version}")


def fabric_manager(facts: HostFacts, profile: Profile, matrix: Matrix) -> RuleResult | None:
    """Where Fabric Manager is installed it must equal the driver exactly; NVSwitch boards need it."""
    fm, drv = facts.fabric_manager_version, facts.driver_version
    if not matrix.runtime.fm_must_equal_driver or drv is None:
        return None
    branch = drv.split(".")[0]
    fix = (
        f"install Fabric Manager {drv} (nvidia-fabricmanager-{branch}, the exact driver version), hold the "
        "driver and Fabric Manager packages together, and restart nvidia-fabricmanager"
    )
    if fm is None:
        board = _nvswitch_board(facts, matrix)
        if board is None:
            return None
        return result(
            "fabric_manager",
            WARN,
            f"== {drv}",
            "not found",
            f"{board} is usually an NVSwitch (HGX) board, which needs Fabric Manager; none found",
            fix,
        )
    if fm != drv:
        return result(
            "fabric_manager",
            FAIL,
            f"== {drv}",
            fm,
            f"Fabric Manager {fm} ≠ driver {drv}: Fabric Manager will not start, the NVSwitch fabric stays "
            "down and CUDA fails with error 802",
            fix,
        )
    return result("fabric_manager", PASS, f"== {drv}", fm, f"Fabric Manager {fm} matches the driver")


def _nvswitch_board(facts: HostFacts, matrix: Matrix) -> str | None:
    counts = Counter(matrix.gpu(g.name) for g in facts.gpus)
    for row, n in counts.items():
        if row is not None and row.nvswitch_at and n >= row.nvswitch_at:
            return f"{n} × {row.model}"
    return None
