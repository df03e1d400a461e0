"""The fleet file: every key read into the model, and every mistake reported as FILE:LINE: what is wrong."""

import textwrap

import pytest

from fleetctl.core.fleet import Host, RolloutSettings, RouterSettings, SshSettings
from fleetctl.core.fleetfile import KeyLines, parse_fleet
from fleetctl.errors import ConfigError, ExitCode

ISSUE_SAMPLE = """\
[fleet]
name = "prod-east"

[ssh]                              # defaults for every host; ~/.ssh/config is honoured too
user = "ops"
identity_file = "~/.ssh/id_ed25519"
known_hosts = "~/.ssh/known_hosts"
host_key_policy = "strict"         # "strict" (default) or "accept-new"
proxy_jump = "bastion.example"     # optional, may be a chain "a,b"
connect_timeout_s = 10

[router]
url = "http://127.0.0.1:30000"

[[hosts]]
name = "gpu-a01"                   # unique
address = "10.0.1.11"              # optional; defaults to name (an ssh_config alias works)
port = 22                          # optional
ring = "canary"                    # optional
labels = { rack = "r1" }           # optional
"""

# Every key, with comments, odd spacing, tabs, quoted keys, a sub-table for labels and a multi-line array.
EVERY_KEY = """\
# the whole fleet
[fleet]
  name="lab-west"   # trailing comment

[ ssh ]
user       =   "deploy"
"identity_file" = '/keys/id ed25519'
known_hosts = "/etc/fleet/known_hosts"
host_key_policy = "accept-new"
proxy_jump = "jump1,jump2"
\tconnect_timeout_s = 2.5

[router]
url = "https://127.0.0.1:30000/"
min_serving = 0

[rollout]
rings = [
  "canary",   # first
  "early",
  "main",
]
max_unavailable = 2
bake_s = 300
max_error_rate = 0.05
max_ttft_p95_ratio = 1.25

[[hosts]]
name = "gpu-01"
address = "10.0.0.1"
port = 2222
ring = "canary"
labels = { rack = "r1", "zone" = "a" }

[[hosts]]   # no address: it defaults to the name
name = "gpu-02"
ring = "main"
[hosts.labels]
rack = "r2"

[[ hosts ]]
name = 'gpu-03'
"""


def parse(text, path="f.toml"):
    return parse_fleet(textwrap.dedent(text), path)


def test_the_issue_sample_parses():
    fleet = parse(ISSUE_SAMPLE, "/etc/fleet/prod.toml")
    assert fleet.name == "prod-east" and fleet.path == "/etc/fleet/prod.toml"
    assert fleet.ssh == SshSettings(
        user="ops",
        identity_file="~/.ssh/id_ed25519",
        known_hosts="~/.ssh/known_hosts",
        host_key_policy="strict",
        proxy_jump="bastion.example",
        connect_timeout_s=10.0,
    )
    assert fleet.router == RouterSettings(url="http://127.0.0.1:30000")
    assert fleet.rollout == RolloutSettings()
    assert fleet.hosts == (Host("gpu-a01", "10.0.1.11", port=22, ring="canary", labels={"rack": "r1"}, line=15),)


def test_every_key_is_read():
    fleet = parse(EVERY_KEY)
    assert fleet.name == "lab-west"
    assert fleet.ssh == SshSettings(
        user="deploy",
        identity_file="/keys/id ed25519",
        known_hosts="/etc/fleet/known_hosts",
        host_key_policy="accept-new",
        proxy_jump="jump1,jump2",
        connect_timeout_s=2.5,
    )
    assert fleet.router == RouterSettings(url="https://127.0.0.1:30000/", min_serving=0)
    assert fleet.rollout == RolloutSettings(
        rings=("canary", "early", "main"), max_unavailable=2, bake_s=300.0, max_error_rate=0.05, max_ttft_p95_ratio=1.25
    )
    assert fleet.hosts == (
        Host("gpu-01", "10.0.0.1", port=2222, ring="canary", labels={"rack": "r1", "zone": "a"}, line=28),
        Host("gpu-02", "gpu-02", ring="main", labels={"rack": "r2"}, line=35),
        Host("gpu-03", "gpu-03", line=41),
    )
    assert isinstance(fleet.ssh.connect_timeout_s, float) and isinstance(fleet.rollout.bake_s, float)


def test_defaults_and_an_empty_fleet():
    fleet = parse('[fleet]\nname = "empty"\n')
    assert fleet.hosts == () and fleet.ssh == SshSettings() and fleet.rollout == RolloutSettings()
    assert parse('hosts = []\n[fleet]\nname = "e"\n').hosts == ()


def test_windows_line_endings_keep_line_numbers():
    text = '[fleet]\r\nname = "w"\r\n\r\n[[hosts]]\r\nname = "a"\r\n[[hosts]]\r\nname = "a"\r\n'
    with pytest.raises(ConfigError, match=r"^f.toml:7: duplicate host name a \(first at line 5\)$"):
        parse_fleet(text, "f.toml")


HEAD = '[fleet]\nname = "t"\n'  # two lines; the case's own text starts on line 3

ERRORS = [
    # TOML syntax, with tomlkit's line
    (
        "syntax-number",
        HEAD + "[ssh]\nconnect_timeout_s = 10s\n",
        "f.toml:4: TOML syntax error: Invalid number (column 24)",
    ),
    (
        "syntax-unclosed-table",
        HEAD + "[ssh\nuser = 'x'\n",
        "f.toml:3: TOML syntax error: Unexpected end of line (column 5)",
    ),
    (
        "syntax-unclosed-array",
        HEAD + "[rollout]\nrings = ['a',\n",
        "f.toml:4: TOML syntax error: Unexpected end of file (column 1)",
    ),
    (
        "syntax-unterminated-string",
        HEAD + '[ssh]\nuser = "ops\n',
        r"f.toml:4: TOML syntax error: Control characters (codes less than 0x1f and 0x7f) are not allowed in strings, "
        r"use \u000a instead (column 12)",
    ),
    # defined twice: the second definition's line, which tomlkit itself gets wrong
    (
        "duplicate-key",
        HEAD + "[ssh]\nuser = 'a'\n\n# again\nuser = 'b'\n",
        "f.toml:7: ssh.user is defined twice (first at line 4)",
    ),
    (
        "duplicate-table",
        HEAD + "[ssh]\nuser = 'a'\n[router]\nurl = 'http://r'\n[ssh]\nport = 1\n\n\n",
        "f.toml:7: ssh is defined twice (first at line 3)",
    ),
    (
        "duplicate-key-in-host",
        HEAD + "[[hosts]]\nname = 'a'\n[[hosts]]\nname = 'b'\nport = 1\nport = 2\n",
        "f.toml:8: hosts.port is defined twice (first at line 7)",
    ),
    (
        "dotted-then-table",
        "ssh.user = 'a'\n[ssh]\nport = 1\n" + HEAD,
        "f.toml:2: ssh is defined twice (first at line 1)",
    ),
    # unknown tables and keys, with the closest known name
    (
        "unknown-table",
        HEAD + "\n[routr]\nurl = 'http://x'\n",
        "f.toml:4: unknown table [routr] (did you mean [router]?)",
    ),
    ("unknown-table-no-match", HEAD + "[zzz]\n", "f.toml:3: unknown table [zzz]"),
    (
        "unknown-key",
        HEAD + "[ssh]\nuser = 'ops'\nconect_timeout_s = 3\n",
        "f.toml:5: unknown key ssh.conect_timeout_s (did you mean connect_timeout_s?)",
    ),
    (
        "unknown-key-no-match",
        HEAD + "[router]\nflavour = 1\n",
        "f.toml:4: unknown key router.flavour (known: url, min_serving, listen, tls_cert, keys_file, max_queue_s)",
    ),
    (
        "unknown-host-key",
        HEAD + "[[hosts]]\nname = 'a'\nadress = '10.0.0.1'\n",
        "f.toml:5: unknown key hosts.adress (did you mean address?)",
    ),
    (
        "unknown-top-level-key",
        "nme = 'x'\n" + HEAD,
        "f.toml:1: unknown key nme outside any table (did you mean [fleet] name?)",
    ),
    (
        "sub-table-in-known-table",
        HEAD + "[ssh.options]\nx = 1\n",
        "f.toml:3: unknown key ssh.options (known: user, identity_file, known_hosts, host_key_policy, proxy_jump, "
        "connect_timeout_s)",
    ),
    (
        "dotted-unknown-in-host",
        HEAD + "[[hosts]]\nname = 'a'\nlabel.rack = 'r1'\n",
        "f.toml:5: unknown key hosts.label (did you mean labels?)",
    ),
    # wrong types
    (
        "type-number",
        HEAD + '[ssh]\nconnect_timeout_s = "10"\n',
        "f.toml:4: ssh.connect_timeout_s: expected a number, got string",
    ),
    (
        "type-bool-is-not-a-number",
        HEAD + "[router]\nmin_serving = true\n",
        "f.toml:4: router.min_serving: expected an integer, got boolean",
    ),
    (
        "type-float-is-not-an-integer",
        HEAD + "[rollout]\nmax_unavailable = 1.5\n",
        "f.toml:4: rollout.max_unavailable: expected an integer, got float",
    ),
    ("type-string", HEAD + "[ssh]\nuser = 7\n", "f.toml:4: ssh.user: expected a string, got integer"),
    ("type-table", "ssh = 'ops'\n" + HEAD, "f.toml:1: ssh: expected a table, got string"),
    (
        "type-rings",
        HEAD + "[rollout]\nrings = 'canary'\n",
        "f.toml:4: rollout.rings: expected an array of strings, got string",
    ),
    (
        "type-rings-item",
        HEAD + "[rollout]\nrings = [\n  'canary',\n  2,\n]\n",
        "f.toml:4: rollout.rings[1]: expected a string, got integer",
    ),
    (
        "type-labels",
        HEAD + "[[hosts]]\nname = 'a'\nlabels = 'r1'\n",
        "f.toml:5: hosts.labels: expected a table of strings, got string",
    ),
    (
        "type-label-value",
        HEAD + "[[hosts]]\nname = 'a'\n[hosts.labels]\nrack = 'r1'\nslot = 4\n",
        "f.toml:5: hosts.labels.slot: expected a string, got integer",
    ),
    (
        "type-hosts-table",
        HEAD + "[hosts]\nname = 'a'\n",
        "f.toml:3: hosts: expected an array of tables ([[hosts]]), got table",
    ),
    ("type-hosts-item", "hosts = ['a']\n" + HEAD, "f.toml:1: hosts: expected a table ([[hosts]]), got string"),
    ("hosts-under-fleet", HEAD + "hosts = []\n", "f.toml:3: unknown key fleet.hosts (known: name)"),
    (
        "type-datetime",
        HEAD + "[rollout]\nbake_s = 2024-01-01T00:00:00Z\n",
        "f.toml:4: rollout.bake_s: expected a number, got datetime",
    ),
    # bad values
    (
        "policy",
        HEAD + '[ssh]\nhost_key_policy = "yes"\n',
        'f.toml:4: ssh.host_key_policy: must be "strict" or "accept-new", got "yes"',
    ),
    (
        "port-high",
        HEAD + "[[hosts]]\nname = 'a'\nport = 70000\n",
        "f.toml:5: hosts.port: must be between 1 and 65535, got 70000",
    ),
    (
        "port-zero",
        HEAD + "[[hosts]]\nname = 'a'\nport = 0\n",
        "f.toml:5: hosts.port: must be between 1 and 65535, got 0",
    ),
    (
        "timeout-negative",
        HEAD + "[ssh]\nconnect_timeout_s = -1\n",
        "f.toml:4: ssh.connect_timeout_s: must be greater than 0, got -1",
    ),
    (
        "timeout-inf",
        HEAD + "[ssh]\nconnect_timeout_s = inf\n",
        "f.toml:4: ssh.connect_timeout_s: must be a finite number, got inf",
    ),
    ("bake-negative", HEAD + "[rollout]\nbake_s = -5\n", "f.toml:4: rollout.bake_s: must be at least 0, got -5"),
    (
        "min-serving-negative",
        HEAD + "[router]\nmin_serving = -1\n",
        "f.toml:4: router.min_serving: must be at least 0, got -1",
    ),
    (
        "max-unavailable-zero",
        HEAD + "[rollout]\nmax_unavailable = 0\n",
        "f.toml:4: rollout.max_unavailable: must be at least 1, got 0",
    ),
    (
        "error-rate",
        HEAD + "[rollout]\nmax_error_rate = 1.5\n",
        "f.toml:4: rollout.max_error_rate: must be between 0 and 1, got 1.5",
    ),
    (
        "ttft-ratio",
        HEAD + "[rollout]\nmax_ttft_p95_ratio = 0\n",
        "f.toml:4: rollout.max_ttft_p95_ratio: must be greater than 0, got 0",
    ),
    (
        "rings-twice",
        HEAD + "[rollout]\nrings = ['canary', 'main', 'canary']\n",
        'f.toml:4: rollout.rings: "canary" is listed twice',
    ),
    (
        "router-url",
        HEAD + "[router]\nurl = '127.0.0.1:30000'\n",
        'f.toml:4: router.url: must be an http:// or https:// URL, got "127.0.0.1:30000"',
    ),
    ("empty-user", HEAD + "[ssh]\nuser = ''\n", "f.toml:4: ssh.user: must not be empty"),
    (
        "host-name-chars",
        HEAD + "[[hosts]]\nname = 'gpu 01'\n",
        'f.toml:4: hosts.name: must be letters, digits, ".", "_" or "-" (starting with a letter or digit), got "gpu 01"',
    ),
    (
        "ring-chars",
        HEAD + "[[hosts]]\nname = 'a'\nring = 'canary,main'\n",
        'f.toml:5: hosts.ring: must be letters, digits, ".", "_" or "-" (starting with a letter or digit), '
        'got "canary,main"',
    ),
    # missing things and duplicate hosts
    ("no-fleet-table", "[ssh]\nuser = 'ops'\n", 'f.toml: missing [fleet] name (name = "...")'),
    ("no-fleet-name", "# a comment\n[fleet]\n\n[ssh]\n", 'f.toml:2: missing [fleet] name (name = "...")'),
    ("empty-file", "", 'f.toml: missing [fleet] name (name = "...")'),
    ("fleet-name-empty", "[fleet]\nname = ''\n", "f.toml:2: fleet.name: must not be empty"),
    (
        "host-without-name",
        HEAD + "[[hosts]]\nname = 'a'\n\n[[hosts]]   # forgot the name\naddress = '10.0.0.2'\n",
        'f.toml:6: host without a name (every [[hosts]] needs name = "...")',
    ),
    (
        "duplicate-host",
        HEAD + "\n[[hosts]]\nname = 'gpu-a01'\n\n[[hosts]]\nname = 'gpu-b01'\n\n[[hosts]]\n"
        "address = '10.0.0.9'\nname = 'gpu-a01'\n",
        "f.toml:12: duplicate host name gpu-a01 (first at line 5)",
    ),
]


@pytest.mark.parametrize("text, expected", [c[1:] for c in ERRORS], ids=[c[0] for c in ERRORS])
def test_a_bad_file_names_file_line_and_what_is_wrong(text, expected):
    with pytest.raises(ConfigError) as e:
        parse_fleet(text, "f.toml")
    assert str(e.value) == expected
    assert e.value.exit_code == ExitCode.USAGE == 2


def test_keys_in_tricky_places_get_their_own_line():
    text = textwrap.dedent('''\
        [fleet]
        name = "t"
        motd = """
        [ssh]
        user = "not a key"
        """  # a multi-line string that looks like TOML
        note = 'it''s # not a comment'
        [router]  # [rollout] in a comment
        "url" = "http://x/#frag"
        a."b.c" . d = 1
        lit = \'\'\'
        x = 1 \'\'\'
        esc = "quote \\" and [bracket"
        arr = [ [1, 2],
           { k = "v" },
        ]
        after = 2
        [[hosts]]
        name = "h0"
        [[hosts]]
        name = "h1"
        [hosts.labels]
        r = "1"
        ''')
    lines = KeyLines.read(text).lines
    assert lines[("fleet", "motd")] == 3 and lines[("fleet", "note")] == 7
    assert ("ssh",) not in lines and ("rollout",) not in lines
    assert lines[("router",)] == 8 and lines[("router", "url")] == 9
    assert lines[("router", "a", "b.c", "d")] == 10 and lines[("router", "a")] == 10
    assert lines[("router", "lit")] == 11 and lines[("router", "esc")] == 13
    assert lines[("router", "arr")] == 14 and lines[("router", "after")] == 17
    assert lines[("hosts", 0)] == 18 and lines[("hosts", 1, "name")] == 21
    assert lines[("hosts", 1, "labels")] == 22 and lines[("hosts", 1, "labels", "r")] == 23
    assert KeyLines.read(text).line_of(("hosts", 1, "labels", "r", "deeper")) == 23


def test_an_unknown_key_after_multi_line_values_points_at_its_own_line():
    text = HEAD + '[rollout]\nrings = [\n"a",\n]\n[ssh]\nuser = """\nops\n"""\nusr = "x"\n'
    with pytest.raises(ConfigError, match=r"^f.toml:11: unknown key ssh.usr \(did you mean user\?\)$"):
        parse_fleet(text, "f.toml")


def test_inline_hosts_array_points_at_the_array():
    text = "hosts = [\n  { name = 'a' },\n  { name = 'a' },\n]\n" + HEAD
    with pytest.raises(ConfigError, match=r"^f.toml:1: duplicate host name a \(first at line 1\)$"):
        parse_fleet(text, "f.toml")
