"""The benches' two-pool option: which hosts each pool gets, the fleet file's [[pools]], the other pool's row."""

from __future__ import annotations

import sys
import tomllib
from pathlib import Path

from tests.unit.test_bench_figures import SCRIPTS, drain_round, load_script, report

sys.path.insert(0, str(SCRIPTS))

from benchkit.lab import BenchLab, Pools, declare_pools


def lab_of(tmp_path: Path, count: int) -> BenchLab:
    fleet = tmp_path / "fleet.toml"
    fleet.write_text('# the lab\n[router]\nurl = "http://127.0.0.1:1"\n')
    hosts = tuple((f"gpu-{i:02d}", f"10.0.0.{i}") for i in range(1, count + 1))
    return BenchLab(tmp_path, fleet, tmp_path / "ssh", "http://127.0.0.1:1", hosts)


def test_declare_pools_appends_two_pools_once(tmp_path):
    lab = lab_of(tmp_path, 4)
    declare_pools(lab, Pools(("gpu-01", "gpu-02"), ("gpu-03", "gpu-04")))
    declare_pools(lab, Pools(("gpu-01", "gpu-02"), ("gpu-03", "gpu-04")))  # a kept lab: already there
    doc = tomllib.loads(lab.fleet.read_text())
    assert doc["router"]["url"] == "http://127.0.0.1:1"
    assert [(p["name"], p["profile"], p["hosts"]) for p in doc["pools"]] == [
        ("chat", "stable", "gpu-01,gpu-02"),
        ("other", "other-stable", "gpu-03,gpu-04"),
    ]


def test_bench_drain_pools_chat_serves_at_most_four(tmp_path):
    bench = load_script("bench-drain")
    assert bench.pools_of(lab_of(tmp_path, 8), 1) is None
    assert bench.pools_of(lab_of(tmp_path, 8), 2) == Pools(
        ("gpu-01", "gpu-02", "gpu-03", "gpu-04"), ("gpu-05", "gpu-06")
    )
    assert bench.pools_of(lab_of(tmp_path, 4), 2) == Pools(("gpu-01", "gpu-02"), ("gpu-03", "gpu-04"))


def test_bench_upgrade_pools_chat_on_the_hosts_asked_for(tmp_path):
    bench = load_script("bench-upgrade")
    assert bench.pools_of(lab_of(tmp_path, 6), 4, 2) == Pools(
        ("gpu-01", "gpu-02", "gpu-03", "gpu-04"), ("gpu-05", "gpu-06")
    )


def test_bench_drain_other_pool_failures_are_a_miss():
    bench = load_script("bench-drain")
    args = ([drain_round("gpu-01", 0.9, 1.7)], {"fleetctl": [2.0], "baseline": [8.0]}, [190.0], report(500, 0), 8)
    one = bench.summarize(*args)
    assert one["pools"] == 1 and "other_pool_failed_requests" not in one["targets"]
    good = bench.summarize(*args, 4, report(200, 0))
    bad = bench.summarize(*args, 4, report(199, 1))
    assert good["pools"] == 2 and good["serving"] == 4
    assert good["targets"]["other_pool_failed_requests"]["result"] == "PASS"
    assert bad["targets"]["other_pool_failed_requests"]["result"] == "MISS"
    table = bench.render_table({**bad, "load_avg_1m_before": 0.5})
    assert "pool other" in table and "200 requests: 199 ok, 1 failed" in table


def test_bench_upgrade_other_pool_row():
    bench = load_script("bench-upgrade")
    run = {
        "from": "stable",
        "to": "next",
        "total_s": 10.0,
        "overhead_per_host_s": 0.5,
        "overhead_s": 1.0,
        "start_to_healthy_sum_s": 7.0,
        "bake_sum_s": 2.0,
        "phases_s": {"drain": 1.0},
        "hosts": {"gpu-01": {"slack_s": 0.01}},
    }
    one = bench.summarize([run], report(100, 0), 2, 2.0)
    assert one["pools"] == 1 and "other_pool_failed_requests" not in one["targets"]
    two = bench.summarize([run], report(100, 0), 2, 2.0, report(50, 2))
    assert two["pools"] == 2 and two["other_load"]["failed"] == 2
    assert two["targets"]["other_pool_failed_requests"]["result"] == "MISS"
