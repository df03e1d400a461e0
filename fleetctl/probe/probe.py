# fleetctl remote probe (schema fleetctl.probe/v1).
#
# Fed to the host's `python3 -` on stdin; nothing is installed or left behind. Python 3.6+, stdlib only.
# It uses the host's pynvml if importable, else the copy of nvidia-ml-py's pynvml carried in PYNVML_BUNDLE
# (set by the payload builder in front of this text). It prints one JSON line. Host tool outputs are returned
# raw: fleetctl parses them on its side, with tested pure parsers.
import json
import platform
import socket
import subprocess
import sys

SCHEMA = "fleetctl.probe/v1"
TOOL_TIMEOUT_S = 15
# the loaded kernel module's version (first line: "NVRM version: NVIDIA UNIX ... Kernel Module  570.133.20 ...");
# read, never executed; returned raw, fleetctl parses it
PROC_NVIDIA_VERSION = "/proc/driver/nvidia/version"
TOOLS = {
    "docker": ["docker", "version", "--format", "{{.Server.Version}}"],
    "nvidia_ctk": ["nvidia-ctk", "--version"],
    "nvidia_container_cli": ["nvidia-container-cli", "--version"],
    "fabric_manager": ["nv-fabricmanager", "--version"],
}
CLOCK_REASONS = [
    (0x1, "gpu_idle"),
    (0x2, "applications_clocks_setting"),
    (0x4, "sw_power_cap"),
    (0x8, "hw_slowdown"),
    (0x10, "sync_boost"),
    (0x20, "sw_thermal_slowdown"),
    (0x40, "hw_thermal_slowdown"),
    (0x80, "hw_power_brake_slowdown"),
    (0x100, "display_clock_setting"),
]

# set by the payload's first line, absent when the script runs alone (a type comment: Python 3.6 runs this)
PYNVML_BUNDLE = globals().get("PYNVML_BUNDLE")  # type: str | None


def start_tools():
    procs = {}
    for name, argv in TOOLS.items():
        try:
            procs[name] = subprocess.Popen(
                argv, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE
            )
        except OSError:
            procs[name] = None
    return procs


def finish_tools(procs):
    out = {}
    for name, proc in procs.items():
        if proc is None:
            out[name] = None
            continue
        try:
            stdout, stderr = proc.communicate(timeout=TOOL_TIMEOUT_S)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.communicate()
            out[name] = {"rc": None, "out": "", "err": "timed out"}
            continue
        out[name] = {
            "rc": proc.returncode,
            "out": stdout.decode("utf-8", "replace")[:4000],
            "err": stderr.decode("utf-8", "replace")[:1000],
        }
    return out


def os_name():
    try:
        with open("/etc/os-release") as f:
            for line in f:
                if line.startswith("PRETTY_NAME="):
                    return line.split("=", 1)[1].strip().strip('"')
    except OSError:
        pass
    return platform.system() or None


def load_pynvml():
    try:
        import pynvml

        return pynvml
    except ImportError:
        if PYNVML_BUNDLE is None:
            raise
    import base64
    import types
    import zlib

    src = zlib.decompress(base64.b64decode(PYNVML_BUNDLE)).decode("utf-8")
    mod = types.ModuleType("pynvml")
    sys.modules["pynvml"] = mod  # pynvml looks itself up in sys.modules while it loads
    exec(compile(src, "pynvml.py", "exec"), mod.__dict__)
    return mod


class Lost(Exception):
    pass


def call(nv, fn, *args):
    """fn(*args), None when the GPU or driver does not support it; Lost when NVML says the GPU is lost."""
    try:
        return fn(*args)
    except nv.NVMLError as e:
        if e.value == nv.NVML_ERROR_GPU_IS_LOST:
            raise Lost()
        return None


def gpu_facts(nv, index):
    gpu = {"index": index, "lost": False}
    try:
        h = nv.nvmlDeviceGetHandleByIndex(index)
        read_gpu(nv, h, gpu)
    except Lost:
        gpu["lost"] = True
    except nv.NVMLError as e:
        if e.value != nv.NVML_ERROR_GPU_IS_LOST:
            raise
        gpu["lost"] = True
    return gpu


def read_gpu(nv, h, gpu):
    gpu["name"] = call(nv, nv.nvmlDeviceGetName, h)
    gpu["uuid"] = call(nv, nv.nvmlDeviceGetUUID, h)
    pci = call(nv, nv.nvmlDeviceGetPciInfo, h)
    gpu["pci_bus_id"] = pci.busId if pci is not None else None
    mem = call(nv, nv.nvmlDeviceGetMemoryInfo, h)
    gpu["memory_total_mib"] = mem.total // (1024 * 1024) if mem is not None else None
    gpu["memory_used_mib"] = mem.used // (1024 * 1024) if mem is not None else None
    cc = call(nv, nv.nvmlDeviceGetCudaComputeCapability, h)
    gpu["compute_capability"] = "%d.%d" % tuple(cc) if cc is not None else None
    gpu["temperature_c"] = call(nv, nv.nvmlDeviceGetTemperature, h, nv.NVML_TEMPERATURE_GPU)
    power = call(nv, nv.nvmlDeviceGetPowerUsage, h)
    gpu["power_draw_w"] = power / 1000.0 if power is not None else None
    limit = call(nv, nv.nvmlDeviceGetEnforcedPowerLimit, h)
    gpu["power_limit_w"] = limit / 1000.0 if limit is not None else None
    util = call(nv, nv.nvmlDeviceGetUtilizationRates, h)
    gpu["utilization_pct"] = util.gpu if util is not None else None
    ecc = call(nv, nv.nvmlDeviceGetEccMode, h)
    gpu["ecc_mode"] = bool(ecc[0]) if ecc is not None else None
    gpu["ecc_uncorrected_volatile"] = (
        call(nv, nv.nvmlDeviceGetTotalEccErrors, h, nv.NVML_MEMORY_ERROR_TYPE_UNCORRECTED, nv.NVML_VOLATILE_ECC)
        if gpu["ecc_mode"]
        else None
    )
    rows = call(nv, nv.nvmlDeviceGetRemappedRows, h)
    gpu["remapped_rows_pending"] = bool(rows[2]) if rows is not None else None
    gpu["remapped_rows_failed"] = bool(rows[3]) if rows is not None else None
    gpu["throttle_reasons"] = clock_reasons(nv, h)
    persistence = call(nv, nv.nvmlDeviceGetPersistenceMode, h)
    gpu["persistence_mode"] = bool(persistence) if persistence is not None else None
    mig = call(nv, nv.nvmlDeviceGetMigMode, h)
    gpu["mig_mode"] = bool(mig[0]) if mig is not None else None


def clock_reasons(nv, h):
    fn = getattr(nv, "nvmlDeviceGetCurrentClocksEventReasons", None)
    mask = call(nv, fn, h) if fn is not None else None
    if mask is None:
        mask = call(nv, nv.nvmlDeviceGetCurrentClocksThrottleReasons, h)
    if mask is None:
        return None
    return [name for bit, name in CLOCK_REASONS if mask & bit]


def nvml_facts(facts):
    """Fill NVML facts; return (error_kind, message) or None."""
    try:
        nv = load_pynvml()
    except ImportError:
        return "probe_failed", "no pynvml on the host and none carried by the payload"
    try:
        nv.nvmlInit()
    except nv.NVMLError as e:
        if e.value == nv.NVML_ERROR_LIBRARY_NOT_FOUND:
            return "nvml_library_missing", "libnvidia-ml.so.1 not found: is the NVIDIA driver installed?"
        if e.value == nv.NVML_ERROR_DRIVER_NOT_LOADED:
            return "nvml_driver_not_loaded", "NVIDIA kernel driver is not loaded (NVML: %s)" % e
        if e.value == nv.NVML_ERROR_LIB_RM_VERSION_MISMATCH:
            return "nvml_version_mismatch", (
                "NVIDIA driver/library version mismatch (NVML: %s): the installed driver is not the loaded kernel "
                "module; it takes effect at the next reboot" % e
            )
        return "probe_failed", "NVML init failed: %s" % e
    try:
        facts["driver_version"] = call(nv, nv.nvmlSystemGetDriverVersion)
        cuda = call(nv, nv.nvmlSystemGetCudaDriverVersion_v2)
        facts["cuda_driver_version"] = "%d.%d" % (cuda // 1000, cuda % 1000 // 10) if cuda else None
        facts["nvml_version"] = call(nv, nv.nvmlSystemGetNVMLVersion)
        count = nv.nvmlDeviceGetCount()
        facts["gpus"] = [gpu_facts(nv, i) for i in range(count)]
    finally:
        try:
            nv.nvmlShutdown()
        except Exception:
            pass
    return None


def kernel_module():
    """The text of /proc/driver/nvidia/version (None: no NVIDIA module loaded, or unreadable)."""
    try:
        with open(PROC_NVIDIA_VERSION, "rb") as f:
            return f.read(2000).decode("utf-8", "replace")
    except OSError:
        return None


def main():
    procs = start_tools()
    facts = {
        "hostname": socket.gethostname(),
        "os": os_name(),
        "kernel": platform.release(),
        "driver_version": None,
        "cuda_driver_version": None,
        "nvml_version": None,
        "gpus": [],
    }
    error = None
    try:
        failed = nvml_facts(facts)
        if failed:
            error = {"kind": failed[0], "message": failed[1]}
    except Exception as e:  # the probe must always answer with a document
        error = {"kind": "probe_failed", "message": "%s: %s" % (type(e).__name__, e)}
    doc = {
        "schema": SCHEMA,
        "facts": facts,
        "tools": finish_tools(procs),
        "kernel_module": kernel_module(),
        "error": error,
        "python": platform.python_version(),
    }
    sys.stdout.write(json.dumps(doc) + "\n")
    sys.stdout.flush()


if __name__ == "__main__":
    main()
