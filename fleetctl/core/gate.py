"""The canary gate: judge a ring over its bake window against the hosts not yet upgraded.

Pure: it takes window figures (``fleetctl.core.metrics.WindowFigures``) and returns a verdict that names each
check's metric, value, threshold and hosts, so the report writes itself.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from fleetctl.core.fleet import RolloutSettings
from fleetctl.core.metrics import WindowFigures


@dataclass(frozen=True)
class GateSettings:
    """The gate's thresholds (journaled in the run's head). Defaults are the v1 journal's: a journal that lacks
    a key reads as it was recorded; new runs take theirs from ``[rollout]`` through ``gate_settings``."""

    max_error_rate: float = 0.01
    max_ttft_p95_ratio: float = 1.5
    min_requests: int = 1  # requests (real or synthetic) the ring must see to be judged at all
    interval_s: float = 5.0  # judged this often during the bake, over the window from its start
    failure_limit: int = 0  # failed measurements tolerated; one more aborts the bake (Argo's failureLimit)
    smoke_rps: float = 2.0  # synthetic requests per host per second while evidence is short (0: none)
    max_ttft_p95_ms: float | None = None  # absolute TTFT p95 ceiling (a pool of one host has no baseline)
    smoke_prompts: tuple[str, ...] = ()  # [rollout.smoke] prompts; empty: the built-in set


def gate_settings(rollout: RolloutSettings) -> GateSettings:
    """The gate a run judges with, from the fleet's ``[rollout]`` (profile overrides applied)."""
    return GateSettings(
        max_error_rate=rollout.max_error_rate,
        max_ttft_p95_ratio=rollout.max_ttft_p95_ratio,
        min_requests=rollout.min_requests,
        interval_s=rollout.interval_s,
        failure_limit=rollout.failure_limit,
        smoke_rps=rollout.smoke_rps,
        max_ttft_p95_ms=rollout.max_ttft_p95_ms,
        smoke_prompts=tuple(rollout.smoke_prompts),
    )


@dataclass(frozen=True)
class GateCheck:
    metric: str
    passed: bool
    value: float | None
    threshold: float | None
    hosts: tuple[str, ...]
    detail: str

    def to_dict(self) -> dict[str, Any]:
        return {
            "metric": self.metric,
            "passed": self.passed,
            "value": self.value,
            "threshold": self.threshold,
            "hosts": list(self.hosts),
            "detail": self.detail,
        }


@dataclass(frozen=True)
class Verdict:
    checks: tuple[GateCheck, ...] = field(default_factory=tuple)

    @property
    def passed(self) -> bool:
        return all(c.passed for c in self.checks)

    @property
    def failures(self) -> tuple[GateCheck, ...]:
        return tuple(c for c in self.checks if not c.passed)


def judge_ring(
    ring: dict[str, WindowFigures],
    baseline: WindowFigures | None,
    unhealthy: tuple[str, ...],
    settings: GateSettings,
    *,
    baseline_source: str = "baseline hosts",
) -> Verdict:
    """Health, traffic, error rate and TTFT p95 ratio of ``ring`` (host → figures over the bake window)."""
    hosts = tuple(sorted(ring))
    total = WindowFigures()
    for figures in ring.values():
        total = total.plus(figures)
    checks = [_health(hosts, unhealthy), _traffic(hosts, total, settings)]
    if checks[-1].passed:
        checks.append(_error_rate(hosts, total, settings))
        checks.append(_ttft(hosts, total, baseline, settings, baseline_source))
        if settings.max_ttft_p95_ms is not None:
            checks.append(_ttft_absolute(hosts, total, settings.max_ttft_p95_ms))
    return Verdict(tuple(checks))


def _health(hosts: tuple[str, ...], unhealthy: tuple[str, ...]) -> GateCheck:
    if unhealthy:
        return GateCheck(
            "health", False, float(len(unhealthy)), 0.0, unhealthy, f"{', '.join(unhealthy)} not healthy after the bake"
        )
    return GateCheck("health", True, 0.0, 0.0, hosts, "every host healthy")


def _traffic(hosts: tuple[str, ...], total: WindowFigures, settings: GateSettings) -> GateCheck:
    ok = total.requests >= settings.min_requests
    detail = (
        f"{total.requests:g} requests during the bake"
        if ok
        else f"only {total.requests:g} requests during the bake (need {settings.min_requests}): "
        "no evidence the new version works"
    )
    return GateCheck("requests", ok, total.requests, float(settings.min_requests), hosts, detail)


def _error_rate(hosts: tuple[str, ...], total: WindowFigures, settings: GateSettings) -> GateCheck:
    rate = total.error_rate or 0.0
    ok = rate <= settings.max_error_rate
    detail = (
        f"error rate {rate:.2%} (engine: {total.errors:g} of {total.finished:g} finished with an error; "
        f"API: {total.answers_5xx:g} of {total.answers:g} answers 5xx) "
        f"{'≤' if ok else '>'} max {settings.max_error_rate:.2%}"
    )
    return GateCheck("error_rate", ok, rate, settings.max_error_rate, hosts, detail)


def _ttft_absolute(hosts: tuple[str, ...], total: WindowFigures, limit_ms: float) -> GateCheck:
    p95 = total.ttft_p95()
    if p95 is None:
        return GateCheck("ttft_p95_ms", True, None, limit_ms, hosts, "not compared: no time-to-first-token figures")
    ms = p95 * 1000
    ok = ms <= limit_ms
    detail = f"TTFT p95 {ms:.0f} ms {'≤' if ok else '>'} max {limit_ms:g} ms"
    return GateCheck("ttft_p95_ms", ok, ms, limit_ms, hosts, detail)


def _ttft(
    hosts: tuple[str, ...], total: WindowFigures, baseline: WindowFigures | None, settings: GateSettings, source: str
) -> GateCheck:
    ring_p95 = total.ttft_p95()
    base_p95 = baseline.ttft_p95() if baseline is not None else None
    if ring_p95 is None or not base_p95:
        return GateCheck(
            "ttft_p95_ratio",
            True,
            None,
            settings.max_ttft_p95_ratio,
            hosts,
            f"not compared: no time-to-first-token figures from the {source}",
        )
    ratio = ring_p95 / base_p95
    ok = ratio <= settings.max_ttft_p95_ratio
    detail = (
        f"TTFT p95 {ring_p95 * 1000:.0f} ms vs {base_p95 * 1000:.0f} ms on the {source}: "
        f"×{ratio:.2f} {'≤' if ok else '>'} max ×{settings.max_ttft_p95_ratio:g}"
    )
    return GateCheck("ttft_p95_ratio", ok, ratio, settings.max_ttft_p95_ratio, hosts, detail)
