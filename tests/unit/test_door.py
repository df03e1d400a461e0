"""The front door's pure decisions: [router] door keys, client keys, slots, HAProxy configuration and stats."""

from __future__ import annotations

import pytest

from fleetctl.core.door import (
    ClientKey,
    DoorSettingError,
    DoorSettings,
    client_lines,
    door_settings,
    fleet_slots,
    hash_key,
    max_num_seqs,
    parse_keys,
)
from fleetctl.core.door_config import (
    DoorFiles,
    DoorPlan,
    parse_stats,
    render_config,
    render_keys_map,
    render_limits_map,
)
from fleetctl.core.fleetfile import parse_fleet
from fleetctl.errors import ConfigError

LOOPBACK = {"url": "http://127.0.0.1:30000"}


@pytest.mark.parametrize(
    ("table", "expected"),
    [
        ({}, None),
        (LOOPBACK, None),
        ({**LOOPBACK, "listen": "0.0.0.0:8080"}, DoorSettings("0.0.0.0", 8080)),
        ({**LOOPBACK, "listen": "[::]:443", "tls_cert": "/etc/t.pem"}, DoorSettings("::", 443, "/etc/t.pem")),
        (
            {"listen": "10.0.0.1:80", "keys_file": "keys.toml", "max_queue_s": 5},
            DoorSettings("10.0.0.1", 80, None, "keys.toml", 5.0),
        ),
        ({"url": "http://localhost:1", "listen": "127.0.0.1:1"}, DoorSettings("127.0.0.1", 1)),
    ],
)
def test_door_settings_from_the_router_table(table, expected):
    assert door_settings(table) == expected


@pytest.mark.parametrize(
    ("table", "key"),
    [
        ({"url": "http://10.0.0.5:30000"}, "url"),
        ({"url": "http://router.internal:30000", "listen": "0.0.0.0:80"}, "url"),
        ({"listen": "0.0.0.0"}, "listen"),
        ({"listen": "0.0.0.0:0"}, "listen"),
        ({"listen": "0.0.0.0:99999"}, "listen"),
        ({"listen": "example.com:80"}, "listen"),
        ({"listen": "0.0.0.0:80 ssl"}, "listen"),
        ({"listen": "0.0.0.0:80", "tls_cert": "a b"}, "tls_cert"),
        ({"listen": "0.0.0.0:80", "keys_file": ""}, "keys_file"),
        ({"listen": "0.0.0.0:80", "max_queue_s": 0}, "max_queue_s"),
        ({"listen": "0.0.0.0:80", "max_queue_s": True}, "max_queue_s"),
    ],
)
def test_door_settings_refused_name_the_key(table, key):
    with pytest.raises(DoorSettingError) as e:
        door_settings(table)
    assert e.value.key == key


FLEET = """[fleet]
name = "f"

[router]
url = "http://10.250.0.1:30000"
listen = "0.0.0.0:8080"
"""


def test_a_non_loopback_router_url_is_file_line_pointing_to_listen():
    with pytest.raises(ConfigError) as e:
        parse_fleet(FLEET, "f.toml")
    assert str(e.value).startswith("f.toml:5: router.url")
    assert "listen" in str(e.value)


def test_the_fleet_file_carries_the_door():
    fleet = parse_fleet(FLEET.replace("10.250.0.1", "127.0.0.1") + "max_queue_s = 2.5\n", "f.toml")
    assert fleet.router.door == DoorSettings("0.0.0.0", 8080, max_queue_s=2.5)
    assert fleet.router.url == "http://127.0.0.1:30000"


KEYS = """# clients
[[client]]
name = "alice"
key_sha256 = "{a}"
requests_per_minute = 30
max_concurrent = 2

[[client]]
name = "bob"
key_sha256 = "{b}"
""".format(a=hash_key("sk-a"), b=hash_key("sk-b"))


def test_keys_file_clients_with_defaults():
    import tomllib

    clients = parse_keys(tomllib.loads(KEYS), "keys.toml", client_lines(KEYS))
    assert clients == (
        ClientKey("alice", hash_key("sk-a"), 30, 2),
        ClientKey("bob", hash_key("sk-b"), 600, 16),
    )
    assert client_lines(KEYS) == [2, 8]


@pytest.mark.parametrize(
    ("entry", "reason"),
    [
        ({"name": "a b", "key_sha256": "0" * 64}, "name"),
        ({"name": "a", "key_sha256": "sk-plain-key"}, "key_sha256"),
        ({"name": "a", "key_sha256": "A" * 64}, "key_sha256"),
        ({"name": "a", "key_sha256": "0" * 64, "requests_per_minute": 0}, "requests_per_minute"),
        ({"name": "a", "key_sha256": "0" * 64, "max_concurrent": 1.5}, "max_concurrent"),
        ({"name": "a", "key_sha256": "0" * 64, "key": "x"}, "unknown key"),
    ],
)
def test_a_bad_client_is_file_line(entry, reason):
    with pytest.raises(ConfigError) as e:
        parse_keys({"client": [{"name": "z", "key_sha256": "1" * 64}, entry]}, "keys.toml", [1, 6])
    assert str(e.value).startswith("keys.toml:6: client 2: ")
    assert reason in str(e.value)


def test_two_clients_with_one_key_are_refused():
    with pytest.raises(ConfigError, match="already used by client a"):
        parse_keys({"client": [{"name": "a", "key_sha256": "1" * 64}, {"name": "b", "key_sha256": "1" * 64}]}, "k")


def test_retry_after_is_the_time_one_request_frees():
    assert ClientKey("a", "0" * 64, 30, 1).retry_after_s == 2
    assert ClientKey("a", "0" * 64, 7, 1).retry_after_s == 9
    assert ClientKey("a", "0" * 64, 6000, 1).retry_after_s == 1


@pytest.mark.parametrize(
    ("args", "slots"),
    [
        ((), 256),
        (("--max-num-seqs", "8"), 8),
        (("--max-num-seqs=12", "--dtype", "half"), 12),
        (("--max-num-seqs",), 256),
        (("--max-num-seqs", "x"), 256),
    ],
)
def test_a_hosts_slots(args, slots):
    assert max_num_seqs(args) == slots


def test_fleet_slots_sum_and_never_zero():
    assert fleet_slots({"a": ("--max-num-seqs", "4"), "b": ()}) == 260
    assert fleet_slots({}) == 1


FILES = DoorFiles("/s/door/haproxy.cfg", "/s/door/haproxy.pid", "/s/door/haproxy.sock", "/s/k.map", "/s/l.map")


def _plan(clients=None, tls=None):
    return DoorPlan(DoorSettings("0.0.0.0", 8080, tls, None, 30.0), "127.0.0.1", 30000, 7, FILES, clients)


def test_config_passes_only_inference_and_health_and_caps_the_router():
    cfg = render_config(_plan())
    assert "    bind 0.0.0.0:8080\n" in cfg
    assert "acl inference path /v1/chat/completions /v1/completions /v1/embeddings /v1/models" in cfg
    assert "use_backend refused_path unless inference" in cfg
    assert "server vllm_router 127.0.0.1:30000 maxconn 7" in cfg
    assert "timeout queue 30000ms" in cfg
    assert "http_auth_bearer" not in cfg  # no keys file: no key check
    assert "${FLEETCTL_WORKER_KEY}" in cfg  # the worker key comes from HAProxy's environment
    assert "\n    log " not in cfg


def test_config_with_keys_checks_hashed_bearer_and_limits():
    cfg = render_config(_plan(clients=()))
    assert "http_auth_bearer,sha2(256),hex,lower,map(/s/k.map)" in cfg
    assert "use_backend refused_key if inference !{ var(txn.client) -m found }" in cfg
    assert "return status 429" in cfg and "hdr retry-after %[var(txn.retry_after)]" in cfg
    assert "http-request del-header authorization" in cfg
    # every http-request rule precedes every use_backend rule (HAProxy runs them first anyway)
    lines = cfg.splitlines()
    front = lines[lines.index("frontend door") : lines.index("backend router")]
    last_rule = max(i for i, ln in enumerate(front) if ln.strip().startswith("http-request"))
    first_use = min(i for i, ln in enumerate(front) if ln.strip().startswith("use_backend"))
    assert last_rule < first_use


def test_tls_binds_with_the_certificate():
    assert "    bind 0.0.0.0:8080 ssl crt /etc/t.pem\n" in render_config(_plan(tls="/etc/t.pem"))


@pytest.mark.parametrize(
    "tls, expected",
    [(None, None), ("/etc/t.pem", "/etc/t.pem"), ("tls.pem", "/fleet/tls.pem"), ("certs/t.pem", "/fleet/certs/t.pem")],
)
def test_a_relative_certificate_is_beside_the_fleet_file(tls, expected):
    settings = DoorSettings("0.0.0.0", 8080, tls, "keys.toml", 30.0).beside("/fleet")
    assert (settings.tls_cert, settings.keys_file) == (expected, "keys.toml")
    bind = f"    bind 0.0.0.0:8080 ssl crt {expected}\n" if expected else "    bind 0.0.0.0:8080\n"
    assert bind in render_config(DoorPlan(settings, "127.0.0.1", 30000, 7, FILES, None))


def test_maps_hold_hashes_and_limits_never_keys():
    clients = (ClientKey("alice", hash_key("sk-a"), 30, 2),)
    assert render_keys_map(clients) == f"{hash_key('sk-a')} alice\n"
    assert render_limits_map(clients) == "alice 30:2:2\n"
    assert "sk-a" not in render_keys_map(clients) + render_limits_map(clients)


STATS_HEADER = "# pxname,svname,qcur,qmax,scur,slim,stot,econ,req_rate,req_tot,"


def test_stats_from_the_socket():
    text = "\n".join(
        [
            STATS_HEADER,
            "door,FRONTEND,,,3,9985,40,,5,40,",
            "router,vllm_router,2,4,7,7,30,0,,30,",
            "router,BACKEND,2,4,7,999,33,3,,33,",
            "refused_path,BACKEND,0,0,0,1,4,0,,4,",
            "refused_key,BACKEND,0,0,0,1,2,0,,2,",
            "refused_rate,BACKEND,0,0,0,1,1,0,,1,",
            "",
        ]
    )
    stats = parse_stats(text)
    assert (stats.requests_per_s, stats.requests_total, stats.queued, stats.queued_max) == (5, 40, 2, 4)
    assert (stats.in_flight, stats.slots) == (7, 7)
    assert stats.refusals == {"path": 4, "key": 2, "rate": 1, "concurrency": 0, "capacity": 3}


@pytest.mark.parametrize("text", ["", "garbage", STATS_HEADER + "\nother,FRONTEND,,,,,,,,,\n"])
def test_stats_without_the_door_are_refused(text):
    with pytest.raises(ValueError):
        parse_stats(text)
