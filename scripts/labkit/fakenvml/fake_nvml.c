/*
 * Fake libnvidia-ml.so.1 for the fleetctl test lab.
 *
 * Loaded by the real pynvml (nvidia-ml-py 13.615) through LD_LIBRARY_PATH. It reads a fake host's GPUs from
 * the key=value file named by FAKE_NVML_CONFIG (format written by labkit.fakenvml.render_config) when
 * nvmlInitWithFlags takes the reference count from 0 to 1. Signatures and struct layouts follow pynvml.py /
 * nvml.h. All state is static: nothing is allocated, so nothing can leak. Init and shutdown take a mutex;
 * the host description is only replaced while the reference count is 0, so getters read it without locking.
 */
#include <ctype.h>
#include <errno.h>
#include <pthread.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#define API __attribute__((visibility("default")))

typedef int nvmlReturn_t;
enum {
    NVML_SUCCESS = 0, NVML_ERROR_UNINITIALIZED = 1, NVML_ERROR_INVALID_ARGUMENT = 2,
    NVML_ERROR_NOT_SUPPORTED = 3, NVML_ERROR_NOT_FOUND = 6, NVML_ERROR_INSUFFICIENT_SIZE = 7,
    NVML_ERROR_DRIVER_NOT_LOADED = 9, NVML_ERROR_GPU_IS_LOST = 15, NVML_ERROR_LIB_RM_VERSION_MISMATCH = 18,
    NVML_ERROR_ARGUMENT_VERSION_MISMATCH = 25, NVML_ERROR_UNKNOWN = 999,
};

#define MAX_GPUS 16
#define MAX_PAGES 64
#define NVML_MEMORY_V2 0x02000028u      /* sizeof(nvmlMemory_v2_t) | 2 << 24 */
#define NVML_TEMPERATURE_V1 0x0100000Cu /* sizeof(nvmlTemperature_v1_t) | 1 << 24 */

typedef struct { char busIdLegacy[16]; unsigned domain, bus, device, pciDeviceId, pciSubSystemId;
                 char busId[32]; } nvmlPciInfo_t;
typedef struct { unsigned long long total, free, used; } nvmlMemory_t;
typedef struct { unsigned version; unsigned long long total, reserved, free, used; } nvmlMemory_v2_t;
typedef struct { unsigned version; unsigned sensorType; int temperature; } nvmlTemperature_v1_t;
typedef struct { unsigned gpu, memory; } nvmlUtilization_t;

struct fake_gpu {
    char name[96], uuid[96], serial[30], pci_bus_id[32], vbios_version[32], board_part_number[80];
    unsigned pci_device_id, pci_subsystem_id, minor_number;
    unsigned long long memory_total, memory_reserved, memory_used;
    int cc_major, cc_minor;
    unsigned temperature, power_draw_mw, power_limit_mw, enforced_power_limit_mw;
    unsigned utilization_gpu, utilization_memory;
    unsigned ecc_current, ecc_pending;
    unsigned long long ecc_unc_volatile, ecc_unc_aggregate, ecc_cor_volatile, ecc_cor_aggregate;
    unsigned rows_correctable, rows_uncorrectable, rows_pending, rows_failure;
    unsigned retired_pages_supported, retired_pages_pending;
    unsigned long long retired_sbe[MAX_PAGES], retired_dbe[MAX_PAGES];
    unsigned n_retired_sbe, n_retired_dbe;
    unsigned long long clocks_event_reasons;
    unsigned persistence_mode, mig_current, mig_pending, lost;
};
typedef struct fake_gpu *nvmlDevice_t;

enum nvml_state { NVML_STATE_OK, NVML_STATE_NOT_LOADED, NVML_STATE_MISMATCH };

struct fake_host {
    int state; /* enum nvml_state: "nvml=" in the config */
    char driver_version[80], nvml_version[80];
    int cuda_driver_version;
    unsigned gpu_count;
    struct fake_gpu gpus[MAX_GPUS];
};

static struct fake_host g_host;
static unsigned g_refcount;
static pthread_mutex_t g_lock = PTHREAD_MUTEX_INITIALIZER;

/* ---- config file: the keys, as data ---------------------------------------------------------------- */

enum kind { K_STR, K_U32, K_I32, K_U64, K_BOOL, K_PAGES };
struct key { const char *name; enum kind kind; size_t offset, size, count_offset; };

#define GSTR(n, f) { n, K_STR, offsetof(struct fake_gpu, f), sizeof(((struct fake_gpu *)0)->f), 0 }
#define GNUM(n, k, f) { n, k, offsetof(struct fake_gpu, f), 0, 0 }
#define GPAGES(n, f, c) { n, K_PAGES, offsetof(struct fake_gpu, f), MAX_PAGES, offsetof(struct fake_gpu, c) }

static const struct key HOST_KEYS[] = {
    { "driver_version", K_STR, offsetof(struct fake_host, driver_version), sizeof(g_host.driver_version), 0 },
    { "nvml_version", K_STR, offsetof(struct fake_host, nvml_version), sizeof(g_host.nvml_version), 0 },
    { "cuda_driver_version", K_I32, offsetof(struct fake_host, cuda_driver_version), 0, 0 },
    { "gpu_count", K_U32, offsetof(struct fake_host, gpu_count), 0, 0 },
};

static const struct key GPU_KEYS[] = {
    GSTR("name", name), GSTR("uuid", uuid), GSTR("serial", serial), GSTR("pci_bus_id", pci_bus_id),
    GSTR("vbios_version", vbios_version), GSTR("board_part_number", board_part_number),
    GNUM("pci_device_id", K_U32, pci_device_id), GNUM("pci_subsystem_id", K_U32, pci_subsystem_id),
    GNUM("minor_number", K_U32, minor_number),
    GNUM("memory_total_bytes", K_U64, memory_total), GNUM("memory_reserved_bytes", K_U64, memory_reserved),
    GNUM("memory_used_bytes", K_U64, memory_used),
    GNUM("cc_major", K_I32, cc_major), GNUM("cc_minor", K_I32, cc_minor),
    GNUM("temperature_c", K_U32, temperature), GNUM("power_draw_mw", K_U32, power_draw_mw),
    GNUM("power_limit_mw", K_U32, power_limit_mw),
    GNUM("enforced_power_limit_mw", K_U32, enforced_power_limit_mw),
    GNUM("utilization_gpu", K_U32, utilization_gpu), GNUM("utilization_memory", K_U32, utilization_memory),
    GNUM("ecc_current", K_BOOL, ecc_current), GNUM("ecc_pending", K_BOOL, ecc_pending),
    GNUM("ecc_uncorrected_volatile", K_U64, ecc_unc_volatile),
    GNUM("ecc_uncorrected_aggregate", K_U64, ecc_unc_aggregate),
    GNUM("ecc_corrected_volatile", K_U64, ecc_cor_volatile),
    GNUM("ecc_corrected_aggregate", K_U64, ecc_cor_aggregate),
    GNUM("remapped_rows_correctable", K_U32, rows_correctable),
    GNUM("remapped_rows_uncorrectable", K_U32, rows_uncorrectable),
    GNUM("remapped_rows_pending", K_BOOL, rows_pending), GNUM("remapped_rows_failure", K_BOOL, rows_failure),
    GNUM("retired_pages_supported", K_BOOL, retired_pages_supported),
    GNUM("retired_pages_pending", K_BOOL, retired_pages_pending),
    GPAGES("retired_pages_sbe", retired_sbe, n_retired_sbe), GPAGES("retired_pages_dbe", retired_dbe, n_retired_dbe),
    GNUM("clocks_event_reasons", K_U64, clocks_event_reasons),
    GNUM("persistence_mode", K_BOOL, persistence_mode),
    GNUM("mig_current", K_BOOL, mig_current), GNUM("mig_pending", K_BOOL, mig_pending),
    GNUM("lost", K_BOOL, lost),
};

#define N_KEYS(a) (sizeof(a) / sizeof((a)[0]))

static int parse_u64(const char *s, unsigned long long max, unsigned long long *out)
{
    char *end;
    if (*s == '\0' || *s == '-' || isspace((unsigned char)*s))
        return -1;
    int hex = s[0] == '0' && (s[1] == 'x' || s[1] == 'X');
    errno = 0;
    unsigned long long v = strtoull(s, &end, hex ? 16 : 10); /* no octal: "010" is ten */
    if (errno || *end != '\0' || v > max)
        return -1;
    *out = v;
    return 0;
}

static int parse_pages(const char *s, unsigned long long *pages, unsigned *count)
{
    char buf[1024];
    unsigned n = 0;
    if (strlen(s) >= sizeof(buf))
        return -1;
    strcpy(buf, s);
    for (char *save = NULL, *tok = strtok_r(buf, ",", &save); tok; tok = strtok_r(NULL, ",", &save)) {
        if (n >= MAX_PAGES || parse_u64(tok, ~0ULL, &pages[n]) != 0)
            return -1;
        n++;
    }
    *count = n;
    return 0;
}

/* Store value into base+key->offset; returns an error message or NULL. */
static const char *store(const struct key *key, void *base, const char *value)
{
    char *field = (char *)base + key->offset;
    unsigned long long v;
    switch (key->kind) {
    case K_STR:
        if (strlen(value) >= key->size)
            return "value too long";
        memset(field, 0, key->size);
        memcpy(field, value, strlen(value));
        return NULL;
    case K_PAGES:
        return parse_pages(value, (unsigned long long *)field, (unsigned *)((char *)base + key->count_offset))
                   ? "expected a comma-separated list of at most 64 page addresses" : NULL;
    case K_U64:
        if (parse_u64(value, ~0ULL, &v))
            return "expected an unsigned integer";
        *(unsigned long long *)field = v;
        return NULL;
    case K_BOOL:
        if (parse_u64(value, 1, &v))
            return "expected 0 or 1";
        *(unsigned *)field = (unsigned)v;
        return NULL;
    case K_U32:
        if (parse_u64(value, 0xFFFFFFFFULL, &v))
            return "expected an unsigned 32-bit integer";
        *(unsigned *)field = (unsigned)v;
        return NULL;
    case K_I32:
        if (parse_u64(value, 0x7FFFFFFFULL, &v))
            return "expected a non-negative integer";
        *(int *)field = (int)v;
        return NULL;
    }
    return "internal error";
}

static const struct key *find_key(const struct key *keys, size_t n, const char *name)
{
    for (size_t i = 0; i < n; i++)
        if (strcmp(keys[i].name, name) == 0)
            return &keys[i];
    return NULL;
}

/* "gpu.<index>.<field>" → the GPU's struct and key. */
static const char *apply_gpu_key(struct fake_host *h, const char *name, const char *value)
{
    char *end;
    errno = 0;
    unsigned long idx = strtoul(name + 4, &end, 10);
    if (errno || end == name + 4 || *end != '.' || !isdigit((unsigned char)name[4]))
        return "malformed gpu key (expected gpu.<index>.<field>)";
    if (idx >= MAX_GPUS)
        return "gpu index out of range (max 15)";
    const struct key *key = find_key(GPU_KEYS, N_KEYS(GPU_KEYS), end + 1);
    return key ? store(key, &h->gpus[idx], value) : "unknown gpu field";
}

static const char *apply(struct fake_host *h, const char *name, const char *value)
{
    if (strcmp(name, "nvml") == 0) {
        /* version-mismatch: a driver package was installed but the host has not rebooted into it (the loaded
           kernel module is the old one), so nvmlInit fails as on a real host. */
        static const char *STATES[] = { "ok", "driver-not-loaded", "version-mismatch" };
        for (int i = 0; i < 3; i++)
            if (strcmp(value, STATES[i]) == 0) {
                h->state = i;
                return NULL;
            }
        return "expected ok, driver-not-loaded or version-mismatch";
    }
    if (strncmp(name, "gpu.", 4) == 0)
        return apply_gpu_key(h, name, value);
    const struct key *key = find_key(HOST_KEYS, N_KEYS(HOST_KEYS), name);
    return key ? store(key, h, value) : "unknown key";
}

static char *trim(char *s)
{
    while (isspace((unsigned char)*s))
        s++;
    char *e = s + strlen(s);
    while (e > s && isspace((unsigned char)e[-1]))
        *--e = '\0';
    return s;
}

static const char *parse_line(struct fake_host *h, char *line)
{
    char *s = trim(line);
    if (*s == '\0' || *s == '#')
        return NULL;
    char *eq = strchr(s, '=');
    if (!eq)
        return "expected key=value";
    *eq = '\0';
    return apply(h, trim(s), trim(eq + 1));
}

static const char *check_host(const struct fake_host *h)
{
    if (h->gpu_count > MAX_GPUS)
        return "gpu_count: at most 16 GPUs";
    for (unsigned i = 0; i < h->gpu_count; i++) {
        const struct fake_gpu *g = &h->gpus[i];
        if (!g->name[0] || !g->uuid[0] || !g->pci_bus_id[0])
            return "every GPU below gpu_count needs gpu.N.name, gpu.N.uuid and gpu.N.pci_bus_id";
    }
    return NULL;
}

static void report(const char *path, int line, const char *msg)
{
    fprintf(stderr, "fake-nvml: %s:%d: %s\n", path, line, msg);
}

/* Fill *h from the file named by FAKE_NVML_CONFIG; 0 on success. */
static int load_config(struct fake_host *h)
{
    const char *path = getenv("FAKE_NVML_CONFIG");
    char line[1024];
    int lineno = 0;
    const char *err = NULL;
    if (!path || !*path) {
        report("FAKE_NVML_CONFIG", 0, "environment variable not set");
        return -1;
    }
    FILE *f = fopen(path, "r");
    if (!f) {
        report(path, 0, strerror(errno));
        return -1;
    }
    memset(h, 0, sizeof(*h));
    h->state = NVML_STATE_OK;
    while (!err && fgets(line, sizeof(line), f)) {
        lineno++;
        if (!strchr(line, '\n') && !feof(f))
            err = "line too long";
        else
            err = parse_line(h, line);
    }
    if (!err && ferror(f))
        err = "read error";
    fclose(f);
    if (!err && (err = check_host(h)) != NULL)
        lineno = 0;
    if (err)
        report(path, lineno, err);
    return err ? -1 : 0;
}

/* ---- helpers ------------------------------------------------------------------------------------------ */

static int initialized(void)
{
    return __atomic_load_n(&g_refcount, __ATOMIC_ACQUIRE) > 0;
}

/* Resolve a handle; lost GPUs pass only when allow_lost (handle and index queries). */
static nvmlReturn_t resolve(nvmlDevice_t d, int allow_lost, const struct fake_gpu **out)
{
    if (!initialized())
        return NVML_ERROR_UNINITIALIZED;
    if (!d || (const char *)d < (const char *)g_host.gpus)
        return NVML_ERROR_INVALID_ARGUMENT;
    size_t off = (size_t)((const char *)d - (const char *)g_host.gpus);
    if (off % sizeof(struct fake_gpu) != 0 || off / sizeof(struct fake_gpu) >= g_host.gpu_count)
        return NVML_ERROR_INVALID_ARGUMENT;
    if (d->lost && !allow_lost)
        return NVML_ERROR_GPU_IS_LOST;
    *out = d;
    return NVML_SUCCESS;
}

#define DEVICE(d, g)                                                                                          \
    const struct fake_gpu *g;                                                                                 \
    do {                                                                                                      \
        nvmlReturn_t r_ = resolve((d), 0, &g);                                                                \
        if (r_ != NVML_SUCCESS)                                                                               \
            return r_;                                                                                        \
    } while (0)

static nvmlReturn_t copy_string(char *buf, unsigned length, const char *value)
{
    size_t n = strlen(value);
    if (!buf)
        return NVML_ERROR_INVALID_ARGUMENT;
    if (length < n + 1)
        return NVML_ERROR_INSUFFICIENT_SIZE;
    memcpy(buf, value, n + 1);
    return NVML_SUCCESS;
}

/* ---- init, errors, system ---------------------------------------------------------------------------- */

API nvmlReturn_t nvmlInitWithFlags(unsigned int flags)
{
    (void)flags;
    nvmlReturn_t ret = NVML_SUCCESS;
    pthread_mutex_lock(&g_lock);
    if (g_refcount == 0) {
        static struct fake_host loaded; /* guarded by g_lock; too big for some thread stacks */
        if (load_config(&loaded) != 0)
            ret = NVML_ERROR_UNKNOWN;
        else if (loaded.state == NVML_STATE_NOT_LOADED)
            ret = NVML_ERROR_DRIVER_NOT_LOADED;
        else if (loaded.state == NVML_STATE_MISMATCH)
            ret = NVML_ERROR_LIB_RM_VERSION_MISMATCH;
        else
            g_host = loaded;
    }
    if (ret == NVML_SUCCESS)
        __atomic_add_fetch(&g_refcount, 1, __ATOMIC_RELEASE);
    pthread_mutex_unlock(&g_lock);
    return ret;
}

API nvmlReturn_t nvmlInit_v2(void)
{
    return nvmlInitWithFlags(0);
}

API nvmlReturn_t nvmlShutdown(void)
{
    nvmlReturn_t ret = NVML_SUCCESS;
    pthread_mutex_lock(&g_lock);
    if (g_refcount == 0)
        ret = NVML_ERROR_UNINITIALIZED;
    else
        __atomic_sub_fetch(&g_refcount, 1, __ATOMIC_RELEASE);
    pthread_mutex_unlock(&g_lock);
    return ret;
}

API const char *nvmlErrorString(nvmlReturn_t result)
{
    static const struct { nvmlReturn_t code; const char *text; } TEXTS[] = {
        { 0, "Success" }, { 1, "Uninitialized" }, { 2, "Invalid Argument" }, { 3, "Not Supported" },
        { 4, "Insufficient Permissions" }, { 5, "Already Initialized" }, { 6, "Not Found" },
        { 7, "Insufficient Size" }, { 8, "Insufficient External Power" }, { 9, "Driver Not Loaded" },
        { 10, "Timeout" }, { 11, "Interrupt Request Issue" }, { 12, "NVML Shared Library Not Found" },
        { 13, "Function Not Found" }, { 14, "Corrupted infoROM" }, { 15, "GPU is lost" },
        { 16, "GPU requires restart" }, { 17, "The operating system has blocked the request." },
        { 18, "RM has detected an NVML/RM version mismatch." }, { 19, "In use by another client" },
        { 20, "Insufficient Memory" }, { 21, "No data" }, { 25, "Argument Version Mismatch" },
        { 26, "Deprecated" }, { 27, "Not Ready" }, { 28, "GPU Not Found" }, { 29, "Invalid State" },
    };
    for (size_t i = 0; i < N_KEYS(TEXTS); i++)
        if (TEXTS[i].code == result)
            return TEXTS[i].text;
    return "Unknown Error";
}

API nvmlReturn_t nvmlSystemGetDriverVersion(char *version, unsigned int length)
{
    return initialized() ? copy_string(version, length, g_host.driver_version) : NVML_ERROR_UNINITIALIZED;
}

API nvmlReturn_t nvmlSystemGetNVMLVersion(char *version, unsigned int length)
{
    return initialized() ? copy_string(version, length, g_host.nvml_version) : NVML_ERROR_UNINITIALIZED;
}

API nvmlReturn_t nvmlSystemGetCudaDriverVersion(int *cudaDriverVersion)
{
    if (!cudaDriverVersion)
        return NVML_ERROR_INVALID_ARGUMENT;
    if (!initialized())
        return NVML_ERROR_UNINITIALIZED;
    *cudaDriverVersion = g_host.cuda_driver_version;
    return NVML_SUCCESS;
}

API nvmlReturn_t nvmlSystemGetCudaDriverVersion_v2(int *cudaDriverVersion)
{
    return nvmlSystemGetCudaDriverVersion(cudaDriverVersion);
}

/* ---- handles ------------------------------------------------------------------------------------------ */

API nvmlReturn_t nvmlDeviceGetCount_v2(unsigned int *deviceCount)
{
    if (!initialized())
        return NVML_ERROR_UNINITIALIZED;
    if (!deviceCount)
        return NVML_ERROR_INVALID_ARGUMENT;
    *deviceCount = g_host.gpu_count;
    return NVML_SUCCESS;
}

API nvmlReturn_t nvmlDeviceGetHandleByIndex_v2(unsigned int index, nvmlDevice_t *device)
{
    if (!initialized())
        return NVML_ERROR_UNINITIALIZED;
    if (!device || index >= g_host.gpu_count)
        return NVML_ERROR_INVALID_ARGUMENT;
    *device = &g_host.gpus[index];
    return NVML_SUCCESS;
}

API nvmlReturn_t nvmlDeviceGetHandleByUUID(const char *uuid, nvmlDevice_t *device)
{
    if (!initialized())
        return NVML_ERROR_UNINITIALIZED;
    if (!uuid || !device)
        return NVML_ERROR_INVALID_ARGUMENT;
    for (unsigned i = 0; i < g_host.gpu_count; i++) {
        if (strcmp(g_host.gpus[i].uuid, uuid) == 0) {
            *device = &g_host.gpus[i];
            return NVML_SUCCESS;
        }
    }
    return NVML_ERROR_NOT_FOUND;
}

/* "[domain:]bus:device.function" in hex → numbers; 0 on success. */
static int parse_bus_id(const char *s, unsigned v[4])
{
    int used = 0;
    if (sscanf(s, "%x:%x:%x.%x%n", &v[0], &v[1], &v[2], &v[3], &used) == 4 && s[used] == '\0')
        return 0;
    v[0] = 0;
    used = 0;
    if (sscanf(s, "%x:%x.%x%n", &v[1], &v[2], &v[3], &used) == 3 && s[used] == '\0')
        return 0;
    return -1;
}

API nvmlReturn_t nvmlDeviceGetHandleByPciBusId_v2(const char *pciBusId, nvmlDevice_t *device)
{
    unsigned want[4], have[4];
    if (!initialized())
        return NVML_ERROR_UNINITIALIZED;
    if (!pciBusId || !device || parse_bus_id(pciBusId, want) != 0)
        return NVML_ERROR_INVALID_ARGUMENT;
    for (unsigned i = 0; i < g_host.gpu_count; i++) {
        if (parse_bus_id(g_host.gpus[i].pci_bus_id, have) == 0 && memcmp(want, have, sizeof(want)) == 0) {
            *device = &g_host.gpus[i];
            return NVML_SUCCESS;
        }
    }
    return NVML_ERROR_NOT_FOUND;
}

API nvmlReturn_t nvmlDeviceGetIndex(nvmlDevice_t device, unsigned int *index)
{
    const struct fake_gpu *g;
    nvmlReturn_t r = resolve(device, 1, &g);
    if (r != NVML_SUCCESS)
        return r;
    if (!index)
        return NVML_ERROR_INVALID_ARGUMENT;
    *index = (unsigned)(g - g_host.gpus);
    return NVML_SUCCESS;
}

/* ---- identity ----------------------------------------------------------------------------------------- */

API nvmlReturn_t nvmlDeviceGetName(nvmlDevice_t device, char *name, unsigned int length)
{
    DEVICE(device, g);
    return copy_string(name, length, g->name);
}

API nvmlReturn_t nvmlDeviceGetUUID(nvmlDevice_t device, char *uuid, unsigned int length)
{
    DEVICE(device, g);
    return copy_string(uuid, length, g->uuid);
}

API nvmlReturn_t nvmlDeviceGetSerial(nvmlDevice_t device, char *serial, unsigned int length)
{
    DEVICE(device, g);
    return copy_string(serial, length, g->serial);
}

API nvmlReturn_t nvmlDeviceGetVbiosVersion(nvmlDevice_t device, char *version, unsigned int length)
{
    DEVICE(device, g);
    return copy_string(version, length, g->vbios_version);
}

API nvmlReturn_t nvmlDeviceGetBoardPartNumber(nvmlDevice_t device, char *partNumber, unsigned int length)
{
    DEVICE(device, g);
    return copy_string(partNumber, length, g->board_part_number);
}

API nvmlReturn_t nvmlDeviceGetMinorNumber(nvmlDevice_t device, unsigned int *minorNumber)
{
    DEVICE(device, g);
    if (!minorNumber)
        return NVML_ERROR_INVALID_ARGUMENT;
    *minorNumber = g->minor_number;
    return NVML_SUCCESS;
}

API nvmlReturn_t nvmlDeviceGetPciInfo_v3(nvmlDevice_t device, nvmlPciInfo_t *pci)
{
    unsigned v[4];
    DEVICE(device, g);
    if (!pci || parse_bus_id(g->pci_bus_id, v) != 0)
        return NVML_ERROR_INVALID_ARGUMENT;
    memset(pci, 0, sizeof(*pci));
    snprintf(pci->busIdLegacy, sizeof(pci->busIdLegacy), "%04X:%02X:%02X.%X", v[0] & 0xFFFF, v[1] & 0xFF,
             v[2] & 0xFF, v[3] & 0xF);
    snprintf(pci->busId, sizeof(pci->busId), "%s", g->pci_bus_id);
    pci->domain = v[0];
    pci->bus = v[1];
    pci->device = v[2];
    pci->pciDeviceId = g->pci_device_id;
    pci->pciSubSystemId = g->pci_subsystem_id;
    return NVML_SUCCESS;
}

API nvmlReturn_t nvmlDeviceGetCudaComputeCapability(nvmlDevice_t device, int *major, int *minor)
{
    DEVICE(device, g);
    if (!major || !minor)
        return NVML_ERROR_INVALID_ARGUMENT;
    *major = g->cc_major;
    *minor = g->cc_minor;
    return NVML_SUCCESS;
}

/* ---- memory, thermals, power, utilization ------------------------------------------------------------- */

/* v1 counts reserved memory as used; v2 reports it apart. */
API nvmlReturn_t nvmlDeviceGetMemoryInfo(nvmlDevice_t device, nvmlMemory_t *memory)
{
    DEVICE(device, g);
    if (!memory)
        return NVML_ERROR_INVALID_ARGUMENT;
    memory->total = g->memory_total;
    memory->used = g->memory_used + g->memory_reserved;
    memory->free = memory->total > memory->used ? memory->total - memory->used : 0;
    return NVML_SUCCESS;
}

API nvmlReturn_t nvmlDeviceGetMemoryInfo_v2(nvmlDevice_t device, nvmlMemory_v2_t *memory)
{
    DEVICE(device, g);
    if (!memory)
        return NVML_ERROR_INVALID_ARGUMENT;
    if (memory->version != NVML_MEMORY_V2)
        return NVML_ERROR_ARGUMENT_VERSION_MISMATCH;
    unsigned long long taken = g->memory_used + g->memory_reserved;
    memory->total = g->memory_total;
    memory->reserved = g->memory_reserved;
    memory->used = g->memory_used;
    memory->free = g->memory_total > taken ? g->memory_total - taken : 0;
    return NVML_SUCCESS;
}

API nvmlReturn_t nvmlDeviceGetTemperature(nvmlDevice_t device, unsigned int sensorType, unsigned int *temp)
{
    DEVICE(device, g);
    if (!temp || sensorType != 0) /* NVML_TEMPERATURE_GPU is the only sensor */
        return NVML_ERROR_INVALID_ARGUMENT;
    *temp = g->temperature;
    return NVML_SUCCESS;
}

API nvmlReturn_t nvmlDeviceGetTemperatureV(nvmlDevice_t device, nvmlTemperature_v1_t *temperature)
{
    DEVICE(device, g);
    if (!temperature)
        return NVML_ERROR_INVALID_ARGUMENT;
    if (temperature->version != NVML_TEMPERATURE_V1)
        return NVML_ERROR_ARGUMENT_VERSION_MISMATCH;
    if (temperature->sensorType != 0)
        return NVML_ERROR_INVALID_ARGUMENT;
    temperature->temperature = (int)g->temperature;
    return NVML_SUCCESS;
}

static nvmlReturn_t give_uint(nvmlDevice_t device, size_t offset, unsigned *out)
{
    DEVICE(device, g);
    if (!out)
        return NVML_ERROR_INVALID_ARGUMENT;
    *out = *(const unsigned *)((const char *)g + offset);
    return NVML_SUCCESS;
}

API nvmlReturn_t nvmlDeviceGetPowerUsage(nvmlDevice_t device, unsigned int *power)
{
    return give_uint(device, offsetof(struct fake_gpu, power_draw_mw), power);
}

API nvmlReturn_t nvmlDeviceGetPowerManagementLimit(nvmlDevice_t device, unsigned int *limit)
{
    return give_uint(device, offsetof(struct fake_gpu, power_limit_mw), limit);
}

API nvmlReturn_t nvmlDeviceGetEnforcedPowerLimit(nvmlDevice_t device, unsigned int *limit)
{
    return give_uint(device, offsetof(struct fake_gpu, enforced_power_limit_mw), limit);
}

API nvmlReturn_t nvmlDeviceGetPersistenceMode(nvmlDevice_t device, unsigned int *mode)
{
    return give_uint(device, offsetof(struct fake_gpu, persistence_mode), mode);
}

API nvmlReturn_t nvmlDeviceGetUtilizationRates(nvmlDevice_t device, nvmlUtilization_t *utilization)
{
    DEVICE(device, g);
    if (!utilization)
        return NVML_ERROR_INVALID_ARGUMENT;
    utilization->gpu = g->utilization_gpu;
    utilization->memory = g->utilization_memory;
    return NVML_SUCCESS;
}

static nvmlReturn_t give_pair(nvmlDevice_t device, size_t first, size_t second, unsigned *a, unsigned *b)
{
    DEVICE(device, g);
    if (!a || !b)
        return NVML_ERROR_INVALID_ARGUMENT;
    *a = *(const unsigned *)((const char *)g + first);
    *b = *(const unsigned *)((const char *)g + second);
    return NVML_SUCCESS;
}

API nvmlReturn_t nvmlDeviceGetMigMode(nvmlDevice_t device, unsigned int *currentMode, unsigned int *pendingMode)
{
    return give_pair(device, offsetof(struct fake_gpu, mig_current), offsetof(struct fake_gpu, mig_pending),
                     currentMode, pendingMode);
}

API nvmlReturn_t nvmlDeviceGetEccMode(nvmlDevice_t device, unsigned int *current, unsigned int *pending)
{
    return give_pair(device, offsetof(struct fake_gpu, ecc_current), offsetof(struct fake_gpu, ecc_pending),
                     current, pending);
}

/* ---- health ------------------------------------------------------------------------------------------- */

API nvmlReturn_t nvmlDeviceGetTotalEccErrors(nvmlDevice_t device, unsigned int errorType, unsigned int counterType,
                                             unsigned long long *eccCounts)
{
    DEVICE(device, g);
    if (!eccCounts || errorType > 1 || counterType > 1)
        return NVML_ERROR_INVALID_ARGUMENT;
    if (!g->ecc_current)
        return NVML_ERROR_NOT_SUPPORTED;
    const unsigned long long counts[2][2] = { { g->ecc_cor_volatile, g->ecc_cor_aggregate },
                                              { g->ecc_unc_volatile, g->ecc_unc_aggregate } };
    *eccCounts = counts[errorType][counterType];
    return NVML_SUCCESS;
}

API nvmlReturn_t nvmlDeviceGetRemappedRows(nvmlDevice_t device, unsigned int *corrRows, unsigned int *uncRows,
                                           unsigned int *isPending, unsigned int *failureOccurred)
{
    DEVICE(device, g);
    if (!corrRows || !uncRows || !isPending || !failureOccurred)
        return NVML_ERROR_INVALID_ARGUMENT;
    *corrRows = g->rows_correctable;
    *uncRows = g->rows_uncorrectable;
    *isPending = g->rows_pending;
    *failureOccurred = g->rows_failure;
    return NVML_SUCCESS;
}

/* cause 0 = multiple single-bit ECC errors, 1 = double-bit ECC error. NULL addresses asks for the count. */
API nvmlReturn_t nvmlDeviceGetRetiredPages(nvmlDevice_t device, unsigned int cause, unsigned int *pageCount,
                                           unsigned long long *addresses)
{
    DEVICE(device, g);
    if (!pageCount || cause > 1)
        return NVML_ERROR_INVALID_ARGUMENT;
    if (!g->retired_pages_supported)
        return NVML_ERROR_NOT_SUPPORTED;
    const unsigned long long *pages = cause ? g->retired_dbe : g->retired_sbe;
    unsigned n = cause ? g->n_retired_dbe : g->n_retired_sbe;
    if (*pageCount < n) {
        *pageCount = n;
        return NVML_ERROR_INSUFFICIENT_SIZE;
    }
    if (n > 0 && !addresses)
        return NVML_ERROR_INVALID_ARGUMENT;
    if (n > 0)
        memcpy(addresses, pages, n * sizeof(*pages));
    *pageCount = n;
    return NVML_SUCCESS;
}

API nvmlReturn_t nvmlDeviceGetRetiredPagesPendingStatus(nvmlDevice_t device, unsigned int *isPending)
{
    DEVICE(device, g);
    if (!isPending)
        return NVML_ERROR_INVALID_ARGUMENT;
    if (!g->retired_pages_supported)
        return NVML_ERROR_NOT_SUPPORTED;
    *isPending = g->retired_pages_pending;
    return NVML_SUCCESS;
}

API nvmlReturn_t nvmlDeviceGetCurrentClocksEventReasons(nvmlDevice_t device, unsigned long long *reasons)
{
    DEVICE(device, g);
    if (!reasons)
        return NVML_ERROR_INVALID_ARGUMENT;
    *reasons = g->clocks_event_reasons;
    return NVML_SUCCESS;
}

API nvmlReturn_t nvmlDeviceGetCurrentClocksThrottleReasons(nvmlDevice_t device, unsigned long long *reasons)
{
    return nvmlDeviceGetCurrentClocksEventReasons(device, reasons);
}
