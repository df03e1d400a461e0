#!/bin/sh
# Fake nvidia-smi for the fleetctl lab. Reads the fake GPUs from the file named by FAKE_NVML_CONFIG, the same
# file the fake libnvidia-ml.so.1 reads. POSIX sh + awk only, so it works on hosts without python3.
# Supports: no arguments (a short summary), -L/--list-gpus, --query-gpu=F1,F2 --format=csv[,noheader][,nounits].
usage="Invalid combination of input arguments. Please run 'nvidia-smi -h' for help."
mode=table
fields=
format=
for arg in "$@"; do
    case "$arg" in
    -L | --list-gpus) mode=list ;;
    --query-gpu=*) mode=query; fields=${arg#--query-gpu=} ;;
    --format=*) format=${arg#--format=} ;;
    -h | --help)
        echo "NVIDIA System Management Interface (fleetctl lab fake)"
        echo "    nvidia-smi [-L | --query-gpu=FIELDS --format=csv[,noheader][,nounits]]"
        exit 0 ;;
    *) echo "$usage"; exit 2 ;;
    esac
done
if [ "$mode" = query ] && [ "${format%%,*}" != csv ]; then
    echo "$usage"
    exit 2
fi
if [ -z "${FAKE_NVML_CONFIG-}" ] || [ ! -r "$FAKE_NVML_CONFIG" ]; then
    echo "Failed to initialize NVML: Unknown Error"
    exit 255
fi
exec awk -v mode="$mode" -v fields="$fields" -v format="$format" '
function trim(s) { sub(/^[ \t\r]+/, "", s); sub(/[ \t\r]+$/, "", s); return s }
function g(i, key) { return c["gpu." i "." key] }
function mib(bytes) { return sprintf("%.0f", bytes / 1048576) }
function onoff(v) { return v == "1" ? "Enabled" : "Disabled" }
function unit(v, u) { return nounits ? v : v " " u }
function value(f, i) {
    if (f == "index") return i
    if (f == "count") return c["gpu_count"]
    if (f == "name" || f == "gpu_name") return g(i, "name")
    if (f == "uuid" || f == "gpu_uuid") return g(i, "uuid")
    if (f == "serial") return g(i, "serial")
    if (f == "pci.bus_id" || f == "gpu_bus_id") return g(i, "pci_bus_id")
    if (f == "driver_version") return c["driver_version"]
    if (f == "vbios_version") return g(i, "vbios_version")
    if (f == "memory.total") return unit(mib(g(i, "memory_total_bytes")), "MiB")
    if (f == "memory.used") return unit(mib(g(i, "memory_used_bytes")), "MiB")
    if (f == "memory.reserved") return unit(mib(g(i, "memory_reserved_bytes")), "MiB")
    if (f == "memory.free") return unit(mib(g(i, "memory_total_bytes") - g(i, "memory_used_bytes") - g(i, "memory_reserved_bytes")), "MiB")
    if (f == "temperature.gpu") return g(i, "temperature_c")
    if (f == "power.draw") return unit(sprintf("%.2f", g(i, "power_draw_mw") / 1000), "W")
    if (f == "power.limit") return unit(sprintf("%.2f", g(i, "power_limit_mw") / 1000), "W")
    if (f == "enforced.power.limit") return unit(sprintf("%.2f", g(i, "enforced_power_limit_mw") / 1000), "W")
    if (f == "utilization.gpu") return unit(g(i, "utilization_gpu"), "%")
    if (f == "utilization.memory") return unit(g(i, "utilization_memory"), "%")
    if (f == "persistence_mode") return onoff(g(i, "persistence_mode"))
    if (f == "compute_cap") return g(i, "cc_major") "." g(i, "cc_minor")
    if (f == "mig.mode.current") return onoff(g(i, "mig_current"))
    if (f == "mig.mode.pending") return onoff(g(i, "mig_pending"))
    if (f == "ecc.mode.current") return onoff(g(i, "ecc_current"))
    if (f == "ecc.errors.uncorrected.volatile.total") return g(i, "ecc_uncorrected_volatile")
    return "\001"
}
function header(f) {
    if (nounits) return f
    if (f ~ /^memory\./) return f " [MiB]"
    if (f ~ /power/) return f " [W]"
    if (f ~ /^utilization\./) return f " [%]"
    return f
}
function query(n,    names, k, i, j, line, v) {
    k = split(fields, names, ",")
    for (j = 1; j <= k; j++) {
        names[j] = trim(names[j])
        if (value(names[j], 0) == "\001") { print "Field \"" names[j] "\" is not a valid field to query."; return 2 }
    }
    if (!noheader) {
        line = header(names[1]); for (j = 2; j <= k; j++) line = line ", " header(names[j]); print line
    }
    for (i = 0; i < n; i++) {
        line = value(names[1], i); for (j = 2; j <= k; j++) line = line ", " value(names[j], i); print line
    }
    return 0
}
function table(n,    i, cuda) {
    cuda = c["cuda_driver_version"]
    printf "NVIDIA-SMI %s    Driver Version: %s    CUDA Version: %d.%d\n", c["driver_version"], c["driver_version"], int(cuda / 1000), int((cuda % 1000) / 10)
    for (i = 0; i < n; i++)
        printf "GPU %d: %s | %s | %sC | %.0fW / %.0fW | %sMiB / %sMiB | %s%%\n", i, g(i, "name"), g(i, "pci_bus_id"), g(i, "temperature_c"), g(i, "power_draw_mw") / 1000, g(i, "power_limit_mw") / 1000, mib(g(i, "memory_used_bytes")), mib(g(i, "memory_total_bytes")), g(i, "utilization_gpu")
}
/^[ \t]*(#|$)/ { next }
{ i = index($0, "="); if (i > 0) c[trim(substr($0, 1, i - 1))] = trim(substr($0, i + 1)) }
END {
    noheader = format ~ /noheader/; nounits = format ~ /nounits/
    if (c["nvml"] == "driver-not-loaded") {
        print "NVIDIA-SMI has failed because it couldn'"'"'t communicate with the NVIDIA driver. Make sure that the latest NVIDIA driver is installed and running."
        exit 9
    }
    if (c["nvml"] == "version-mismatch") {
        split(c["nvml_version"], v, ".")
        print "Failed to initialize NVML: Driver/library version mismatch"
        print "NVML library version: " v[2] "." v[3]
        exit 18
    }
    n = c["gpu_count"] + 0
    for (i = 0; i < n; i++)
        if (g(i, "lost") == "1") { print "Unable to determine the device handle for GPU " substr(g(i, "pci_bus_id"), 5) ": GPU is lost.  Reboot the system to recover this GPU"; lost = 1 }
    if (lost) exit 15
    if (mode == "list") { for (i = 0; i < n; i++) printf "GPU %d: %s (UUID: %s)\n", i, g(i, "name"), g(i, "uuid"); exit 0 }
    if (mode == "query") exit query(n)
    table(n)
}' "$FAKE_NVML_CONFIG"
