"""The lab's fake libnvidia-ml.so.1, read through the real pynvml in subprocesses, and the fake NVIDIA tools.

LD_LIBRARY_PATH only works when set before a process starts, so every NVML read runs in a fresh interpreter.
"""

from __future__ import annotations

import ctypes
import json
import os
import pathlib
import re
import shutil
import subprocess
import sys
import time

import pytest

SCRIPTS = pathlib.Path(__file__).resolve().parents[2] / "scripts"
if str(SCRIPTS) not in sys.path:
    sys.path.insert(0, str(SCRIPTS))

from labkit import fakenvml
from labkit.fakenvml import build_library, install_tools, render_config

MIB = 1024 * 1024
SYMBOLS = """nvmlInitWithFlags nvmlInit_v2 nvmlShutdown nvmlErrorString nvmlSystemGetDriverVersion
nvmlSystemGetCudaDriverVersion nvmlSystemGetCudaDriverVersion_v2 nvmlSystemGetNVMLVersion nvmlDeviceGetCount_v2
nvmlDeviceGetHandleByIndex_v2 nvmlDeviceGetHandleByUUID nvmlDeviceGetHandleByPciBusId_v2 nvmlDeviceGetName
nvmlDeviceGetUUID nvmlDeviceGetSerial nvmlDeviceGetPciInfo_v3 nvmlDeviceGetMemoryInfo nvmlDeviceGetMemoryInfo_v2
nvmlDeviceGetCudaComputeCapability nvmlDeviceGetTemperature nvmlDeviceGetTemperatureV nvmlDeviceGetPowerUsage
nvmlDeviceGetPowerManagementLimit nvmlDeviceGetEnforcedPowerLimit nvmlDeviceGetUtilizationRates
nvmlDeviceGetEccMode nvmlDeviceGetTotalEccErrors nvmlDeviceGetRemappedRows nvmlDeviceGetRetiredPages
nvmlDeviceGetRetiredPagesPendingStatus nvmlDeviceGetCurrentClocksEventReasons
nvmlDeviceGetCurrentClocksThrottleReasons nvmlDeviceGetPersistenceMode nvmlDeviceGetMigMode
nvmlDeviceGetVbiosVersion nvmlDeviceGetBoardPartNumber nvmlDeviceGetIndex nvmlDeviceGetMinorNumber""".split()

# Every value of every GPU, through pynvml's public API only.
READ_ALL = """
import json, pynvml as nv
nv.nvmlInit()
doc = {"driver": nv.nvmlSystemGetDriverVersion(), "nvml": nv.nvmlSystemGetNVMLVersion(),
       "cuda": nv.nvmlSystemGetCudaDriverVersion(), "cuda_v2": nv.nvmlSystemGetCudaDriverVersion_v2(),
       "count": nv.nvmlDeviceGetCount(), "gpus": []}
for i in range(doc["count"]):
    h = nv.nvmlDeviceGetHandleByIndex(i)
    pci = nv.nvmlDeviceGetPciInfo(h)
    m1 = nv.nvmlDeviceGetMemoryInfo(h)
    m2 = nv.nvmlDeviceGetMemoryInfo(h, version=nv.nvmlMemory_v2)
    u = nv.nvmlDeviceGetUtilizationRates(h)
    uuid = nv.nvmlDeviceGetUUID(h)
    doc["gpus"].append({
        "index": nv.nvmlDeviceGetIndex(h), "minor": nv.nvmlDeviceGetMinorNumber(h),
        "name": nv.nvmlDeviceGetName(h), "uuid": uuid, "serial": nv.nvmlDeviceGetSerial(h),
        "vbios": nv.nvmlDeviceGetVbiosVersion(h), "part": nv.nvmlDeviceGetBoardPartNumber(h),
        "bus_id": pci.busId, "bus_id_legacy": pci.busIdLegacy, "pci": [pci.domain, pci.bus, pci.device],
        "pci_device_id": pci.pciDeviceId,
        "mem_v1": [m1.total, m1.free, m1.used], "mem_v2": [m2.total, m2.reserved, m2.free, m2.used],
        "cc": nv.nvmlDeviceGetCudaComputeCapability(h),
        "temp": nv.nvmlDeviceGetTemperature(h, nv.NVML_TEMPERATURE_GPU),
        "temp_v": nv.nvmlDeviceGetTemperatureV(h, nv.NVML_TEMPERATURE_GPU),
        "power": nv.nvmlDeviceGetPowerUsage(h), "power_limit": nv.nvmlDeviceGetPowerManagementLimit(h),
        "enforced_limit": nv.nvmlDeviceGetEnforcedPowerLimit(h), "util": [u.gpu, u.memory],
        "ecc_mode": nv.nvmlDeviceGetEccMode(h),
        "ecc": [nv.nvmlDeviceGetTotalEccErrors(h, t, c) for t in (0, 1) for c in (0, 1)],
        "rows": nv.nvmlDeviceGetRemappedRows(h),
        "retired_sbe": nv.nvmlDeviceGetRetiredPages(h, nv.NVML_PAGE_RETIREMENT_CAUSE_MULTIPLE_SINGLE_BIT_ECC_ERRORS),
        "retired_dbe": nv.nvmlDeviceGetRetiredPages(h, nv.NVML_PAGE_RETIREMENT_CAUSE_DOUBLE_BIT_ECC_ERROR),
        "retired_pending": nv.nvmlDeviceGetRetiredPagesPendingStatus(h),
        "event_reasons": nv.nvmlDeviceGetCurrentClocksEventReasons(h),
        "throttle_reasons": nv.nvmlDeviceGetCurrentClocksThrottleReasons(h),
        "persistence": nv.nvmlDeviceGetPersistenceMode(h), "mig": nv.nvmlDeviceGetMigMode(h),
        "by_uuid": nv.nvmlDeviceGetIndex(nv.nvmlDeviceGetHandleByUUID(uuid)),
        "by_bus": nv.nvmlDeviceGetIndex(nv.nvmlDeviceGetHandleByPciBusId(pci.busId)),
        "by_legacy_bus": nv.nvmlDeviceGetIndex(nv.nvmlDeviceGetHandleByPciBusId(pci.busIdLegacy.lower())),
    })
nv.nvmlShutdown()
print(json.dumps(doc))
"""

# Runs `expr` and prints the NVMLError class it raised (or "ok").
RAISES = """
import pynvml as nv
def outcome(fn):
    try:
        fn()
        return "ok"
    except nv.NVMLError as e:
        return "%s/%d" % (type(e).__name__, e.value)
"""


@pytest.fixture(scope="module")
def libdir(tmp_path_factory) -> pathlib.Path:
    return build_library(tmp_path_factory.mktemp("nvml-lib")).parent


def run_python(code: str, config: str | None, tmp_path: pathlib.Path, libdir: pathlib.Path | None):
    """Run code in a fresh interpreter with the fake library (if libdir) and config (if given)."""
    env = {k: v for k, v in os.environ.items() if k not in ("LD_LIBRARY_PATH", "FAKE_NVML_CONFIG")}
    if libdir is not None:
        env["LD_LIBRARY_PATH"] = str(libdir)
    if config is not None:
        path = tmp_path / "nvml.conf"
        path.write_text(config)
        env["FAKE_NVML_CONFIG"] = str(path)
    return subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=60)


def read_all(config: str, tmp_path: pathlib.Path, libdir: pathlib.Path) -> dict:
    run = run_python(READ_ALL, config, tmp_path, libdir)
    assert run.returncode == 0, run.stderr
    return json.loads(run.stdout)


def outcomes(body: str, config: str | None, tmp_path, libdir) -> list[str]:
    run = run_python(RAISES + body, config, tmp_path, libdir)
    assert run.returncode == 0, run.stderr
    return run.stdout.split()


def config_values(text: str) -> dict[str, str]:
    return dict(line.split("=", 1) for line in text.splitlines() if line and not line.startswith("#"))


# ---- building ---------------------------------------------------------------------------------------------


def test_library_exports_every_symbol_pynvml_calls_with_the_real_soname(libdir):
    lib = ctypes.CDLL(str(libdir / "libnvidia-ml.so.1"))
    assert [s for s in SYMBOLS if not hasattr(lib, s)] == []
    dynamic = subprocess.run(
        ["readelf", "-d", str(libdir / "libnvidia-ml.so.1")], capture_output=True, text=True, check=True
    ).stdout
    assert "Library soname: [libnvidia-ml.so.1]" in dynamic


def test_build_is_skipped_while_the_library_is_newer_than_the_source(tmp_path, monkeypatch):
    source = tmp_path / "fake_nvml.c"
    shutil.copy(fakenvml.SOURCE, source)
    monkeypatch.setattr(fakenvml, "SOURCE", source)
    lib = build_library(tmp_path / "out")
    built = lib.stat().st_mtime_ns
    assert build_library(tmp_path / "out") == lib and lib.stat().st_mtime_ns == built
    future = time.time() + 5
    os.utime(source, (future, future))
    build_library(tmp_path / "out")
    assert lib.stat().st_mtime_ns != built
    assert [p.name for p in (tmp_path / "out").iterdir()] == ["libnvidia-ml.so.1"]


def test_build_failure_raises_with_gcc_stderr(tmp_path, monkeypatch):
    broken = tmp_path / "broken.c"
    broken.write_text("int main(void) { return undeclared_thing; }\n")
    monkeypatch.setattr(fakenvml, "SOURCE", broken)
    with pytest.raises(RuntimeError, match="undeclared_thing"):
        build_library(tmp_path / "out")
    assert list((tmp_path / "out").iterdir()) == []


# ---- a healthy host ---------------------------------------------------------------------------------------

HEALTHY = {
    "name": "gpu-01",
    "gpu": "NVIDIA H100 80GB HBM3",
    "gpu_count": 2,
    "compute_capability": "9.0",
    "memory_mib": 81559,
    "driver": "570.133.20",
    "cuda": "12.8",
    "ecc_uncorrected_volatile": 3,
    "remapped_rows_pending": True,
    "temperature_c": 41,
    "power_draw_w": 123.4,
    "power_limit_w": 650,
    "utilization_pct": 57,
    "memory_used_mib": 1024,
    "persistence_mode": False,
    "mig_mode": True,
    "throttle_reasons": 0x5,
    "ring": "canary",
    "python3": True,
}


def test_healthy_two_gpu_host_reads_every_value_through_real_pynvml(tmp_path, libdir):
    text = render_config(HEALTHY)
    doc = read_all(text, tmp_path, libdir)
    assert (doc["driver"], doc["nvml"], doc["cuda"], doc["cuda_v2"], doc["count"]) == (
        "570.133.20",
        "12.570.133.20",
        12080,
        12080,
        2,
    )
    cfg = config_values(text)
    for i, gpu in enumerate(doc["gpus"]):
        assert (gpu["index"], gpu["minor"], gpu["by_uuid"], gpu["by_bus"], gpu["by_legacy_bus"]) == (i,) * 5
        assert gpu["name"] == "NVIDIA H100 80GB HBM3"
        assert gpu["uuid"] == cfg[f"gpu.{i}.uuid"]
        assert re.fullmatch(r"GPU-[0-9a-f]{8}(-[0-9a-f]{4}){3}-[0-9a-f]{12}", gpu["uuid"])
        assert re.fullmatch(r"\d{13}", gpu["serial"]) and gpu["vbios"] and gpu["part"]
        assert gpu["pci_device_id"] == 0x233010DE
        assert gpu["mem_v1"] == [81559 * MIB, (81559 - 1024) * MIB, 1024 * MIB]
        assert gpu["mem_v2"] == [81559 * MIB, 0, (81559 - 1024) * MIB, 1024 * MIB]
        assert (gpu["cc"], gpu["temp"], gpu["temp_v"]) == ([9, 0], 41, 41)
        assert (gpu["power"], gpu["power_limit"], gpu["enforced_limit"]) == (123400, 650000, 650000)
        assert gpu["util"] == [57, 0]
        assert gpu["ecc_mode"] == [1, 1]
        assert gpu["ecc"] == [0, 0, 3, 3]  # corrected volatile/aggregate, uncorrected volatile/aggregate
        assert gpu["rows"] == [0, 0, 1, 0]
        assert (gpu["retired_sbe"], gpu["retired_dbe"], gpu["retired_pending"]) == ([], [], 0)
        assert gpu["event_reasons"] == gpu["throttle_reasons"] == 0x5
        assert (gpu["persistence"], gpu["mig"]) == (0, [1, 1])
    assert [g["bus_id"] for g in doc["gpus"]] == ["00000000:18:00.0", "00000000:2A:00.0"]
    assert [g["bus_id_legacy"] for g in doc["gpus"]] == ["0000:18:00.0", "0000:2A:00.0"]
    assert [g["pci"] for g in doc["gpus"]] == [[0, 0x18, 0], [0, 0x2A, 0]]
    assert doc["gpus"][0]["uuid"] != doc["gpus"][1]["uuid"]


def test_minimal_host_gets_the_documented_defaults(tmp_path, libdir):
    doc = read_all(render_config({"name": "bare"}), tmp_path, libdir)
    assert (doc["driver"], doc["cuda"], doc["count"]) == ("570.133.20", 12080, 1)
    gpu = doc["gpus"][0]
    assert (gpu["name"], gpu["cc"], gpu["temp"], gpu["power"], gpu["power_limit"]) == (
        "NVIDIA H100 80GB HBM3",
        [9, 0],
        35,
        72500,
        700000,
    )
    assert gpu["mem_v1"] == [81559 * MIB, 81559 * MIB, 0]
    assert (gpu["util"], gpu["ecc"], gpu["rows"], gpu["event_reasons"]) == ([0, 0], [0, 0, 0, 0], [0, 0, 0, 0], 0)
    assert (gpu["persistence"], gpu["mig"]) == (1, [0, 0])


def test_retired_pages_use_the_null_array_count_convention(tmp_path, libdir):
    extra = "gpu.0.retired_pages_dbe=0x1000,0x2000,12288\ngpu.0.retired_pages_sbe=0x10\ngpu.0.retired_pages_pending=1\n"
    gpu = read_all(render_config({"name": "pages"}) + extra, tmp_path, libdir)["gpus"][0]
    assert (gpu["retired_dbe"], gpu["retired_sbe"], gpu["retired_pending"]) == ([4096, 8192, 12288], [16], 1)
    body = """
h = (nv.nvmlInit(), nv.nvmlDeviceGetHandleByIndex(0))[1]
print(outcome(lambda: nv.nvmlDeviceGetRetiredPages(h, 1)), outcome(lambda: nv.nvmlDeviceGetRetiredPagesPendingStatus(h)))
"""
    off = render_config({"name": "pages"}) + "gpu.0.retired_pages_supported=0\n"
    assert outcomes(body, off, tmp_path, libdir) == ["NVMLError_NotSupported/3"] * 2


# ---- failure modes ----------------------------------------------------------------------------------------


def test_driver_not_loaded_fails_init_with_code_9(tmp_path, libdir):
    config = render_config({"name": "nodrv", "nvml": "driver-not-loaded"})
    assert outcomes("print(outcome(nv.nvmlInit))", config, tmp_path, libdir) == ["NVMLError_DriverNotLoaded/9"]


def test_a_driver_installed_without_a_reboot_fails_init_with_code_18(tmp_path, libdir):
    config = render_config({"name": "pending", "nvml": "version-mismatch"})
    assert outcomes("print(outcome(nv.nvmlInit))", config, tmp_path, libdir) == ["NVMLError_LibRmVersionMismatch/18"]


def test_lost_gpu_answers_handle_queries_only_and_other_gpus_stay_fine(tmp_path, libdir):
    config = render_config({"name": "lost", "gpu_count": 2, "nvml": "gpu-lost:1"})
    body = """
nv.nvmlInit()
h0, h1 = nv.nvmlDeviceGetHandleByIndex(0), nv.nvmlDeviceGetHandleByIndex(1)
print(nv.nvmlDeviceGetMemoryInfo(h0).total, nv.nvmlDeviceGetName(h0).replace(" ", "_"), nv.nvmlDeviceGetIndex(h1))
for fn in (nv.nvmlDeviceGetMemoryInfo, nv.nvmlDeviceGetName, nv.nvmlDeviceGetUUID, nv.nvmlDeviceGetPciInfo,
           nv.nvmlDeviceGetTemperatureV, nv.nvmlDeviceGetEccMode, nv.nvmlDeviceGetRemappedRows):
    args = (h1, 0) if fn is nv.nvmlDeviceGetTemperatureV else (h1,)
    print(outcome(lambda: fn(*args)))
"""
    out = outcomes(body, config, tmp_path, libdir)
    assert out[:3] == [str(81559 * MIB), "NVIDIA_H100_80GB_HBM3", "1"]
    assert out[3:] == ["NVMLError_GpuIsLost/15"] * 7


def test_no_library_on_the_path_is_library_not_found(tmp_path):
    assert outcomes("print(outcome(nv.nvmlInit))", None, tmp_path, None) == ["NVMLError_LibraryNotFound/12"]


@pytest.mark.parametrize(
    "config, message",
    [
        (None, "FAKE_NVML_CONFIG"),
        ("nvml=ok\ngpu_count=1\nbogus_key=1\n", "nvml.conf:3: unknown key"),
        (
            "gpu_count=1\ngpu.0.name=X\ngpu.0.uuid=GPU-1\ngpu.0.pci_bus_id=0:1:0.0\ngpu.0.temperature_c=hot\n",
            "nvml.conf:5: expected an unsigned",
        ),
        ("gpu_count=2\ngpu.0.name=X\ngpu.0.uuid=GPU-1\ngpu.0.pci_bus_id=0:1:0.0\n", "needs gpu.N.name"),
        ("gpu.99.name=X\n", "gpu index out of range"),
        ("nvml=maybe\n", "expected ok, driver-not-loaded or version-mismatch"),
    ],
)
def test_broken_config_fails_init_with_unknown_error_and_says_why(tmp_path, libdir, config, message):
    run = run_python(RAISES + "print(outcome(nv.nvmlInit))", config, tmp_path, libdir)
    assert run.stdout.split() == ["NVMLError_Unknown/999"]
    assert message in run.stderr


def test_unreadable_config_file_is_unknown_error(tmp_path, libdir):
    body = "import os\nos.remove(os.environ['FAKE_NVML_CONFIG'])\nprint(outcome(nv.nvmlInit))"
    assert outcomes(body, "nvml=ok\n", tmp_path, libdir) == ["NVMLError_Unknown/999"]


def test_calls_after_the_last_shutdown_are_uninitialized(tmp_path, libdir):
    body = """
nv.nvmlInit(); nv.nvmlInit(); nv.nvmlShutdown()
print(outcome(nv.nvmlDeviceGetCount))
nv.nvmlShutdown()
print(outcome(nv.nvmlDeviceGetCount), outcome(nv.nvmlSystemGetDriverVersion), outcome(nv.nvmlShutdown))
"""
    assert outcomes(body, render_config({"name": "rc"}), tmp_path, libdir) == [
        "ok",
        "NVMLError_Uninitialized/1",
        "NVMLError_Uninitialized/1",
        "NVMLError_Uninitialized/1",
    ]


def test_c_level_argument_checks(tmp_path, libdir):
    body = """
import ctypes
nv.nvmlInit()
lib, h = nv.nvmlLib, nv.nvmlDeviceGetHandleByIndex(0)
small, big = ctypes.create_string_buffer(4), ctypes.create_string_buffer(96)
out = ctypes.c_void_p()
print(lib.nvmlDeviceGetName(h, small, 4), lib.nvmlDeviceGetName(h, big, 96), big.value.decode()[:6])
print(lib.nvmlDeviceGetHandleByIndex_v2(1, ctypes.byref(out)), lib.nvmlDeviceGetHandleByUUID(b"GPU-nope", ctypes.byref(out)))
print(lib.nvmlDeviceGetName(ctypes.c_void_p(16), big, 96), lib.nvmlDeviceGetTemperature(h, 1, ctypes.byref(ctypes.c_uint())))
bad = nv.c_nvmlMemory_v2_t(); bad.version = 1
print(lib.nvmlDeviceGetMemoryInfo_v2(h, ctypes.byref(bad)), outcome(lambda: nv.nvmlDeviceGetMemoryInfo(h, version=7)))
lib.nvmlErrorString.restype = ctypes.c_char_p
print(lib.nvmlErrorString(15).decode().replace(" ", "_"), lib.nvmlErrorString(4242).decode().replace(" ", "_"))
"""
    assert outcomes(body, render_config({"name": "c"}), tmp_path, libdir) == [
        "7",
        "0",
        "NVIDIA",
        "2",
        "6",
        "2",
        "2",
        "25",
        "NVMLError_ArgumentVersionMismatch/25",
        "GPU_is_lost",
        "Unknown_Error",
    ]


def test_concurrent_readers_see_consistent_values(tmp_path, libdir):
    body = """
import threading
nv.nvmlInit()
seen, handles = set(), [nv.nvmlDeviceGetHandleByIndex(i) for i in range(4)]
def work():
    for _ in range(300):
        for h in handles:
            seen.add((nv.nvmlDeviceGetUUID(h), nv.nvmlDeviceGetMemoryInfo(h).total))
threads = [threading.Thread(target=work) for _ in range(8)]
[t.start() for t in threads]; [t.join() for t in threads]
print(len(seen), len({u for u, _ in seen}), len({t for _, t in seen}))
"""
    assert outcomes(body, render_config({"name": "mt", "gpu_count": 4}), tmp_path, libdir) == ["4", "4", "1"]


# ---- memory safety: the library and a C driver under AddressSanitizer + UBSan ------------------------------

HARNESS = r"""
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
typedef void *dev;
int nvmlInitWithFlags(unsigned); int nvmlShutdown(void); const char *nvmlErrorString(int);
int nvmlDeviceGetCount_v2(unsigned *); int nvmlDeviceGetHandleByIndex_v2(unsigned, dev *);
int nvmlDeviceGetName(dev, char *, unsigned); int nvmlDeviceGetUUID(dev, char *, unsigned);
int nvmlDeviceGetHandleByUUID(const char *, dev *); int nvmlDeviceGetHandleByPciBusId_v2(const char *, dev *);
int nvmlDeviceGetPciInfo_v3(dev, void *); int nvmlSystemGetDriverVersion(char *, unsigned);
int nvmlDeviceGetRetiredPages(dev, unsigned, unsigned *, unsigned long long *);
int nvmlDeviceGetMemoryInfo(dev, void *); int nvmlDeviceGetRemappedRows(dev, unsigned *, unsigned *, unsigned *, unsigned *);
#define CHECK(e, want) do { int r_ = (e); if (r_ != (want)) { fprintf(stderr, "line %d: %s = %d\n", __LINE__, #e, r_); return 1; } } while (0)
int main(int argc, char **argv) {
    char buf[96], tiny[2], pci[68] = {0}; /* sizeof(nvmlPciInfo_t) */ unsigned n = 0, cnt, a, b, c, d; unsigned long long pages[64], mem[3]; dev h, x;
    for (int round = 0; round < 20; round++) {
        setenv("FAKE_NVML_CONFIG", argv[1], 1);
        CHECK(nvmlInitWithFlags(0), 0); CHECK(nvmlDeviceGetCount_v2(&n), 0); CHECK(n, 2);
        CHECK(nvmlSystemGetDriverVersion(tiny, sizeof tiny), 7); CHECK(nvmlSystemGetDriverVersion(NULL, 80), 2);
        for (unsigned i = 0; i < n; i++) {
            CHECK(nvmlDeviceGetHandleByIndex_v2(i, &h), 0); CHECK(nvmlDeviceGetUUID(h, buf, sizeof buf), 0);
            CHECK(nvmlDeviceGetHandleByUUID(buf, &x), 0); CHECK(x == h, 1);
            CHECK(nvmlDeviceGetName(h, tiny, sizeof tiny), 7); CHECK(nvmlDeviceGetPciInfo_v3(h, pci), 0);
            CHECK(nvmlDeviceGetHandleByPciBusId_v2(pci + 36 /* busId */, &x), 0); CHECK(x == h, 1);
            cnt = 0; CHECK(nvmlDeviceGetRetiredPages(h, 1, &cnt, NULL), 7); CHECK(cnt, 64);
            CHECK(nvmlDeviceGetRetiredPages(h, 1, &cnt, pages), 0); CHECK(pages[63] == 64, 1);
            CHECK(nvmlDeviceGetRetiredPages(h, 2, &cnt, pages), 2); CHECK(nvmlDeviceGetMemoryInfo(h, mem), 0);
            CHECK(nvmlDeviceGetRemappedRows(h, &a, &b, &c, NULL), 2); CHECK(nvmlDeviceGetRemappedRows(h, &a, &b, &c, &d), 0);
        }
        CHECK(nvmlDeviceGetHandleByIndex_v2(2, &h), 2); CHECK(nvmlDeviceGetHandleByPciBusId_v2("zz", &h), 2);
        CHECK(nvmlDeviceGetName((dev)((char *)x + 1), buf, sizeof buf), 2);
        CHECK(nvmlShutdown(), 0); CHECK(nvmlDeviceGetName(x, buf, sizeof buf), 1);
    }
    for (int i = 2; i < argc; i++) { setenv("FAKE_NVML_CONFIG", argv[i], 1); CHECK(nvmlInitWithFlags(0), 999); }
    CHECK(strcmp(nvmlErrorString(-5), "Unknown Error"), 0);
    puts("harness ok");
    return 0;
}
"""


def test_library_is_clean_under_address_and_undefined_sanitizers(tmp_path):
    flags = ["-g", "-O1", "-fsanitize=address,undefined", "-fno-sanitize-recover=all", "-Wall", "-Werror"]
    lib = tmp_path / "libnvidia-ml.so.1"
    try:
        subprocess.run(["gcc", *flags, "-shared", "-fPIC", "-pthread", "-o", lib, fakenvml.SOURCE], check=True)
        (tmp_path / "harness.c").write_text(HARNESS)
        subprocess.run(
            ["gcc", *flags, "-o", tmp_path / "harness", tmp_path / "harness.c", lib, f"-Wl,-rpath,{tmp_path}"],
            check=True,
        )
    except subprocess.CalledProcessError:
        pytest.skip("gcc cannot build with -fsanitize=address,undefined here")
    pages = ",".join(str(i) for i in range(1, 65))
    good = tmp_path / "good.conf"
    good.write_text(
        render_config({"name": "asan", "gpu_count": 2})
        + f"gpu.0.retired_pages_dbe={pages}\ngpu.1.retired_pages_dbe={pages}\n"
    )
    bad = {
        "long-line": "nvml=ok\n" + "x" * 5000 + "\n",
        "long-value": "driver_version=" + "9" * 200 + "\n",
        "pages": f"gpu.0.retired_pages_dbe={pages},65\n",
        "no-eq": "nvml\n",
        "gpu-key": "gpu.x.name=1\n",
        "overflow": "gpu_count=99999999999999999999\n",
        "negative": "gpu_count=-1\n",
        "missing": None,
    }
    for name, text in bad.items():
        if text is not None:
            (tmp_path / f"{name}.conf").write_text(text)
    run = subprocess.run(
        [tmp_path / "harness", good, *(tmp_path / f"{n}.conf" for n in bad)],
        capture_output=True,
        text=True,
        timeout=120,
        env={**os.environ, "ASAN_OPTIONS": "detect_leaks=1:abort_on_error=0"},
    )
    assert run.returncode == 0 and run.stdout.strip() == "harness ok", run.stderr
    assert "runtime error" not in run.stderr and "AddressSanitizer" not in run.stderr


# ---- render_config ----------------------------------------------------------------------------------------


def test_render_config_is_deterministic_per_host_and_index():
    assert render_config(HEALTHY) == render_config(dict(HEALTHY))
    a, b = config_values(render_config(HEALTHY)), config_values(render_config({**HEALTHY, "name": "gpu-02"}))
    assert a["gpu.0.uuid"] != a["gpu.1.uuid"] and a["gpu.0.uuid"] != b["gpu.0.uuid"]
    assert a["gpu.1.pci_bus_id"] == b["gpu.1.pci_bus_id"] == "00000000:2A:00.0"
    assert (a["gpu.0.lost"], a["nvml"]) == ("0", "ok")
    lost = config_values(render_config({**HEALTHY, "nvml": "gpu-lost:1"}))
    assert (lost["gpu.0.lost"], lost["gpu.1.lost"], lost["nvml"]) == ("0", "1", "ok")


@pytest.mark.parametrize(
    "host, problem",
    [
        ({}, "name"),
        ({"name": "h", "gpu_count": 17}, "gpu_count"),
        ({"name": "h", "gpu_count": True}, "gpu_count"),
        ({"name": "h", "nvml": "gpu-lost:2", "gpu_count": 2}, "GPU 2 does not exist"),
        ({"name": "h", "nvml": "broken"}, "nvml"),
        ({"name": "h", "cuda": "twelve"}, "cuda"),
        ({"name": "h", "gpu": "A\nB"}, "gpu"),
        ({"name": "h", "persistence_mode": "yes"}, "persistence_mode"),
        ({"name": "h", "memory_used_mib": 90000}, "memory_used_mib"),
        ({"name": "h", "nvidia_container_toolkit": "1.17.8; rm -rf /"}, "nvidia_container_toolkit"),
    ],
)
def test_render_config_rejects_bad_specs(host, problem):
    with pytest.raises(ValueError, match=re.escape(problem)):
        render_config(host)


# ---- fake host tools --------------------------------------------------------------------------------------


def run_tool(bin_dir: pathlib.Path, argv: list[str], config: pathlib.Path | None = None, stdin: str = ""):
    env = {"PATH": f"{bin_dir}:/usr/bin:/bin"}
    if config is not None:
        env["FAKE_NVML_CONFIG"] = str(config)
    return subprocess.run(argv, env=env, input=stdin, capture_output=True, text=True, timeout=30)


def test_installed_tools_print_what_the_real_ones_print(tmp_path):
    from fleetctl.core.facts import parse_ctk_version, parse_fabric_manager_version

    host = {"name": "gpu-01", "nvidia_container_toolkit": "1.17.8", "fabric_manager": "570.133.20"}
    install_tools(tmp_path, host)
    ctk = run_tool(tmp_path, ["nvidia-ctk", "--version"])
    assert ctk.returncode == 0
    assert re.fullmatch(r"NVIDIA Container Toolkit CLI version 1\.17\.8\ncommit: [0-9a-f]{40}\n", ctk.stdout)
    fm = run_tool(tmp_path, ["nv-fabricmanager", "--version"])
    assert (fm.returncode, fm.stdout) == (0, "Fabric Manager version is : 570.133.20\n")
    assert parse_ctk_version(ctk.stdout) == "1.17.8" and parse_fabric_manager_version(fm.stdout) == "570.133.20"
    hook = run_tool(tmp_path, ["nvidia-container-runtime-hook", "prestart"], stdin='{"pid": 1}')
    assert (hook.returncode, hook.stdout) == (0, "")
    assert all(os.access(tmp_path / n, os.X_OK) for n in ("nvidia-ctk", "nv-fabricmanager", "nvidia-smi"))


def test_tools_follow_the_spec_when_reinstalled(tmp_path):
    install_tools(tmp_path, {"name": "h", "nvidia_container_toolkit": "1.17.8", "fabric_manager": "570.133.20"})
    install_tools(tmp_path, {"name": "h"})
    assert sorted(p.name for p in tmp_path.iterdir()) == ["nvidia-smi"]
    install_tools(tmp_path, {"name": "h", "nvml": "library-missing"})
    assert list(tmp_path.iterdir()) == []


def smi(tmp_path: pathlib.Path, host: dict, *args: str):
    bin_dir, config = tmp_path / "bin", tmp_path / "nvml.conf"
    install_tools(bin_dir, host)
    config.write_text(render_config(host))
    return run_tool(bin_dir, ["nvidia-smi", *args], config)


def test_nvidia_smi_reads_the_same_config(tmp_path):
    cfg = config_values(render_config(HEALTHY))
    listing = smi(tmp_path, HEALTHY, "-L")
    assert listing.stdout.splitlines() == [
        f"GPU {i}: NVIDIA H100 80GB HBM3 (UUID: {cfg[f'gpu.{i}.uuid']})" for i in range(2)
    ]
    query = smi(
        tmp_path,
        HEALTHY,
        "--query-gpu=index,name,memory.total,memory.used,power.draw,utilization.gpu,"
        "compute_cap,persistence_mode,mig.mode.current",
        "--format=csv",
    )
    assert query.stdout.splitlines() == [
        "index, name, memory.total [MiB], memory.used [MiB], power.draw [W], utilization.gpu [%], compute_cap, "
        "persistence_mode, mig.mode.current",
        "0, NVIDIA H100 80GB HBM3, 81559 MiB, 1024 MiB, 123.40 W, 57 %, 9.0, Disabled, Enabled",
        "1, NVIDIA H100 80GB HBM3, 81559 MiB, 1024 MiB, 123.40 W, 57 %, 9.0, Disabled, Enabled",
    ]
    bare = smi(tmp_path, HEALTHY, "--query-gpu=pci.bus_id,memory.total", "--format=csv,noheader,nounits")
    assert bare.stdout.splitlines() == ["00000000:18:00.0, 81559", "00000000:2A:00.0, 81559"]
    summary = smi(tmp_path, HEALTHY)
    assert summary.returncode == 0 and "Driver Version: 570.133.20" in summary.stdout
    assert "CUDA Version: 12.8" in summary.stdout and len(summary.stdout.splitlines()) == 3


def test_nvidia_smi_failure_modes(tmp_path):
    down = smi(tmp_path, {"name": "h", "nvml": "driver-not-loaded"})
    assert down.returncode == 9 and "couldn't communicate with the NVIDIA driver" in down.stdout
    pending = smi(tmp_path, {"name": "h", "nvml": "version-mismatch", "driver": "575.57.08", "cuda": "12.9"})
    assert pending.returncode == 18
    assert (
        pending.stdout == "Failed to initialize NVML: Driver/library version mismatch\nNVML library version: 575.57\n"
    )
    lost = smi(tmp_path, {"name": "h", "gpu_count": 2, "nvml": "gpu-lost:1"})
    assert lost.returncode == 15
    assert (
        lost.stdout == "Unable to determine the device handle for GPU 0000:2A:00.0: GPU is lost.  "
        "Reboot the system to recover this GPU\n"
    )
    bad_field = smi(tmp_path, {"name": "h"}, "--query-gpu=nope", "--format=csv")
    assert (bad_field.returncode, bad_field.stdout) == (2, 'Field "nope" is not a valid field to query.\n')
    no_config = run_tool(tmp_path / "bin", ["nvidia-smi"])
    assert no_config.returncode == 255 and "Failed to initialize NVML" in no_config.stdout
