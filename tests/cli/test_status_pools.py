"""status on a fleet with pools: the pools table above the hosts, each host's pool (spare for none), hosts that
run a profile their pool does not declare, and untrusted text kept as text."""

from __future__ import annotations

from rich.console import Console

from fleetctl.cli.render_serve import status_table

ROUTER = {"url": "http://127.0.0.1:30000", "reachable": True, "error": None, "upstreams": []}


def host(name: str, pool: str | None, profile: str | None = "stable") -> dict:
    return {
        "name": name,
        "pool": pool,
        "ring": None,
        "reachable": True,
        "container": "running",
        "healthy": True,
        "drained": False,
        "drain_reason": None,
        "image": "lab/vllm:stable",
        "profile": profile,
        "in_router": True,
        "requests_running": 1.0,
        "requests_waiting": 0.0,
        "kv_cache_usage": 0.5,
    }


def pool(name: str, **over) -> dict:
    doc = {
        "name": name,
        "profile": "stable",
        "models": ["lab/tiny-llama"],
        "profiles": {"stable": 2},
        "images": {"lab/vllm:stable": 2},
        "serving": 2,
        "drained": 0,
        "total": 2,
        "min_serving": 1,
        "requests_running": 2.0,
        "requests_waiting": 0.0,
        "off_profile": {},
    }
    return {**doc, **over}


def rendered(doc: dict) -> str:
    console = Console(record=True, width=250, color_system=None)
    status_table(console, doc)
    return console.export_text()


def test_pools_come_above_the_hosts_with_each_hosts_pool():
    doc = {
        "router": ROUTER,
        "hosts": [host("gpu-01", "chat"), host("gpu-05", None, None)],
        "pools": [
            pool("chat"),
            pool("other", models=["other"], off_profile={"gpu-04": "runs next, pool other declares stable"}),
        ],
    }
    text = rendered(doc)
    lines = text.splitlines()
    assert text.index("lab/tiny-llama") < text.index("gpu-01") and "stable ×2" in text
    assert any("gpu-01" in line and " chat " in line for line in lines)
    assert any("gpu-05" in line and "spare" in line for line in lines)
    assert "gpu-04: runs next, pool other declares stable" in text


def test_a_fleet_without_pools_shows_no_pool_column():
    text = rendered({"router": ROUTER, "hosts": [host("gpu-01", None)]})
    assert "spare" not in text and "pool" not in text


def test_markup_and_escapes_in_pool_fields_stay_text():
    doc = {"router": ROUTER, "hosts": [], "pools": [pool("chat", models=["[red]x\x1b[2J"])]}
    text = rendered(doc)
    assert "[red]x\\x1b[2J" in text and "\x1b" not in text
