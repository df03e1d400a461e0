"""The rule registry (stable ids, in report order) and the checks of a host and of a snapshot.

A rule is ``(HostFacts, Profile, Matrix) -> RuleResult | None`` (None: it does not apply to this host).
A host that could not be probed gets no results; it counts as "could not be probed". The exception is a host
whose installed driver is not loaded yet (``rules_loaded``): it fails rule ``driver_loaded``, which says to reboot it.
"""

from __future__ import annotations

from collections.abc import Callable
from operator import attrgetter
from typing import Any

from fleetctl.core.compat import rules_cuda, rules_host
from fleetctl.core.compat.matrix import Matrix
from fleetctl.core.compat.profile import Profile
from fleetctl.core.compat.result import CheckReport, HostCheck, RuleResult
from fleetctl.core.compat.rules_loaded import DRIVER_LOADED, unloaded_results
from fleetctl.core.facts import GpuFacts, HostFacts
from fleetctl.core.inventory import HostFailure, HostReport, Snapshot

Rule = Callable[[HostFacts, Profile, Matrix], RuleResult | None]

RULES: dict[str, Rule] = {
    "driver_for_cuda": rules_cuda.driver_for_cuda,
    "driver_for_gpu": rules_cuda.driver_for_gpu,
    "arch_for_cuda": rules_cuda.arch_for_cuda,
    "compute_capability": rules_cuda.compute_capability,
    "features": rules_cuda.features,
    "gpu_count": rules_host.gpu_count,
    "gpu_memory": rules_host.gpu_memory,
    "gpu_health": rules_host.gpu_health,
    "mixed_gpus": rules_host.mixed_gpus,
    "docker": rules_host.docker,
    "container_toolkit": rules_host.container_toolkit,
    "fabric_manager": rules_host.fabric_manager,
}

#: the only facts rules read. Rules run on a projection of the facts onto these fields, so hosts that
#: agree on them share one evaluation (a fleet repeats a handful of configurations thousands of times).
HOST_FIELDS = ("driver_version", "docker_version", "nvidia_container_toolkit_version", "fabric_manager_version")
GPU_FIELDS = (
    "index",
    "name",
    "compute_capability",
    "memory_total_mib",
    "lost",
    "ecc_uncorrected_volatile",
    "remapped_rows_pending",
    "remapped_rows_failed",
    "mig_mode",
)

Results = tuple[RuleResult, ...]
#: a host's facts as the rules see them (``relevant_facts``): the HOST_FIELDS values, then one tuple of the
#: GPU_FIELDS values per GPU. Hashable: hosts with equal keys share one evaluation.
FactsKey = tuple[Any, ...]


def check_host(facts: HostFacts, profile: Profile, matrix: Matrix) -> Results:
    results = (rule(facts, profile, matrix) for rule in RULES.values())
    return tuple(r for r in results if r is not None)


def check_report(
    report: HostReport, profile: Profile, matrix: Matrix, memo: dict[FactsKey, Results] | None = None
) -> HostCheck:
    if report.error is not None or report.facts is None:
        unloaded = unloaded_results(report, profile, matrix)
        if unloaded is not None:
            return HostCheck(report.name, results=unloaded)
        error = report.error or HostFailure("no_facts", "the snapshot holds no facts for this host")
        return HostCheck(report.name, error=error)
    memo = {} if memo is None else memo
    key = relevant_facts(report.facts)
    if key not in memo:
        memo[key] = check_host(projected_facts(key), profile, matrix)
    return HostCheck(report.name, results=memo[key])


def check_snapshot(snapshot: Snapshot, profile: Profile, matrix: Matrix) -> CheckReport:
    memo: dict[FactsKey, Results] = {}
    hosts = tuple(check_report(h, profile, matrix, memo) for h in snapshot.hosts)
    unloaded = any(h.results and h.results[0].rule == DRIVER_LOADED for h in hosts)
    rules = (*RULES, DRIVER_LOADED) if unloaded else tuple(RULES)  # its column only where a host fails it
    return CheckReport(profile=profile.name, image=profile.image, cuda=profile.cuda, rules=rules, hosts=hosts)


_host_key = attrgetter(*HOST_FIELDS)
_gpu_key = attrgetter(*GPU_FIELDS)


def relevant_facts(facts: HostFacts) -> FactsKey:
    return (*_host_key(facts), tuple(map(_gpu_key, facts.gpus)))


def projected_facts(key: FactsKey) -> HostFacts:
    *host, gpus = key
    return HostFacts(**dict(zip(HOST_FIELDS, host)), gpus=tuple(GpuFacts(**dict(zip(GPU_FIELDS, gpu))) for gpu in gpus))
