"""How a host's SSH route is resolved: fleet file over ssh_config over defaults, ProxyJump chains."""

import pytest

from fleetctl.core.fleet import Host, SshSettings
from fleetctl.core.sshtarget import (
    Endpoint,
    LocalInfo,
    SshConfigError,
    expand_tokens,
    parse_jump_chain,
    resolve_target,
)

SSH_CONFIG = {
    "gpu-a01": {"hostname": "10.0.1.11", "port": "2222", "user": "cfguser", "identityfile": ["/keys/cfg"]},
    "bastion": {"hostname": "203.0.113.5", "user": "jumper"},
    "via-cmd": {"hostname": "10.0.9.9", "proxycommand": "ssh -W %h:%p gw"},
    "cfg-jump": {"hostname": "10.0.3.3", "proxyjump": "bastion"},
    "no-jump": {"hostname": "10.0.4.4", "proxyjump": "none"},
}


def lookup(alias):
    return SSH_CONFIG.get(alias, {})


def test_ssh_config_fills_what_the_fleet_file_leaves_out():
    t = resolve_target(Host("gpu-a01", "gpu-a01"), SshSettings(), lookup)
    assert t.endpoint == Endpoint("gpu-a01", "10.0.1.11", 2222, "cfguser", ("/keys/cfg",), None)
    assert t.jumps == () and not t.accept_new


def test_fleet_file_wins_over_ssh_config():
    settings = SshSettings(user="ops", identity_file="~/.ssh/fleet", known_hosts="/kh", connect_timeout_s=3)
    t = resolve_target(Host("gpu-a01", "gpu-a01", port=22), settings, lookup)
    # like ssh -i: the fleet file's key is tried first, then ssh_config's
    assert (t.endpoint.user, t.endpoint.port, t.endpoint.identity_files) == ("ops", 22, ("~/.ssh/fleet", "/keys/cfg"))
    assert (t.known_hosts, t.timeout_s) == ("/kh", 3)


def test_plain_address_with_nothing_configured():
    t = resolve_target(Host("h", "192.0.2.10"), SshSettings(), lookup)
    assert t.endpoint == Endpoint("192.0.2.10", "192.0.2.10", 22, None, (), None)
    assert t.known_hosts == "~/.ssh/known_hosts"


def test_proxy_jump_chain_from_fleet_file_resolves_each_hop_through_ssh_config():
    t = resolve_target(Host("h", "10.0.2.2"), SshSettings(user="ops", proxy_jump="bastion,root@10.9.9.9:2200"), lookup)
    # a hop's own user, else its ssh_config User (as ssh -J), else the fleet's [ssh] user
    assert [(j.hostname, j.port, j.user) for j in t.jumps] == [
        ("203.0.113.5", 22, "jumper"),
        ("10.9.9.9", 2200, "root"),
    ]
    t = resolve_target(Host("h", "10.0.2.2"), SshSettings(user="ops", proxy_jump="plainhop"), lookup)
    assert t.jumps[0].user == "ops"


def test_proxy_jump_from_ssh_config_and_none_disables_it():
    assert [j.hostname for j in resolve_target(Host("c", "cfg-jump"), SshSettings(), lookup).jumps] == ["203.0.113.5"]
    assert resolve_target(Host("n", "no-jump"), SshSettings(), lookup).jumps == ()


def test_proxy_command_is_the_route_unless_the_fleet_file_jumps():
    t = resolve_target(Host("v", "via-cmd"), SshSettings(), lookup)
    assert t.endpoint.proxy_command == "ssh -W 10.0.9.9:22 gw" and t.jumps == ()  # %h and %p as OpenSSH
    t = resolve_target(Host("v", "via-cmd"), SshSettings(proxy_jump="bastion"), lookup)
    assert t.endpoint.proxy_command is None and len(t.jumps) == 1


@pytest.mark.parametrize(
    "policy, flag, expected", [("strict", False, False), ("strict", True, True), ("accept-new", False, True)]
)
def test_accept_new_comes_from_policy_or_flag(policy, flag, expected):
    t = resolve_target(Host("h", "h"), SshSettings(host_key_policy=policy), lookup, accept_new=flag)
    assert t.accept_new is expected


@pytest.mark.parametrize(
    "spec, hops",
    [
        (None, []),
        ("none", []),
        ("b", [(None, "b", None)]),
        ("u@b:22", [("u", "b", 22)]),
        ("ssh://u@b:2022", [("u", "b", 2022)]),
        ("[2001:db8::1]:2222", [(None, "2001:db8::1", 2222)]),
        ("a, u@b", [(None, "a", None), ("u", "b", None)]),
    ],
)
def test_parse_jump_chain(spec, hops):
    assert parse_jump_chain(spec) == hops


@pytest.mark.parametrize(
    "spec, message",
    [("a,,b", "empty hop"), ("ops@bastion:abc", "invalid port"), ("b:0", "invalid port"), ("j%h", "invalid ProxyJump")],
)
def test_bad_jump_chains_are_errors(spec, message):
    with pytest.raises(SshConfigError, match=message):
        parse_jump_chain(spec)


TOKENS = {"h": "10.0.0.1", "n": "gpu1", "p": "22", "r": "ops"}


@pytest.mark.parametrize(
    "value, allowed, expected",
    [
        ("%h:%p", "hp", "10.0.0.1:22"),
        ("100%%", "h", "100%"),
        ("%n-%r", "nr", "gpu1-ops"),
        ("plain", "", "plain"),
    ],
)
def test_expand_tokens(value, allowed, expected):
    assert expand_tokens(value, TOKENS, allowed) == expected


@pytest.mark.parametrize("value, allowed", [("%x", "h"), ("%p", "h"), ("trailing%", "h")])
def test_unknown_or_disallowed_tokens_are_errors_as_in_openssh(value, allowed):
    with pytest.raises(SshConfigError, match="unknown token"):
        expand_tokens(value, TOKENS, allowed)


def test_identity_file_tokens_and_tilde_use_the_local_home():
    local = LocalInfo(user="me", home="/home/me", uid=1000, hostname="ws.example")
    cfg = {"x": {"hostname": "10.0.0.9", "user": "ops", "identityfile": ["~/.ssh/%h_%r_%u_%i_%L", "%d/k"]}}
    t = resolve_target(Host("x", "x"), SshSettings(), lambda a: cfg.get(a, {}), local=local)
    assert t.endpoint.identity_files == ("/home/me/.ssh/10.0.0.9_ops_me_1000_ws", "/home/me/k")
