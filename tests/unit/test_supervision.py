"""The supervisor's pure decisions: restart backoff, how a death reads, the systemd unit text, and vllm-router's
own metrics per worker."""

from __future__ import annotations

import pytest

from fleetctl.core.metrics import MetricsError
from fleetctl.core.router_metrics import WorkerFigures, open_circuits, parse_router_metrics
from fleetctl.core.supervision import UnitSpec, death_reason, restart_delay, systemd_unit


@pytest.mark.parametrize(
    "uptime, failures, delay",
    [
        (0.5, 1, 0.0),  # the first death: at once
        (3600, 1, 0.0),
        (3600, 7, 0.0),  # it had run long: not a crash loop
        (1.0, 2, 0.5),
        (1.0, 3, 1.0),
        (1.0, 4, 2.0),
        (1.0, 30, 30.0),  # capped
    ],
)
def test_restart_delay_rows(uptime, failures, delay):
    assert restart_delay(uptime, failures) == delay


@pytest.mark.parametrize(
    "code, answered, reason",
    [
        (-9, True, "killed by SIGKILL"),
        (-15, False, "killed by SIGTERM while starting"),
        (1, False, "exited with status 1 while starting"),
        (0, True, "exited with status 0"),
        (-200, True, "killed by signal 200"),
    ],
)
def test_death_reason_rows(code, answered, reason):
    assert death_reason(code, answered) == reason


SPEC = UnitSpec("/opt/fleet/.venv/bin/python", "/etc/fleetctl/fleet.toml", "fleet", "prod-east")


def test_the_unit_runs_router_run_restarts_always_and_stops_the_supervisor_first():
    unit = systemd_unit(SPEC)
    lines = unit.splitlines()
    assert "ExecStart=/opt/fleet/.venv/bin/python -m fleetctl --fleet /etc/fleetctl/fleet.toml router run" in lines
    assert {"Restart=always", "User=fleet", "KillSignal=SIGTERM", "KillMode=mixed", "[Install]"} <= set(lines)
    assert "Description=fleetctl router for fleet prod-east (vllm-router, supervised)" in lines
    assert unit.endswith("\n")


@pytest.mark.parametrize(
    "field, value",
    [
        ("fleet_path", "/etc/my fleet.toml"),
        ("fleet_path", "/etc/fleet%i.toml"),  # a systemd specifier
        ("fleet_path", "/etc/x.toml\nExecStartPre=/bin/rm -rf /"),
        ("fleet_path", "fleet.toml"),  # relative
        ("user", "root;id"),
        ("user", ""),
        ("python", '/usr/bin/py"thon'),
    ],
)
def test_a_path_or_user_the_unit_cannot_carry_is_refused(field, value):
    from dataclasses import replace

    with pytest.raises(ValueError):
        systemd_unit(replace(SPEC, **{field: value}))


def test_a_fleet_name_with_odd_characters_is_made_plain_in_the_description():
    from dataclasses import replace

    unit = systemd_unit(replace(SPEC, fleet_name="a\nb[red]"))
    assert "Description=fleetctl router for fleet a-b-red- (vllm-router, supervised)" in unit.splitlines()


METRICS = """\
# TYPE vllm_router_processed_requests_total counter
vllm_router_processed_requests_total{worker="http://127.0.0.1:18101/"} 2
vllm_router_processed_requests_total{worker="http://127.0.0.1:18102"} 11
# TYPE vllm_router_cb_state gauge
vllm_router_cb_state{worker="http://127.0.0.1:18102"} 1
vllm_router_cb_state{worker="http://127.0.0.1:18101/"} 0
vllm_router_cb_state{worker="http://127.0.0.1:18103"} 2
vllm_router_worker_health{worker="http://127.0.0.1:18102"} 0
vllm_router_requests_total{route="/v1/completions"} 3
"""


def test_router_metrics_per_worker_and_the_open_circuits():
    figures = parse_router_metrics(METRICS)
    assert figures == {
        "http://127.0.0.1:18101": WorkerFigures(processed=2, circuit="closed"),
        "http://127.0.0.1:18102": WorkerFigures(processed=11, healthy=False, circuit="open"),
        "http://127.0.0.1:18103": WorkerFigures(circuit="half-open"),
    }
    assert open_circuits(figures) == ["http://127.0.0.1:18102"]
    assert parse_router_metrics("") == {}


def test_a_metrics_page_that_does_not_parse_is_a_metrics_error():
    with pytest.raises(MetricsError):
        parse_router_metrics('vllm_router_cb_state{worker="x" 1\n')
