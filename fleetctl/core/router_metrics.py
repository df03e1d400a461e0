"""vllm-router's own Prometheus metrics, per worker: requests it processed, its health, its circuit breaker.

vllm-router 0.1.17 serves them on its metrics port (``--prometheus-port``, 127.0.0.1):
``vllm_router_processed_requests_total{worker}``, ``vllm_router_worker_health{worker}`` (1 healthy, 0 not) and
``vllm_router_cb_state{worker}`` (0 closed, 1 open, 2 half-open). Parsing uses prometheus_client's parser
(imported on first use); the rest is plain data.
"""

from __future__ import annotations

from dataclasses import dataclass

from fleetctl.core.metrics import MetricsError
from fleetctl.core.router import normalise_url

PROCESSED = "vllm_router_processed_requests"
HEALTH = "vllm_router_worker_health"
CIRCUIT = "vllm_router_cb_state"
CIRCUIT_STATES = {0: "closed", 1: "open", 2: "half-open"}


@dataclass(frozen=True)
class WorkerFigures:
    """What the router says of one worker; None where its metrics do not say."""

    processed: int | None = None
    healthy: bool | None = None
    circuit: str | None = None  # closed | open | half-open | unknown

    def to_dict(self) -> dict[str, object]:
        return {"processed": self.processed, "healthy": self.healthy, "circuit": self.circuit}


def parse_router_metrics(text: str) -> dict[str, WorkerFigures]:
    """Per worker (normalised URL) figures from a ``/metrics`` page; MetricsError when it does not parse."""
    from prometheus_client.parser import text_string_to_metric_families

    fields: dict[str, dict[str, object]] = {}
    try:
        for family in text_string_to_metric_families(text):
            for sample in family.samples:
                worker = sample.labels.get("worker")
                if worker is None or sample.name not in (PROCESSED + "_total", PROCESSED, HEALTH, CIRCUIT):
                    continue
                _put(fields.setdefault(normalise_url(worker), {}), sample.name, sample.value)
    except (ValueError, TypeError) as e:
        raise MetricsError(f"the router's metrics do not parse: {e}") from e
    return {url: WorkerFigures(**f) for url, f in fields.items()}  # type: ignore[arg-type]


def _put(row: dict[str, object], name: str, value: float) -> None:
    if name == HEALTH:
        row["healthy"] = value >= 1
    elif name == CIRCUIT:
        row["circuit"] = CIRCUIT_STATES.get(int(value), "unknown")
    else:
        row["processed"] = int(value)


def open_circuits(figures: dict[str, WorkerFigures]) -> list[str]:
    """The workers whose circuit breaker is open: the router sends them nothing until it half-opens."""
    return sorted(url for url, f in figures.items() if f.circuit == "open")
