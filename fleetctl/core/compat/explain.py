"""What a CUDA release, a GPU model or a profile needs, as rows of (topic, requirement, source).

Pure: ``fleetctl matrix show`` renders these rows as a table or JSON.
"""

from __future__ import annotations

from typing import NamedTuple

from fleetctl.core.compat.document import ver, within
from fleetctl.core.compat.matrix import CUDA_VERSION, Matrix, minor_of
from fleetctl.core.compat.profile import Profile
from fleetctl.errors import UsageError


class Line(NamedTuple):
    topic: str
    requirement: str
    source: str

    def to_dict(self) -> dict[str, str]:
        return self._asdict()


def _unconfirmed(confirmed: bool, note: str = "") -> str:
    if confirmed:
        return f" ({note})" if note else ""
    return f" (UNCONFIRMED{': ' + note if note else ''})"


def explain_cuda(matrix: Matrix, cuda: str) -> list[Line]:
    if not CUDA_VERSION.fullmatch(cuda):
        raise UsageError(f"--cuda {cuda!r} is not a CUDA version (X.Y or X.Y.Z, e.g. 12.8)")
    release, exact = matrix.cuda_release(cuda)
    if release is None:
        known = ", ".join(dict.fromkeys(minor_of(r.cuda) for r in matrix.releases))
        raise UsageError(f"CUDA {cuda} is not in the matrix (known: {known})")
    lines = [
        Line(
            "driver",
            f"≥ {release.min_driver} (toolkit driver of CUDA {release.cuda})"
            + _unconfirmed(
                release.confirmed and exact, release.note or ("" if exact else f"no row for {cuda}, nearest update")
            ),
            release.source,
        )
    ]
    minor = matrix.minor_for(cuda)
    if minor is not None:
        upper = f", minor-version range below R{minor.driver_below}" if minor.driver_below else ""
        lines.append(
            Line(
                "minor-version compatibility",
                f"CUDA {minor.cuda_major}.x applications run on "
                f"drivers ≥ {minor.min_driver}{upper}; images still require their own floor",
                minor.source,
            )
        )
    fc = matrix.forward_for(cuda)
    if fc is not None:
        lines.append(
            Line(
                "forward compatibility",
                f"cuda-compat-{minor_of(cuda).replace('.', '-')} on "
                f"{', '.join('R' + b for b in fc.branches)}; {', '.join(matrix.forward_classes)} "
                "GPUs only",
                fc.source,
            )
        )
    lines.extend(_architectures_for(matrix, cuda))
    lines.extend(
        Line(
            "vLLM image", f"vLLM {r.vllm}: default image is CUDA {r.cuda}" + _unconfirmed(r.confirmed, r.note), r.source
        )
        for r in matrix.vllm_releases
        if minor_of(r.cuda) == minor_of(cuda)
    )
    return lines


def _architectures_for(matrix: Matrix, cuda: str) -> list[Line]:
    lines = []
    for arch in matrix.architectures:
        ccs = "/".join(arch.compute_capabilities)
        if ver(cuda) < ver(arch.first_cuda):
            what = f"not supported: needs CUDA ≥ {arch.first_cuda}"
        elif arch.removed_in_cuda and ver(cuda) >= ver(arch.removed_in_cuda):
            what = f"not supported: removed in CUDA {arch.removed_in_cuda}"
        else:
            what = f"supported (since CUDA {arch.first_cuda})"
        lines.append(Line(f"architecture {arch.name} (CC {ccs})", what, arch.source))
    return lines


def explain_gpu(matrix: Matrix, name: str) -> list[Line]:
    row = matrix.gpu(name)
    if row is None:
        known = ", ".join(g.model for g in matrix.gpus)
        raise UsageError(f"GPU {name!r} is not in the matrix (known: {known})")
    lines = [
        Line(
            "model",
            f"{row.model} (family {row.family}), {row.gpu_class} GPU, compute capability "
            f"{row.compute_capability}" + _unconfirmed(row.confirmed, row.note),
            row.source,
        )
    ]
    arch = matrix.architecture(row.compute_capability)
    if arch is not None:
        removed = f", removed in CUDA {arch.removed_in_cuda}" if arch.removed_in_cuda else ""
        driver = f", driver ≥ {arch.min_driver}" if arch.min_driver else ""
        lines.append(
            Line(
                "architecture",
                f"{arch.name}: CUDA ≥ {arch.first_cuda}{removed}{driver}" + _unconfirmed(arch.confirmed, arch.note),
                arch.source,
            )
        )
    lines.extend(
        Line(
            "driver floor",
            f"≥ {f.min_driver}" + (" in MIG mode" if f.when == "mig" else "") + _unconfirmed(True, f.note),
            f.source,
        )
        for f in matrix.floors_for(row.family)
    )
    eligible = row.gpu_class in matrix.forward_classes
    lines.append(
        Line(
            "forward compatibility",
            "eligible (data-center GPU)" if eligible else f"not eligible ({row.gpu_class} GPU: CUDA error 804)",
            matrix.forward_source,
        )
    )
    if row.nvswitch_at:
        lines.append(
            Line(
                "Fabric Manager",
                f"{row.nvswitch_at} per host means an NVSwitch board: Fabric Manager equal to the driver version",
                matrix.runtime.fm_source,
            )
        )
    for gate in matrix.features:
        ok = any(within(s, row.compute_capability) for s in gate.cc_specs)
        cuda = f" with CUDA {gate.cuda}" if gate.cuda else ""
        lines.append(
            Line(
                f"feature {gate.id}",
                ("available" if ok else "not available") + cuda + f" (needs CC {' or '.join(gate.compute_capability)})",
                gate.source,
            )
        )
    return lines


def explain_profile(matrix: Matrix, profile: Profile) -> list[Line]:
    req = profile.requires
    lines = [
        Line(
            "image",
            f"{profile.image}: CUDA {profile.cuda}, vLLM {profile.vllm or '-'}, cuda-compat "
            f"libraries {'bundled' if profile.cuda_compat else 'not bundled'}",
            matrix.vllm_image.source,
        )
    ]
    line = matrix.vllm_release(profile.vllm)
    if line is not None:
        torch = f", PyTorch {line.torch}" if line.torch else ""
        lines.append(
            Line(
                "vLLM release line",
                f"vLLM {line.vllm}: CUDA {line.cuda}{torch}" + _unconfirmed(line.confirmed, line.note),
                line.source,
            )
        )
    floor = matrix.vllm_min_compute_capability(profile.vllm)
    if floor is not None:
        lines.append(
            Line(
                "vLLM compute capability",
                f"≥ {floor.compute_capability}" + _unconfirmed(floor.confirmed, floor.note),
                floor.source,
            )
        )
    lines.extend(explain_cuda(matrix, profile.cuda)[:3])
    lines.append(
        Line(
            "profile requires",
            f"gpus {req.gpus}, gpu memory {req.gpu_memory_mib or 'any'} MiB, "
            f"compute capability {req.compute_capability or 'any'}",
            profile.path,
        )
    )
    for feature in req.features:
        gate = matrix.feature(feature, profile.cuda)
        lines.append(
            Line(
                f"feature {feature}",
                f"compute capability {' or '.join(gate.compute_capability)}"
                if gate
                else f"not available with CUDA {profile.cuda}",
                gate.source if gate else "",
            )
        )
    rt = matrix.runtime
    lines += [
        Line("Docker", f"≥ {rt.docker_min}", rt.docker_source),
        Line("NVIDIA Container Toolkit", "installed" if rt.toolkit_required else "optional", rt.toolkit_source),
        Line("Fabric Manager", "equal to the driver version where installed", rt.fm_source),
    ]
    return lines
