"""Rules about the driver, CUDA and the GPUs' architecture: what the image and vLLM need from the hardware.

Each rule takes (host facts, profile, matrix) and returns one ``RuleResult``, or None when it does not apply.
"""

from __future__ import annotations

from typing import NamedTuple

from packaging.specifiers import SpecifierSet

from fleetctl.core.compat.document import spec, ver, within
from fleetctl.core.compat.matrix import Matrix, minor_of
from fleetctl.core.compat.model import CudaRelease
from fleetctl.core.compat.profile import Profile
from fleetctl.core.compat.result import FAIL, PASS, WARN, RuleResult, parsed, result, settle
from fleetctl.core.facts import GpuFacts, HostFacts


def gpu_cc(gpu: GpuFacts, matrix: Matrix) -> tuple[str | None, bool]:
    """The GPU's compute capability: NVML's, else the matrix row's (and whether that row is confirmed)."""
    if gpu.compute_capability:
        return gpu.compute_capability, True
    row = matrix.gpu(gpu.name)
    return (row.compute_capability, row.confirmed) if row else (None, True)


def distinct_gpus(facts: HostFacts) -> list[GpuFacts]:
    """One GPU per product name (and MIG mode), in index order."""
    seen: dict[tuple[str | None, bool | None], GpuFacts] = {}
    for gpu in facts.gpus:
        seen.setdefault((gpu.name, gpu.mig_mode), gpu)
    return list(seen.values())


# ------------------------------------------------------------------------------------------ driver_for_cuda


def driver_for_cuda(facts: HostFacts, profile: Profile, matrix: Matrix) -> RuleResult:
    rule = "driver_for_cuda"
    release, exact = matrix.cuda_release(profile.cuda)
    assert release is not None, "parse_profile only accepts a CUDA the matrix knows"
    expected = f">= {release.min_driver} (CUDA {profile.cuda})"
    drv = facts.driver_version
    driver = parsed(drv)
    if drv is None or driver is None:
        return result(
            rule,
            WARN,
            expected,
            drv or "unknown",
            f"the driver version ({drv or 'not reported'}) cannot be compared",
            "check nvidia-smi on the host and run the inventory again",
        )
    sure = exact and release.confirmed
    doubt = "" if sure else f" ({_doubt(release, exact, profile.cuda)})"
    if driver >= ver(release.min_driver):
        return result(
            rule,
            settle(PASS, sure),
            expected,
            drv,
            f"driver {drv} >= {release.min_driver} required by CUDA {profile.cuda}{doubt}",
        )
    return _below_floor(facts, drv, profile, matrix, release, sure, doubt)


def _doubt(release: CudaRelease, exact: bool, cuda: str) -> str:
    if not exact:
        return f"the matrix has no row for CUDA {cuda}; used CUDA {release.cuda}'s floor"
    return f"the floor for CUDA {release.cuda} is not confirmed: {release.note or release.source}"


def _below_floor(
    facts: HostFacts, drv: str, profile: Profile, matrix: Matrix, release: CudaRelease, sure: bool, doubt: str
) -> RuleResult:
    """``drv``: the host's driver version, known and below ``release``'s floor."""
    rule, need = "driver_for_cuda", release.min_driver
    expected = f">= {need} (CUDA {profile.cuda})"
    base = f"driver {drv} < {need} required by CUDA {profile.cuda} (image {profile.image})"
    older = matrix.newest_cuda_for(drv)
    fix = f"upgrade the driver to ≥ {need}" + (f", or use a CUDA ≤ {older} image" if older else "")
    forward, why_not = _forward_compat(drv, facts, profile, matrix)
    if forward is not None:
        return result(
            rule,
            settle(WARN, sure),
            expected,
            drv,
            f"{base}: runs only through forward compatibility ({forward}){doubt}",
            f"upgrade the driver to ≥ {need} to stop relying on forward compatibility",
        )
    return result(
        rule, settle(FAIL, sure), expected, drv, base + why_not + _minor_note(drv, profile, matrix) + doubt, fix
    )


def _forward_compat(drv: str, facts: HostFacts, profile: Profile, matrix: Matrix) -> tuple[str | None, str]:
    """(how forward compatibility carries this host, None if it does not) and why it does not."""
    fc = matrix.forward_for(profile.cuda)
    branch = str(ver(drv).release[0])
    package = f"cuda-compat-{minor_of(profile.cuda).replace('.', '-')}"
    if fc is None or branch not in fc.branches:
        supported = f" (supported: {', '.join('R' + b for b in fc.branches)})" if fc else ""
        return None, f"; R{branch} is not a forward-compatibility branch for {package}{supported}"
    if not profile.cuda_compat:
        return None, f"; the image carries no {package} libraries for forward compatibility"
    classes = [(g.name or "unknown GPU", *matrix.gpu_class(g.name)) for g in distinct_gpus(facts)]
    blockers = [f"{name} ({cls})" for name, cls, sure in classes if cls not in matrix.forward_classes or not sure]
    if not classes or blockers:
        gpus = ", ".join(blockers) or "no GPU found"
        return None, (
            f"; forward compatibility ({package}) works only on data-center GPUs, not on {gpus}: "
            "CUDA fails with error 804"
        )
    return f"{package} in the image, R{branch} branch, data-center GPUs", ""


def _minor_note(driver: str, profile: Profile, matrix: Matrix) -> str:
    minor = matrix.minor_for(profile.cuda)
    if minor is None:
        return ""
    major = ver(profile.cuda).major
    if ver(driver) < ver(minor.min_driver):
        return f"; below CUDA {major}.x's minimum driver {minor.min_driver}: CUDA cannot initialize"
    return (
        f"; minor-version compatibility (CUDA {major}.x from {minor.min_driver}) does not start an image "
        f"that requires cuda>={minor_of(profile.cuda)}"
    )


# ------------------------------------------------------------------------------------------- driver_for_gpu


def driver_for_gpu(facts: HostFacts, profile: Profile, matrix: Matrix) -> RuleResult | None:
    """Per-GPU minimum drivers: the first CUDA of the architecture, and NVIDIA's per-product floors."""
    drv = facts.driver_version
    driver = parsed(drv)
    needs = _gpu_floors(facts, matrix)
    if drv is None or driver is None or not needs:
        return None
    top = max(needs, key=lambda n: ver(n[0]))
    below = [(floor, why) for floor, why in needs if driver < ver(floor)]
    expected = f">= {top[0]} ({top[1]})"
    if not below:
        return result(
            "driver_for_gpu",
            PASS,
            expected,
            drv,
            f"driver {drv} >= {top[0]} required by {top[1]}",
        )
    worst = max(below, key=lambda n: ver(n[0]))
    return result(
        "driver_for_gpu",
        FAIL,
        f">= {worst[0]} ({worst[1]})",
        drv,
        "; ".join(f"driver {drv} < {floor} required by {why}" for floor, why in below),
        f"upgrade the driver to ≥ {worst[0]}",
    )


def _gpu_floors(facts: HostFacts, matrix: Matrix) -> list[tuple[str, str]]:
    needs: dict[tuple[str, str], None] = {}
    for gpu in distinct_gpus(facts):
        cc, _ = gpu_cc(gpu, matrix)
        arch = matrix.architecture(cc) if cc else None
        if arch is not None and arch.min_driver:
            needs[(arch.min_driver, f"{arch.name} GPUs")] = None
        row = matrix.gpu(gpu.name)
        if row is None:
            continue
        for floor in matrix.floors_for(row.family):
            if floor.when == "always" or gpu.mig_mode:
                needs[(floor.min_driver, row.family + (" in MIG mode" if floor.when == "mig" else ""))] = None
    return list(needs)


# -------------------------------------------------------------------------------------------- arch_for_cuda


def arch_for_cuda(facts: HostFacts, profile: Profile, matrix: Matrix) -> RuleResult | None:
    """The image's CUDA supports every GPU architecture on the host (not too new, not removed)."""
    if not facts.gpus:
        return None
    found = [gpu_cc(g, matrix)[0] for g in facts.gpus]
    ccs = sorted({cc for cc in found if cc}, key=ver)
    cuda = ver(profile.cuda)
    archs = [(cc, matrix.architecture(cc)) for cc in ccs]
    actual = ", ".join(f"{a.name if a else 'unknown'} (CC {cc})" for cc, a in archs) or "unknown"
    expected = f"CUDA {profile.cuda} supports " + (", ".join(a.name for _, a in archs if a) or "the GPUs")
    for cc, arch in archs:
        if arch is not None and cuda < ver(arch.first_cuda):
            return result(
                "arch_for_cuda",
                FAIL,
                f"CUDA >= {arch.first_cuda} for {arch.name}",
                actual,
                f"{arch.name} (CC {cc}) needs CUDA ≥ {arch.first_cuda}; image {profile.image} is CUDA {profile.cuda}",
                f"use an image built with CUDA ≥ {arch.first_cuda}",
            )
        if arch is not None and arch.removed_in_cuda and cuda >= ver(arch.removed_in_cuda):
            return result(
                "arch_for_cuda",
                FAIL,
                f"CUDA < {arch.removed_in_cuda} for {arch.name}",
                actual,
                f"CUDA {arch.removed_in_cuda} removed {arch.name} (CC {cc}); image {profile.image} is "
                f"CUDA {profile.cuda}",
                f"use an image built with CUDA < {arch.removed_in_cuda}",
            )
    unknown = [cc for cc, arch in archs if arch is None]
    if unknown or None in found:
        what = ", ".join(f"CC {cc}" for cc in unknown) or "a GPU's compute capability"
        return result(
            "arch_for_cuda",
            WARN,
            expected,
            actual,
            f"{what} is not in the matrix: cannot tell whether CUDA {profile.cuda} supports it",
            "add the architecture to profiles/matrix",
        )
    return result("arch_for_cuda", PASS, expected, actual, f"CUDA {profile.cuda} supports {actual}")


# --------------------------------------------------------------------------------------- compute_capability


def compute_capability(facts: HostFacts, profile: Profile, matrix: Matrix) -> RuleResult | None:
    """The lowest compute capability on the host meets the profile's and vLLM's minimum."""
    if not facts.gpus:
        return None
    found = [gpu_cc(g, matrix) for g in facts.gpus]
    needs = _cc_needs(profile, matrix)
    expected = "; ".join(f"{n.text} ({n.origin})" for n in needs) or "any"
    known = [cc for cc, _ in found if cc is not None]
    if len(known) < len(found):
        return result(
            "compute_capability",
            WARN,
            expected,
            "unknown",
            "the compute capability of a GPU is unknown",
            "check the GPU with nvidia-smi",
        )
    low = min(known, key=ver)
    sure = all(ok for _, ok in found)
    failing = [n for n in needs if not within(n.spec, low)]
    if not failing:
        return result(
            "compute_capability", settle(PASS, sure), expected, low, f"lowest compute capability {low} meets {expected}"
        )
    status = FAIL if any(n.confirmed for n in failing) and sure else WARN
    notes = "; ".join(f"CC {low} does not meet {n.text} ({n.origin})" for n in failing)
    floor = matrix.vllm_min_compute_capability(profile.vllm)
    if floor is not None and not floor.confirmed and any(not n.confirmed for n in failing):
        notes += f"; {floor.note}"
    return result(
        "compute_capability",
        status,
        expected,
        low,
        notes,
        f"run this profile on GPUs with compute capability {failing[0].text}",
    )


class Need(NamedTuple):
    spec: SpecifierSet
    text: str
    origin: str
    confirmed: bool


def _cc_needs(profile: Profile, matrix: Matrix) -> list[Need]:
    needs = []
    if profile.requires.compute_capability is not None:
        needs.append(
            Need(
                profile.requires.compute_capability,
                str(profile.requires.compute_capability),
                f"profile {profile.name}",
                True,
            )
        )
    floor = matrix.vllm_min_compute_capability(profile.vllm)
    if floor is not None:
        origin = f"vLLM {profile.vllm}" + ("" if floor.confirmed else " (unconfirmed)")
        needs.append(
            Need(spec(f">={floor.compute_capability}"), f">={floor.compute_capability}", origin, floor.confirmed)
        )
    return needs


# ------------------------------------------------------------------------------------------------- features


def features(facts: HostFacts, profile: Profile, matrix: Matrix) -> RuleResult | None:
    """Every feature the profile requires is available on every GPU (its compute capability gate)."""
    if not profile.requires.features or not facts.gpus:
        return None
    problems, fixes, wanted = [], [], []
    for feature in profile.requires.features:
        gate = matrix.feature(feature, profile.cuda)
        if gate is None:
            problems.append(f"{feature} is not available with CUDA {profile.cuda}")
            continue
        wanted.append(f"{feature}: CC {' or '.join(gate.compute_capability)}")
        bad = _gpus_outside(facts, matrix, gate.cc_specs)
        if bad:
            problems.append(
                f"{feature} ({gate.description}) needs CC {' or '.join(gate.compute_capability)}; " + ", ".join(bad)
            )
            fixes.append(
                f'use GPUs with CC {" or ".join(gate.compute_capability)}, or drop "{feature}" from '
                f"requires.features" + (f" ({gate.fallback})" if gate.fallback else "")
            )
    expected = "; ".join(wanted) or ", ".join(profile.requires.features)
    actual = ", ".join(sorted({f"CC {cc}" for cc, _ in (gpu_cc(g, matrix) for g in facts.gpus) if cc})) or "unknown"
    if problems:
        return result("features", FAIL, expected, actual, "; ".join(problems), "; ".join(fixes))
    return result("features", PASS, expected, actual, f"{', '.join(profile.requires.features)} available on every GPU")


def _gpus_outside(facts: HostFacts, matrix: Matrix, specs: tuple[SpecifierSet, ...]) -> list[str]:
    bad = []
    for gpu in distinct_gpus(facts):
        cc, _ = gpu_cc(gpu, matrix)
        if cc is None or not any(within(s, cc) for s in specs):
            bad.append(f"{gpu.name or 'GPU ' + str(gpu.index)} is CC {cc or 'unknown'}")
    return bad
