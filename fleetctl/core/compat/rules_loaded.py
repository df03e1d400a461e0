"""A host whose NVIDIA driver package was installed but is not loaded yet (it has not rebooted into it).

NVML then answers a driver/library version mismatch (error kind ``nvml_version_mismatch``) and reports no
driver, CUDA or GPU facts, so the rules that read them cannot run. The host still fails ``check``, with one
result that says what to do, beside the rules that read only the host's tools (Docker, the container toolkit).
"""

from __future__ import annotations

from fleetctl.core.compat import rules_host
from fleetctl.core.compat.matrix import Matrix
from fleetctl.core.compat.profile import Profile
from fleetctl.core.compat.result import FAIL, RuleResult, result
from fleetctl.core.facts import NVML_VERSION_MISMATCH
from fleetctl.core.inventory import HostReport

DRIVER_LOADED = "driver_loaded"
EXPECTED = "the installed driver loaded"
#: the rules that read only tool facts: they still run on a host whose NVML could not answer
TOOL_RULES = (rules_host.docker, rules_host.container_toolkit)


def driver_loaded(report: HostReport) -> RuleResult | None:
    """The failure of a host that runs an older kernel module than its installed driver; None for any other."""
    if report.error is None or report.error.kind != NVML_VERSION_MISMATCH:
        return None
    loaded = report.facts.kernel_module_version if report.facts is not None else None
    return result(
        DRIVER_LOADED,
        FAIL,
        EXPECTED,
        f"kernel module {loaded}" if loaded else "an older kernel module",
        "driver installed but not loaded: NVML reports a driver/library version mismatch"
        + (f" (the kernel module still loaded is {loaded})" if loaded else ""),
        f"reboot the host, e.g. `fleetctl maintain --limit {report.name} --reboot`",
    )


def unloaded_results(report: HostReport, profile: Profile, matrix: Matrix) -> tuple[RuleResult, ...] | None:
    """The results of a host whose installed driver is not loaded, or None when that is not this host's state."""
    failure = driver_loaded(report)
    if failure is None:
        return None
    if report.facts is None:
        return (failure,)
    tools = (rule(report.facts, profile, matrix) for rule in TOOL_RULES)
    return (failure, *(r for r in tools if r is not None))
