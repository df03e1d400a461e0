"""What may reach ssh's %h/%r/%p: row by row, what OpenSSH would accept and what it would refuse."""

from __future__ import annotations

import pytest

from fleetctl.core.addresses import host_problem, http_url_problem, jump_problem, unbracketed, user_problem

GOOD_HOSTS = [
    "gpu-a01",
    "gpu_a01",
    "gpu-01.prod.example.com",
    "gpu-01.prod.example.com.",
    "10.0.1.11",
    "fe80::1",
    "[fe80::1]",
    "[fe80::1%eth0]",
    "fe80::1%eth0",
    "[::ffff:10.0.0.1]",
    "a" * 63 + ".example",
]
BAD_HOSTS = [
    ("x:22 -oProxyCommand=touch${IFS}/tmp/pwned", "must be a host name"),
    ("$(touch /tmp/pwned2)", "must be a host name"),
    ("`id`", "must be a host name"),
    ("-oProxyCommand=id", "must be a host name"),
    (".hidden", "must be a host name"),
    ("gpu 01", "must be a host name"),
    ("gpu\t01", "must be a host name"),
    ("gpu;id", "must be a host name"),
    ("gpu|id", "must be a host name"),
    ("gpu&", "must be a host name"),
    ("gpu'x", "must be a host name"),
    ("gpu\x1b[31m", "must be a host name"),
    ("gpü", "must be a host name"),
    ("a..b", "empty label"),
    ("a" * 64 + ".example", "is 64 characters long (at most 63)"),
    (".".join(["a" * 60] * 5), "at most 253 characters"),
    ("[fe80::1%eth0;id]", "must be an IPv6 address"),
    ("[fe80::1%e th0]", "must be an IPv6 address"),
    ("[not-v6]", "must be an IPv6 address"),
    ("fe80::1::2", "must be an IPv6 address"),
    ("[fe80::1", "must be a host name"),
]


@pytest.mark.parametrize("value", GOOD_HOSTS)
def test_hosts_openssh_accepts(value):
    assert host_problem(value) is None


@pytest.mark.parametrize("value, words", BAD_HOSTS)
def test_hosts_openssh_refuses(value, words):
    problem = host_problem(value)
    assert problem is not None and words in problem
    assert "\x1b" not in problem and "\n" not in problem  # the message stays one line of plain text


def test_brackets_come_off_for_the_socket():
    assert unbracketed("[fe80::1%eth0]") == "fe80::1%eth0" and unbracketed("gpu-1") == "gpu-1"


@pytest.mark.parametrize("value", ["ops", "deploy_user", "a.b-c", "_svc"])
def test_users_accepted(value):
    assert user_problem(value) is None


@pytest.mark.parametrize("value", ["-oops", "ops;id", "ops id", "$(id)", "ops\n", ".ops", "ops@corp", ""])
def test_users_refused(value):
    assert "must be a user name" in (user_problem(value) or "")


@pytest.mark.parametrize(
    "spec",
    ["bastion", "ops@bastion", "ops@bastion:2222", "a,b,c", "[fe80::1%eth0]:22", "ssh://ops@j1:22,j2", "none"],
)
def test_jump_chains_accepted(spec):
    assert jump_problem(spec) is None


@pytest.mark.parametrize(
    "spec, message",
    [
        ("a,,b", "hop 2 is empty"),
        (",a", "hop 1 is empty"),
        ("a,", "hop 2 is empty"),
        ("ops@bastion:abc", 'hop 1 "ops@bastion:abc": port must be a number from 1 to 65535, got "abc"'),
        ("bastion:0", 'hop 1 "bastion:0": port must be a number from 1 to 65535, got "0"'),
        ("bastion:65536", 'hop 1 "bastion:65536": port must be a number from 1 to 65535, got "65536"'),
        ("a, b", 'hop 2 " b": host must be a host name'),
        ("-oProxyCommand=id", 'hop 1 "-oProxyCommand=id": host must be a host name'),
        ("$(id)@bastion", 'hop 1 "$(id)@bastion": user must be a user name'),
        ("ops@$(id)", 'hop 1 "ops@$(id)": host must be a host name'),
    ],
)
def test_jump_chains_refused(spec, message):
    assert (jump_problem(spec) or "").startswith(message)


@pytest.mark.parametrize(
    "url", ["http://127.0.0.1:30000", "https://router.internal/", "http://[::1]:30000/x", "http://r"]
)
def test_urls_accepted(url):
    assert http_url_problem(url) is None


@pytest.mark.parametrize(
    "url, message",
    [
        ("http://127.0.0.1:99999", 'port must be a number from 1 to 65535, got "99999"'),
        ("http://127.0.0.1:0", 'port must be a number from 1 to 65535, got "0"'),
        ("http://h:abc/", 'port must be a number from 1 to 65535, got "abc"'),
        ("127.0.0.1:30000", 'must be an http:// or https:// URL, got "127.0.0.1:30000"'),
        ("ftp://h:21", "must be an http:// or https:// URL"),
        ("http://", "must be an http:// or https:// URL"),
        ("http://h x:1", "must be an http:// or https:// URL"),
    ],
)
def test_urls_refused(url, message):
    assert http_url_problem(url) == message or (http_url_problem(url) or "").startswith(message)
