"""Every compatibility rule, table-driven from hand-written host facts, against the shipped matrix."""

from dataclasses import replace
from pathlib import Path

import pytest

from fleetctl.core.compat.matrix import parse_matrix
from fleetctl.core.compat.profile import parse_profile
from fleetctl.core.compat.rules import RULES, check_host, check_snapshot
from fleetctl.core.facts import GpuFacts, HostFacts
from fleetctl.core.inventory import HostFailure, HostReport, Snapshot

PROFILES = Path(__file__).resolve().parents[2] / "profiles"
MATRIX = parse_matrix({str(p): p.read_text() for p in (PROFILES / "matrix").glob("*.toml")})

H100, A100, B200, B300 = "NVIDIA H100 80GB HBM3", "NVIDIA A100-SXM4-80GB", "NVIDIA B200", "NVIDIA B300"
V100, T4, L40S = "Tesla V100-SXM2-32GB", "Tesla T4", "NVIDIA L40S"
RTX4090, RTX6000 = "NVIDIA GeForce RTX 4090", "NVIDIA RTX 6000 Ada Generation"
CC = {
    H100: "9.0",
    A100: "8.0",
    B200: "10.0",
    B300: "10.3",
    V100: "7.0",
    T4: "7.5",
    L40S: "8.9",
    RTX4090: "8.9",
    RTX6000: "8.9",
    "NVIDIA A10G": None,
}


def gpu(name=H100, index=0, **kw) -> GpuFacts:
    fields = {
        "name": name,
        "compute_capability": CC.get(name, "9.0"),
        "memory_total_mib": 81559,
        "ecc_uncorrected_volatile": 0,
        "remapped_rows_pending": False,
        "remapped_rows_failed": False,
        "mig_mode": False,
        **kw,
    }
    return GpuFacts(index=index, **fields)


def host(driver="570.133.20", gpus=None, n=1, name=H100, docker="27.5.1", ctk="1.17.8", fm=None, **gpu_kw):
    found = gpus if gpus is not None else [gpu(name, i, **gpu_kw) for i in range(n)]
    return HostFacts(
        driver_version=driver,
        docker_version=docker,
        nvidia_container_toolkit_version=ctk,
        fabric_manager_version=fm,
        gpus=tuple(found),
    )


def profile(cuda="12.8", vllm="0.11.0", ref=None, requires="", extra_image=""):
    ref = ref or f"vllm/vllm-openai:v{vllm}"
    text = (
        f'[profile]\nname = "t"\n[image]\nref = "{ref}"\ncuda = "{cuda}"\nvllm = "{vllm}"\n{extra_image}\n'
        f"[requires]\n{requires}\n"
    )
    return parse_profile(text, "t.toml", MATRIX)


def run(rule, facts, prof=None):
    return RULES[rule](facts, prof or profile(), MATRIX)


def status(rule, facts, prof=None):
    r = run(rule, facts, prof)
    return None if r is None else r.status


# ------------------------------------------------------------------------------------------ driver_for_cuda


@pytest.mark.parametrize(
    "cuda, driver, gpu_name, expected",
    [
        ("12.8", "570.26", H100, "pass"),  # exactly at the 12.8 GA floor
        ("12.8", "570.26.0", H100, "pass"),
        ("12.8", "570.25.99", H100, "fail"),  # one patch below, R570 is no forward-compat branch for 12.8
        ("12.8.1", "570.124.06", H100, "pass"),  # exactly at the 12.8 Update 1 floor
        ("12.8.1", "570.124.05", H100, "fail"),  # one patch below
        ("12.4.1", "550.54.15", L40S, "pass"),
        ("12.4.1", "550.54.14", L40S, "fail"),
        ("13.0.2", "580.95.05", B200, "pass"),
        ("13.0.2", "580.95.04", B200, "fail"),  # R580 is native for 13.0, not a forward-compat branch
        ("12.8", "580.65.06", H100, "pass"),  # a newer branch runs older CUDA (backward compatibility)
        ("12.8", "535.230.02", H100, "warn"),  # data-center GPU on a supported branch: forward compatibility
        ("12.8", "535.230.02", A100, "warn"),
        ("13.0.2", "570.133.20", H100, "warn"),  # cuda-compat-13-0 on R570
        ("12.8", "535.230.02", RTX4090, "fail"),  # GeForce: forward compatibility does not apply (error 804)
        ("12.8", "535.230.02", RTX6000, "fail"),  # RTX workstation: neither
        ("12.8", "550.54.15", H100, "fail"),  # R550 is not a supported forward-compat branch
        ("12.8", "520.61.05", H100, "fail"),  # below CUDA 12's family minimum
        ("13.4", "615.10", H100, "warn"),  # the 13.4 floor is unconfirmed: never a clean pass
        ("13.4", "595.58.03", H100, "warn"),  # ... nor a failure
        ("13.0.3", "580.95.05", H100, "warn"),  # no row for 13.0.3: nearest update's floor, flagged
    ],
)
def test_driver_for_cuda(cuda, driver, gpu_name, expected):
    prof = profile(cuda=cuda, vllm="0.20.0", ref="my/vllm:1", extra_image="cuda_compat = true")
    assert status("driver_for_cuda", host(driver, name=gpu_name), prof) == expected


def test_driver_for_cuda_spells_out_the_issue_example():
    r = run("driver_for_cuda", host("550.54.15"))
    assert r.message.startswith("driver 550.54.15 < 570.26 required by CUDA 12.8 (image vllm/vllm-openai:v0.11.0)")
    assert r.fix == "upgrade the driver to ≥ 570.26, or use a CUDA ≤ 12.4 image"
    assert (r.expected, r.actual) == (">= 570.26 (CUDA 12.8)", "550.54.15")
    assert "R550 is not a forward-compatibility branch for cuda-compat-12-8 (supported: R535)" in r.message
    assert "minor-version compatibility (CUDA 12.x from 525.60.13)" in r.message


def test_forward_compatibility_warns_on_data_center_and_fails_on_geforce():
    warn = run("driver_for_cuda", host("535.230.02", name=H100))
    assert "runs only through forward compatibility (cuda-compat-12-8 in the image, R535 branch" in warn.message
    assert warn.fix == "upgrade the driver to ≥ 570.26 to stop relying on forward compatibility"
    fail = run("driver_for_cuda", host("535.230.02", name=RTX4090))
    assert (
        "works only on data-center GPUs, not on NVIDIA GeForce RTX 4090 (geforce): CUDA fails with error 804"
        in fail.message
    )
    assert fail.fix == "upgrade the driver to ≥ 570.26, or use a CUDA ≤ 12.2 image"


def test_forward_compatibility_needs_the_compat_libraries_in_the_image():
    custom = profile(ref="registry.local/vllm:custom")  # not an official vLLM image
    r = run("driver_for_cuda", host("535.230.02"), custom)
    assert r.status == "fail" and "the image carries no cuda-compat-12-8 libraries" in r.message


def test_a_mixed_host_with_one_geforce_is_not_forward_compatible():
    mixed = host("535.230.02", gpus=[gpu(H100, 0), gpu(RTX4090, 1)])
    assert status("driver_for_cuda", mixed) == "fail"


def test_a_driver_below_the_family_minimum_cannot_initialize_cuda():
    r = run("driver_for_cuda", host("520.61.05"))
    assert "below CUDA 12.x's minimum driver 525.60.13: CUDA cannot initialize" in r.message
    assert r.fix == "upgrade the driver to ≥ 570.26, or use a CUDA ≤ 11.8 image"


def test_an_unreadable_driver_version_is_a_warning():
    assert status("driver_for_cuda", host("N/A")) == "warn"
    assert status("driver_for_cuda", host(None)) == "warn"


# ------------------------------------------------------------------------------------------- driver_for_gpu


@pytest.mark.parametrize(
    "driver, name, mig, expected",
    [
        ("570.133.20", B200, False, "pass"),  # B200: GPU Operator floor 570.133.20, always
        ("570.133.19", B200, False, "fail"),
        ("570.26", B200, False, "fail"),
        ("525.85.12", H100, True, "pass"),  # H100 in MIG mode: 525.85.12
        ("525.85.11", H100, True, "fail"),
        ("525.60.13", H100, False, "pass"),  # not in MIG mode: only the Hopper floor (520.61.05)
        ("520.61.04", H100, False, "fail"),
        ("575.51.03", B300, False, "pass"),  # Blackwell sm_103: 575.51.03
        ("575.51.02", B300, False, "fail"),
        ("535.230.02", A100, False, None),  # nothing NVIDIA publishes applies
    ],
)
def test_driver_for_gpu(driver, name, mig, expected):
    assert status("driver_for_gpu", host(driver, name=name, mig_mode=mig)) == expected


def test_driver_for_gpu_names_the_floor():
    r = run("driver_for_gpu", host("570.26", name=B200))
    assert (r.expected, r.fix) == (">= 570.133.20 (B200)", "upgrade the driver to ≥ 570.133.20")


# -------------------------------------------------------------------------------------------- arch_for_cuda


@pytest.mark.parametrize(
    "cuda, name, expected, words",
    [
        ("12.8", H100, "pass", "CUDA 12.8 supports Hopper (CC 9.0)"),
        ("12.8", B200, "pass", ""),
        ("12.4", B200, "fail", "Blackwell (CC 10.0) needs CUDA ≥ 12.8"),
        ("12.8", B300, "fail", "needs CUDA ≥ 12.9"),
        ("12.9", B300, "pass", ""),
        ("13.0", V100, "fail", "CUDA 13.0 removed Volta (CC 7.0)"),
        ("12.9", V100, "pass", ""),
    ],
)
def test_arch_for_cuda(cuda, name, expected, words):
    r = run("arch_for_cuda", host("600.1", name=name), profile(cuda=cuda, vllm="0.20.0", ref="my/vllm:1"))
    assert r.status == expected and words in r.message


def test_arch_for_cuda_warns_on_an_architecture_it_does_not_know():
    r = run("arch_for_cuda", host(gpus=[gpu("NVIDIA Thor", compute_capability="11.0")]))
    assert r.status == "warn" and "CC 11.0 is not in the matrix" in r.message


# --------------------------------------------------------------------------------------- compute_capability


@pytest.mark.parametrize(
    "vllm, requires, name, expected",
    [
        ("0.21.0", "", T4, "pass"),  # 7.5 meets vLLM's 7.5
        ("0.21.0", "", V100, "fail"),  # 7.0 < 7.5
        ("0.9.0", "", V100, "pass"),  # vLLM <= 0.9.0 still ran on Volta
        ("0.11.0", "", V100, "warn"),  # dropped between 0.9.0 and 0.21.0: unconfirmed
        ("0.21.0", 'compute_capability = ">=8.0"', T4, "fail"),
        ("0.21.0", 'compute_capability = ">=8.0"', A100, "pass"),
        ("0.21.0", "", "NVIDIA A10G", "warn"),  # CC only from an unconfirmed matrix row
    ],
)
def test_compute_capability(vllm, requires, name, expected):
    prof = profile(cuda="12.9", vllm=vllm, ref="my/vllm:1", requires=requires)
    assert status("compute_capability", host(name=name), prof) == expected


def test_compute_capability_takes_the_lowest_gpu():
    prof = profile(requires='compute_capability = ">=8.0"')
    r = run("compute_capability", host(gpus=[gpu(H100, 0), gpu(T4, 1)]), prof)
    assert (r.status, r.actual) == ("fail", "7.5") and r.fix.endswith(">=8.0")


# ------------------------------------------------------------------------------------------------- features


@pytest.mark.parametrize(
    "cuda, feature, name, expected",
    [
        ("12.9", "fp8", A100, "fail"),
        ("12.9", "fp8", H100, "pass"),
        ("12.9", "fp8", L40S, "pass"),
        ("12.9", "fa3", H100, "pass"),
        ("12.9", "fa3", B200, "fail"),
        ("12.9", "fp4", B200, "pass"),
        ("12.9", "fp4", B300, "fail"),  # CUDA < 13 builds FP4 for 10.0a/10.1a/12.0a/12.1a only
        ("13.0", "fp4", B300, "pass"),  # CUDA >= 13 builds the 10.0f family
        ("13.0", "fp4", H100, "fail"),
    ],
)
def test_features(cuda, feature, name, expected):
    prof = profile(cuda=cuda, vllm="0.20.0", ref="my/vllm:1", requires=f'features = ["{feature}"]')
    assert status("features", host("600.1", name=name), prof) == expected


def test_fp8_on_an_a100_explains_the_weight_only_fallback():
    r = run("features", host(name=A100), profile(requires='features = ["fp8"]'))
    assert "fp8 (FP8 W8A8 compute) needs CC >=8.9; NVIDIA A100-SXM4-80GB is CC 8.0" in r.message
    assert 'drop "fp8" from requires.features' in r.fix and "W8A16" in r.fix


def test_features_do_not_apply_without_features():
    assert run("features", host()) is None


# ------------------------------------------------------------------------------------- gpu_count, gpu_memory


@pytest.mark.parametrize(
    "requires, facts, expected",
    [
        ('gpus = ">=4"', host(n=4), "pass"),
        ('gpus = ">=4"', host(n=2), "fail"),
        ('gpus = ">=4"', host(gpus=[gpu(index=i, lost=(i == 3)) for i in range(4)]), "fail"),  # a lost GPU
        ("", host(gpus=[]), "fail"),  # default >=1
        ('gpus = "==8"', host(n=8), "pass"),
    ],
)
def test_gpu_count(requires, facts, expected):
    assert status("gpu_count", facts, profile(requires=requires)) == expected


@pytest.mark.parametrize(
    "requires, memory, expected",
    [
        ('gpu_memory_mib = ">=40000"', 40000, "pass"),
        ('gpu_memory_mib = ">=40000"', 39999, "fail"),
        ('gpu_memory_mib = ">=40000"', None, "warn"),
        ("", 1000, None),
    ],
)
def test_gpu_memory(requires, memory, expected):
    assert status("gpu_memory", host(memory_total_mib=memory), profile(requires=requires)) == expected


# ------------------------------------------------------------------------------------- gpu_health, mixed_gpus


@pytest.mark.parametrize(
    "gpu_kw, expected, words",
    [
        ({}, "pass", "1 GPUs healthy"),
        ({"lost": True}, "fail", "GPU 0 is lost"),
        ({"ecc_uncorrected_volatile": 3}, "fail", "GPU 0 has 3 volatile uncorrected ECC error(s)"),
        ({"remapped_rows_pending": True}, "fail", "memory row remapping pending"),
        ({"remapped_rows_failed": True}, "fail", "failed to remap a memory row"),
        ({"ecc_uncorrected_volatile": None, "remapped_rows_pending": None}, "pass", ""),  # unknown is not a finding
    ],
)
def test_gpu_health(gpu_kw, expected, words):
    r = run("gpu_health", host(**gpu_kw))
    assert r.status == expected and words in r.message


def test_gpu_health_lists_every_finding_with_its_fix():
    r = run("gpu_health", host(gpus=[gpu(index=0, lost=True), gpu(index=1), gpu(index=2, remapped_rows_pending=True)]))
    assert r.message == "GPU 0 is lost (fallen off the bus); GPU 2 has memory row remapping pending"
    assert "replace it" in r.fix and "to apply the remapping" in r.fix
    assert run("gpu_health", host(gpus=[])) is None


def test_mixed_gpus_warn():
    r = run("mixed_gpus", host(gpus=[gpu(H100, 0), gpu(H100, 1), gpu(A100, 2)]))
    assert r.status == "warn" and r.actual == "2 × H100 80GB HBM3, 1 × A100-SXM4-80GB"
    assert status("mixed_gpus", host(n=8)) == "pass"


# ------------------------------------------------------------------------ docker, container_toolkit, fabric_manager


@pytest.mark.parametrize(
    "docker, expected",
    [
        ("27.5.1", "pass"),
        ("19.03", "pass"),
        ("19.03.0", "pass"),
        ("20.10.24+dfsg1", "pass"),
        ("18.09.9", "fail"),
        (None, "fail"),
        ("weird", "warn"),
    ],
)
def test_docker(docker, expected):
    assert status("docker", host(docker=docker)) == expected


def test_no_container_toolkit_fails_with_the_fix():
    r = run("container_toolkit", host(ctk=None))
    assert r.status == "fail" and "nvidia-ctk runtime configure --runtime=docker" in r.fix
    assert status("container_toolkit", host(ctk="1.17.8")) == "pass"


@pytest.mark.parametrize(
    "driver, fm, n, expected",
    [
        ("570.133.20", "570.133.20", 8, "pass"),
        ("550.120", "550.127.05", 8, "fail"),  # observed in the field: FM refuses to start
        ("530.41.03", "530.30.02", 8, "fail"),
        ("570.133.20", None, 8, "warn"),  # 8 × H100 SXM is an NVSwitch board without Fabric Manager
        ("570.133.20", None, 2, None),  # not an NVSwitch board: FM does not apply
        ("570.133.20", "570.133.20", 2, "pass"),  # installed anyway: must still match
    ],
)
def test_fabric_manager(driver, fm, n, expected):
    assert status("fabric_manager", host(driver, n=n, fm=fm)) == expected


def test_fabric_manager_mismatch_message_and_fix():
    r = run("fabric_manager", host("550.120", n=8, fm="550.127.05"))
    assert r.message.startswith("Fabric Manager 550.127.05 ≠ driver 550.120") and "error 802" in r.message
    assert r.fix.startswith("install Fabric Manager 550.120 (nvidia-fabricmanager-550")


# ----------------------------------------------------------------------------------- hosts and snapshots


def test_a_healthy_host_passes_every_rule_that_applies():
    prof = profile(requires='gpus = ">=8"\ngpu_memory_mib = ">=80000"')
    results = check_host(host("570.133.20", n=8, fm="570.133.20"), prof, MATRIX)
    assert {r.status for r in results} == {"pass"}
    assert [r.rule for r in results] == [r for r in RULES if r != "features"]
    assert all(r.expected and r.actual and r.message for r in results)


def _report(name, facts=None, error=None):
    return HostReport(name=name, address=name, ring=None, facts=facts, error=error)


def test_check_snapshot_verdicts_and_unprobed_hosts():
    good, bad = host(), host("550.54.15")
    down = _report("c", error=HostFailure("unreachable", "timed out"))
    prof = profile()
    report = check_snapshot(Snapshot("t", (_report("a", good), _report("b", bad), down)), prof, MATRIX)
    assert [h.status for h in report.hosts] == ["pass", "fail", "unprobed"] and report.verdict == "fail"
    assert report.hosts[2].results == () and report.unprobed == (report.hosts[2],)
    only_down = check_snapshot(Snapshot("t", (_report("a", good), down)), prof, MATRIX)
    assert only_down.verdict == "unprobed" and not only_down.ok
    assert check_snapshot(Snapshot("t", (_report("a", good),)), prof, MATRIX).ok


def test_shared_evaluation_equals_evaluating_every_host_on_its_own():
    """Hosts that agree on the facts rules read share one evaluation; the answers must not change."""
    variants = [
        host(),
        host("535.230.02", n=8, fm="535.230.02"),
        host(name=RTX4090, driver="535.1"),
        host(gpus=[gpu(H100, 0, temperature_c=80), gpu(A100, 1, lost=True)]),
        host(docker=None, ctk=None),
        host(gpus=[gpu(V100, 0, compute_capability=None)]),
        replace(host(), hostname="x", kernel="6.1"),
    ]
    prof = profile(requires='gpus = ">=2"\ngpu_memory_mib = ">=40000"\nfeatures = ["fp8"]')
    reports = tuple(_report(f"h{i}", facts) for i, facts in enumerate(variants * 3))
    checked = check_snapshot(Snapshot("t", reports), prof, MATRIX)
    assert [h.results for h in checked.hosts] == [check_host(r.facts, prof, MATRIX) for r in reports]
