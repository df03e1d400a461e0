"""The serving benches' figures: when a drained host stopped getting traffic, and where an upgrade's time went
(from a recorded run journal), plus the scripts' PASS/MISS verdicts and tables."""

from __future__ import annotations

import importlib.machinery
import importlib.util
import json
import sys
from pathlib import Path
from types import SimpleNamespace

import pytest

SCRIPTS = Path(__file__).resolve().parents[2] / "scripts"
FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "bench"
sys.path.insert(0, str(SCRIPTS))

from benchkit.figures import (
    absent_spans,
    action_spans,
    drain_cutoff,
    epoch,
    poll_gaps,
    served_count,
    upgrade_figures,
)

URL = "http://10.0.0.11:8000"
OTHER = "http://10.0.0.12:8000"


def load_script(name: str):
    loader = importlib.machinery.SourceFileLoader(name.replace("-", "_"), str(SCRIPTS / name))
    spec = importlib.util.spec_from_loader(loader.name, loader)
    module = importlib.util.module_from_spec(spec)
    loader.exec_module(module)
    return module


# -- served count ---------------------------------------------------------------------------------------------


def test_served_count_adds_every_finished_reason_and_what_is_in_flight():
    text = (FIXTURES / "standin-metrics.txt").read_text()
    assert served_count(text) == 229.0  # stop 228 + length 1, nothing in flight
    running = 'vllm:num_requests_running{engine="0",model_name="lab/tiny-llama"}'
    waiting = 'vllm:num_requests_waiting{engine="0",model_name="lab/tiny-llama"}'
    busy = text.replace(f"{running} 0.0", f"{running} 3.0").replace(f"{waiting} 0.0", f"{waiting} 2.0")
    assert served_count(busy) == 234.0


def test_served_count_ignores_created_timestamps_and_refuses_a_page_without_the_counters():
    text = (FIXTURES / "standin-metrics.txt").read_text()
    assert "vllm:request_success_created{" in text  # 1.79e9 each: must not be summed
    assert served_count(text) < 1e6
    with pytest.raises(ValueError, match="no vllm:request_success_total"):
        served_count("# HELP nothing\nprocess_cpu_seconds_total 1.0\n")


# -- drain cut-off --------------------------------------------------------------------------------------------


def router_samples(out_at: float, end: float = 3.0, step: float = 0.1) -> list:
    times = [round(i * step, 3) for i in range(int(end / step) + 1)]
    return [(t, frozenset({OTHER} if t >= out_at else {URL, OTHER})) for t in times]


def test_drain_cutoff_is_the_later_of_leaving_the_router_and_the_last_new_request():
    served = [(0.0, 10.0), (0.4, 12.0), (0.8, 13.0), (1.2, 15.0), (1.6, 15.0), (2.0, 15.0), (3.0, 15.0)]
    cut = drain_cutoff(router_samples(out_at=1.0), served, URL, t0=0.5)
    assert cut.gone_s == pytest.approx(0.5)  # first sample without it, at 1.0, minus t0
    assert cut.stopped_s == pytest.approx(0.7)  # the count reached 15 at 1.2
    assert cut.out_s == pytest.approx(0.7)


def test_drain_cutoff_takes_the_last_time_the_host_left_and_skips_failed_polls():
    router = router_samples(out_at=0.5)
    router[10] = (router[10][0], frozenset({URL, OTHER}))  # back in at 1.0 for one sample: not gone until 1.1
    router[12] = (router[12][0], None)
    served = [(0.0, 1.0), (0.2, None), (0.3, 2.0), (2.0, 2.0)]
    cut = drain_cutoff(router, served, URL, t0=0.0)
    assert cut.gone_s == pytest.approx(1.1)
    assert cut.stopped_s == pytest.approx(0.3)


@pytest.mark.parametrize(
    "router, served, message",
    [
        (router_samples(out_at=99.0), [(0.0, 1.0), (1.0, 2.0)], "still in the router"),
        ([(0.0, frozenset({OTHER})), (1.0, frozenset({OTHER}))], [(0.0, 1.0), (1.0, 2.0)], "never in the router"),
        (router_samples(out_at=1.0), [(0.0, 5.0), (1.0, 5.0), (2.0, 5.0)], "no request reached"),
        (router_samples(out_at=1.0), [(0.0, 5.0), (1.0, 6.0), (2.0, 1.0)], "went down"),
        (router_samples(out_at=1.0), [(0.0, 5.0), (1.0, None)], "too few answers"),
    ],
)
def test_drain_cutoff_refuses_samples_that_do_not_show_a_drain(router, served, message):
    with pytest.raises(ValueError, match=message):
        drain_cutoff(router, served, URL, t0=0.0)


def test_poll_gaps_and_absent_spans():
    assert poll_gaps([(0.0, 1), (0.01, None), (0.02, 1), (0.05, 1), (0.06, 1)]) == pytest.approx((0.02, 0.03))
    samples = [
        (0.0, frozenset({OTHER})),
        (1.0, frozenset({URL})),
        (2.0, frozenset()),
        (3.0, None),
        (4.0, frozenset({URL})),
        (5.0, frozenset({OTHER})),
    ]
    assert absent_spans(samples, URL) == [(2.0, 4.0), (5.0, None)]  # before it first appeared: not a span


# -- upgrade journal ------------------------------------------------------------------------------------------


def journal() -> list[dict]:
    return [json.loads(line) for line in (FIXTURES / "upgrade-2-hosts.jsonl").read_text().splitlines()]


def test_upgrade_figures_attribute_a_recorded_run():
    records = journal()
    head, tail = epoch(records[0]["at"]), epoch(records[-1]["at"])
    figures = upgrade_figures(records, started=head - 12.0, ended=tail + 0.5)
    gpu01 = figures["hosts"]["gpu-01"]
    assert gpu01["start_to_healthy_s"] == pytest.approx(23.357 - 21.358, abs=1e-3)  # replace begin → healthy done
    assert gpu01["out_of_router_s"] == pytest.approx(23.428 - 21.116, abs=1e-3)  # drain begin → undrain done
    assert gpu01["drain_s"] == pytest.approx(0.241, abs=1e-3)
    assert gpu01["slack_s"] == pytest.approx(2.312 - 0.241 - 1.999, abs=2e-3)
    assert figures["bake_sum_s"] == pytest.approx(2.052 + 2.039, abs=1e-3)
    phases = figures["phases_s"]
    assert phases["startup_and_preflight"] == pytest.approx(12.0, abs=1e-3)
    assert phases["exit"] == pytest.approx(0.5, abs=1e-3)
    assert phases["gaps"] >= 0
    assert sum(phases.values()) == pytest.approx(figures["overhead_s"], abs=5e-3)
    assert figures["overhead_s"] == pytest.approx(
        figures["total_s"] - figures["start_to_healthy_sum_s"] - figures["bake_sum_s"], abs=5e-3
    )
    assert figures["overhead_per_host_s"] == pytest.approx(figures["overhead_s"] / 2, abs=1e-3)


def test_only_a_completed_healthy_run_is_measured():
    records = journal()
    with pytest.raises(ValueError, match="did not complete"):
        action_spans(records[:-1])
    failed = records[:8] + [{**records[8], "event": "action_failed", "reason": "unhealthy: never ready"}]
    with pytest.raises(ValueError, match="not a healthy upgrade"):
        action_spans(failed)
    rollback = records[:-1] + [{**records[3], "kind": "rollback_step", "key": "rollback_step:gpu-01:drain"}]
    with pytest.raises(ValueError, match="not a healthy upgrade"):
        action_spans(rollback)


# -- the scripts' verdicts and tables -------------------------------------------------------------------------


def report(ok: int, failed: int):
    return SimpleNamespace(ok=ok, failed=failed, summary=lambda: f"{ok + failed} requests: {ok} ok, {failed} failed")


def test_bench_upgrade_verdicts_follow_issue_5():
    bench = load_script("bench-upgrade")
    records = journal()
    head, tail = epoch(records[0]["at"]), epoch(records[-1]["at"])
    run = {"from": "stable", "to": "next", **upgrade_figures(records, head - 12.0, tail + 0.5)}
    for host in run["hosts"].values():
        host["router_saw_out_s"] = host["out_of_router_s"]
    summary = bench.summarize([run], report(100, 0), hosts=2, bake_s=2.0)
    targets = summary["targets"]
    assert targets["overhead_per_host_s"]["result"] == "MISS"  # 12 s before the run's head: 6 s/host
    assert targets["out_of_router_slack_s"]["result"] == "PASS"  # 0.07 s of undrain and journal writes
    assert targets["failed_requests"]["result"] == "PASS"
    table = bench.render_table({**summary, "load_avg_1m_before": 0.5})
    assert "inventory+check" in table and "MISS" in table and "gpu-02" in table
    assert bench.summarize([run], report(99, 1), 2, 2.0)["targets"]["failed_requests"]["result"] == "MISS"


def drain_round(host: str, out: float, command: float) -> dict:
    return {
        "host": host,
        "gone_s": out,
        "stopped_s": out - 0.05,
        "out_s": out,
        "command_s": command,
        "undrain_s": 1.5,
        "poll_median_s": 0.02,
        "poll_max_s": 0.05,
    }


def test_bench_drain_verdicts_and_table():
    bench = load_script("bench-drain")
    drains = [drain_round("gpu-01", 0.9, 1.7), drain_round("gpu-02", 1.1, 2.0), drain_round("gpu-03", 1.0, 1.9)]
    summary = bench.summarize(
        drains, {"fleetctl": [2.0, 2.2, 2.1], "baseline": [8.0, 8.4, 8.2]}, [190.0, 200.0], report(500, 0), hosts=20
    )
    targets = summary["targets"]
    assert summary["drain"]["out_s"]["median"] == 1.0
    assert targets["status_over_baseline"]["value"] == pytest.approx(2.1 / 8.2, abs=1e-3)
    assert targets["status_over_baseline"]["result"] == "PASS"
    assert targets["out_before_drain_returns"]["result"] == "PASS"
    slow = bench.summarize(drains, {"fleetctl": [9.0], "baseline": [8.0]}, [190.0], report(500, 0), hosts=20)
    assert slow["targets"]["status_over_baseline"]["result"] == "MISS"
    late = bench.summarize(
        [drain_round("gpu-01", 2.5, 1.7)], {"fleetctl": [2.0], "baseline": [8.0]}, [190.0], report(500, 0), hosts=20
    )
    assert late["targets"]["out_before_drain_returns"]["result"] == "MISS"
    table = bench.render_table({**summary, "load_avg_1m_before": 0.5})
    assert "20 x `ssh HOST docker ps`" in table and "PASS" in table
