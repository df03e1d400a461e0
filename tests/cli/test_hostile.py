"""Hostile input, one row per case: files and arguments in, an exit code and the first line of the message out.

Every row runs fleetctl in-process (typer's CliRunner) in its own temporary folder: a fleet file, and whatever
profile, snapshot, state.json, lock or router record the row writes there. Hosts and the router point at a
loopback port nothing listens on, so commands that reach out fail fast and the same way everywhere.

A row asserts the exit code and the start of the message's first line on stderr (``error: FILE:LINE: ...``,
after any progress lines); rows about
untrusted text also name what stdout must show (markup as text, ESC as ``\\x1b``) and check that no raw control
character reached the terminal. Add a row for every new input fleetctl reads.
"""

from __future__ import annotations

import fcntl
import json
import os
import socket
from dataclasses import dataclass, field

import pytest
from typer.testing import CliRunner

from fleetctl.cli.app import app

ESC = "\x1b[31m"  # an SGR sequence: would turn the terminal red
OSC = "\x1b]0;pwned\x07"  # would retitle the terminal
MARKUP = "ECC [/red] errors [bold]"


def _closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


PORT = _closed_port()  # bound, then released: nothing listens there

FLEET = f"""\
[fleet]
name = "lab"

[ssh]
user = "ops"
connect_timeout_s = 2

[router]
url = "http://127.0.0.1:{PORT}"

[[hosts]]
name = "gpu1"
address = "127.0.0.1"
port = {PORT}
"""


def fleet(**replace: str) -> str:
    text = FLEET
    for old, new in replace.items():
        text = text.replace(old, new)
    return text


def state(serving: dict | None = None, drained: dict | None = None, **extra) -> str:
    doc = {"schema": "fleetctl.state/v1", "serving": serving or {}, "drained": drained or {}, **extra}
    return json.dumps(doc)


def serving(url: str = "http://127.0.0.1:8000") -> dict:
    return {"url": url, "profile": "p", "image": "i", "revision": "r1", "since": "2026-01-01T00:00:00Z"}


def drained(reason: str) -> dict:
    return {"reason": reason, "by": "ops", "at": "2026-01-01T00:00:00Z"}


def lock_record(**fields) -> str:
    record = {
        "schema": "fleetctl.lock/v1",
        "user": "alice",
        "pid": 4242,
        "host": "ops1",
        "command": "fleetctl upgrade --profile next",
        "run_id": None,
        "since": "2026-01-01T00:00:00Z",
    }
    return json.dumps({**record, **fields})


RUN = "20261130T000000Z-abcdef"


def journal_line(**fields) -> str:
    """One run_started record of a journal, with ``fields`` replacing its own (hand-edited, or torn)."""
    record = {"schema": "fleetctl.journal/v1", "at": "2026-11-30T00:00:00Z", "run_id": RUN, "event": "run_started"}
    return json.dumps({**record, **fields}) + "\n"


def snapshot(*hosts: dict, fleet_name: str = "lab", taken_at: str = "2026-09-01T00:00:00Z") -> str:
    return json.dumps({"schema": "fleetctl.inventory/v1", "fleet": fleet_name, "taken_at": taken_at, "hosts": hosts})


def snap_host(name: str, *, error: dict | None = None, facts: dict | None = None) -> dict:
    return {"name": name, "address": "10.0.0.1", "ring": None, "ok": error is None, "error": error, "facts": facts}


H100 = {
    "index": 0,
    "name": "NVIDIA H100 80GB HBM3",
    "compute_capability": "9.0",
    "memory_total_mib": 81559,
    "ecc_uncorrected_volatile": 0,
}


def facts(driver: str = "570.133.20", **gpu) -> dict:
    return {
        "driver_version": driver,
        "docker_version": "27.5.1",
        "nvidia_container_toolkit_version": "1.17.8",
        "gpus": [{**H100, **gpu}],
    }


MESSAGE_STARTS = ("error:", "Usage:", "internal error", "interrupted")  # the lines before it are progress


@dataclass(frozen=True)
class Case:
    id: str
    args: tuple[str, ...]
    exit: int
    first: str  # the start of the message's first line on stderr; "" when there must be no message
    files: dict[str, str | bytes | None] = field(default_factory=dict)  # None: a folder
    held: bool = False  # another process holds the flock on .fleetctl/lock
    shown: tuple[str, ...] = ()  # what stdout must show, exactly as written here
    json: dict | None = None  # what stdout's JSON document must hold, key by key (dotted keys pick deeper)


PROFILE = "llama31-8b-vllm011"
STATUS_DOWN = f"error: the fleet is not as intended: router http://127.0.0.1:{PORT} unreachable: connection refused"

CASES = [
    # -- fleet files: FILE:LINE, exit 2 ------------------------------------------------------------------------
    Case(
        "fleet-toml-syntax", ("hosts",), 2, "error: {tmp}/fleet.toml:1: TOML syntax error", {"fleet.toml": "[fleet\n"}
    ),
    Case(
        "fleet-unknown-key-with-suggestion",
        ("hosts",),
        2,
        "error: {tmp}/fleet.toml:13: unknown key hosts.adress (did you mean address?)",
        {"fleet.toml": fleet(address="adress")},
    ),
    Case(
        "fleet-wrong-type",
        ("hosts",),
        2,
        "error: {tmp}/fleet.toml:14: hosts.port: expected an integer, got string",
        {"fleet.toml": fleet(**{f"port = {PORT}": f'port = "{PORT}"'})},
    ),
    Case(
        "fleet-port-out-of-range",
        ("hosts",),
        2,
        "error: {tmp}/fleet.toml:14: hosts.port: must be between 1 and 65535, got 0",
        {"fleet.toml": fleet(**{f"port = {PORT}": "port = 0"})},
    ),
    Case(
        "fleet-duplicate-host",
        ("hosts",),
        2,
        "error: {tmp}/fleet.toml:17: duplicate host name gpu1 (first at line 12)",
        {"fleet.toml": FLEET + '\n[[hosts]]\nname = "gpu1"\n'},
    ),
    Case("fleet-empty", ("hosts",), 2, "error: {tmp}/fleet.toml: missing [fleet] name", {"fleet.toml": ""}),
    Case(
        "fleet-router-url-not-http",
        ("hosts",),
        2,
        'error: {tmp}/fleet.toml:9: router.url: must be an http:// or https:// URL, got "ftp://x"',
        {"fleet.toml": fleet(**{f"http://127.0.0.1:{PORT}": "ftp://x"})},
    ),
    Case(
        "fleet-host-name-with-markup",
        ("hosts",),
        2,
        'error: {tmp}/fleet.toml:12: hosts.name: must be letters, digits, ".", "_" or "-"',
        {"fleet.toml": fleet(**{'name = "gpu1"': 'name = "gpu[/red]1"'})},
    ),
    Case(
        "fleet-missing",
        ("--fleet", "{tmp}/nope.toml", "hosts"),
        2,
        "error: {tmp}/nope.toml: no such fleet file (use --fleet or $FLEETCTL_FLEET)",
    ),
    Case(
        "fleet-path-with-escape-is-shown-not-sent",
        ("--fleet", "{tmp}/a" + OSC + ".toml", "hosts"),
        2,
        "error: {tmp}/a\\x1b]0;pwned\\x07.toml: no such fleet file",
    ),
    Case("fleet-option-empty", ("--fleet", "", "hosts"), 2, "error: --fleet is empty: give the fleet file's path"),
    # -- profiles -----------------------------------------------------------------------------------------------
    Case(
        "profile-unknown",
        ("check", "--profile", "nope", "--inventory", "{tmp}/inv.json"),
        2,
        "error: unknown profile 'nope'; known profiles: ",
        {"inv.json": snapshot(snap_host("gpu1", facts=facts()))},
    ),
    Case(
        "profile-path-missing",
        ("check", "--profile", "{tmp}/p.toml", "--inventory", "{tmp}/inv.json"),
        2,
        "error: {tmp}/p.toml: profile file not found",
        {"inv.json": snapshot(snap_host("gpu1", facts=facts()))},
    ),
    Case(
        "profile-toml-syntax",
        ("check", "--profile", "{tmp}/p.toml", "--inventory", "{tmp}/inv.json"),
        2,
        "error: {tmp}/p.toml:1: not valid TOML: ",
        {"p.toml": "[profile\n", "inv.json": snapshot(snap_host("gpu1", facts=facts()))},
    ),
    # -- snapshots (check --inventory) --------------------------------------------------------------------------
    Case(
        "snapshot-missing",
        ("check", "--profile", PROFILE, "--inventory", "{tmp}/none.json"),
        2,
        "error: {tmp}/none.json: cannot read snapshot: No such file or directory",
    ),
    Case(
        "snapshot-not-json",
        ("check", "--profile", PROFILE, "--inventory", "{tmp}/inv.json"),
        2,
        "error: {tmp}/inv.json:2: not valid JSON: ",
        {"inv.json": '{"schema":\n nope}'},
    ),
    Case(
        "snapshot-wrong-schema",
        ("check", "--profile", PROFILE, "--inventory", "{tmp}/inv.json"),
        2,
        "error: {tmp}/inv.json: not a fleetctl.inventory/v1 document",
        {"inv.json": json.dumps({"schema": "fleetctl.inventory/v9", "hosts": []})},
    ),
    Case(
        "snapshot-host-without-name",
        ("check", "--profile", PROFILE, "--inventory", "{tmp}/inv.json"),
        2,
        "error: {tmp}/inv.json: every host needs a string name",
        {"inv.json": snapshot({"address": "x"})},
    ),
    Case(
        "snapshot-escape-in-host-name-and-error",
        ("check", "--profile", PROFILE, "--inventory", "{tmp}/inv.json"),
        3,
        "error: 1 of 1 hosts could not be probed: gpu1\\x1b]0;pwned\\x07",
        {"inv.json": snapshot(snap_host("gpu1" + OSC, error={"kind": "auth", "message": MARKUP + ESC}))},
        shown=("gpu1\\x1b]0;pwned\\x07", "auth: " + MARKUP + "\\x1b[31m"),
    ),
    Case(
        "snapshot-escape-in-gpu-name-passes-through-the-report-as-text",
        ("check", "--profile", PROFILE, "--inventory", "{tmp}/inv.json"),
        4,
        "error: 1 of 1 hosts fail profile llama31-8b-vllm011: gpu\\x1b[31m",
        {"inv.json": snapshot(snap_host("gpu" + ESC, facts=facts(driver="450.80.02", name="GPU" + OSC)))},
        shown=("gpu\\x1b[31m",),
    ),
    Case(
        "snapshot-json-output-keeps-values-as-they-are",
        ("check", "--profile", PROFILE, "--inventory", "{tmp}/inv.json", "--format", "json"),
        3,
        "error: 1 of 1 hosts could not be probed: gpu1\\x1b]0;pwned\\x07",
        {"inv.json": snapshot(snap_host("gpu1" + OSC, error={"kind": "auth", "message": MARKUP}))},
        json={"hosts.0.name": "gpu1" + OSC},
    ),
    # -- state.json -----------------------------------------------------------------------------------------------
    Case(
        "state-not-json",
        ("status",),
        2,
        "error: {tmp}/.fleetctl/state.json:1: not valid JSON: ",
        {".fleetctl/state.json": "{nope"},
    ),
    Case(
        "state-wrong-schema",
        ("status",),
        2,
        "error: {tmp}/.fleetctl/state.json: not a fleetctl.state/v1 document",
        {".fleetctl/state.json": json.dumps({"schema": "x"})},
    ),
    Case(
        "state-serving-url-not-http",
        ("status",),
        2,
        "error: {tmp}/.fleetctl/state.json: serving.gpu1: url must start with http:// or https://",
        {".fleetctl/state.json": state({"gpu1": serving("ftp://x")})},
    ),
    Case(
        "state-serving-url-without-port",
        ("status",),
        2,
        "error: {tmp}/.fleetctl/state.json: serving.gpu1: url 'http://127.0.0.1' has no port",
        {".fleetctl/state.json": state({"gpu1": serving("http://127.0.0.1")})},
    ),
    Case(
        "state-serving-url-port-out-of-range",
        ("status",),
        2,
        "error: {tmp}/.fleetctl/state.json: serving.gpu1: url 'http://127.0.0.1:99999' has a bad port (Port out of range",
        {".fleetctl/state.json": state({"gpu1": serving("http://127.0.0.1:99999")})},
    ),
    Case(
        "state-drain-record-missing-fields",
        ("status",),
        2,
        "error: {tmp}/.fleetctl/state.json: drained.gpu1: reason, by, at must be string(s)",
        {".fleetctl/state.json": state(drained={"gpu1": {}})},
    ),
    # -- markup and escapes in what fleetctl saved or was told --------------------------------------------------
    Case(
        "drain-reason-markup-does-not-break-status",
        ("status",),
        3,
        STATUS_DOWN,
        {".fleetctl/state.json": state(drained={"gpu1": drained(MARKUP)})},
        shown=("yes: " + MARKUP,),
    ),
    Case(
        "drain-reason-escape-is-shown-in-status",
        ("status",),
        3,
        STATUS_DOWN,
        {".fleetctl/state.json": state(drained={"gpu1": drained("ECC" + OSC + ESC)})},
        shown=("yes: ECC\\x1b]0;pwned\\x07\\x1b[31m",),
    ),
    Case(
        "drain-reason-kept-as-it-is-in-status-json",
        ("status", "--json"),
        3,
        STATUS_DOWN,
        {".fleetctl/state.json": state(drained={"gpu1": drained(MARKUP + OSC)})},
        json={"hosts.0.drain_reason": MARKUP + OSC, "hosts.0.should_serve": False},
    ),
    Case(
        "fleet-name-markup-and-escape-in-an-error-line",
        ("drain", "gpu9"),
        2,
        "error: no host named gpu9 in fleet lab [/red] \\x1b[31m",
        {"fleet.toml": fleet(**{'name = "lab"': 'name = "lab [/red] \\u001b[31m"'})},
    ),
    Case(
        "fleet-name-markup-and-escape-in-the-inventory-table",
        ("inventory",),
        3,
        "error: 1 of 1 hosts failed: gpu1 (unreachable)",
        {"fleet.toml": fleet(**{'name = "lab"': 'name = "lab [/red] \\u001b]0;t\\u0007"'})},
        shown=("fleet lab [/red] \\x1b]0;t\\x07 · ",),
    ),
    Case(
        "matrix-show-gpu-name-with-markup-and-escape",
        ("matrix", "show", "--gpu", "[/red]GPU" + ESC),
        2,
        "error: GPU '[/red]GPU\\x1b[31m' is not in the matrix (known: ",
    ),
    # -- status: exit 3 when the fleet is not as intended --------------------------------------------------------
    Case(
        "status-router-and-host-unreachable",
        ("status",),
        3,
        STATUS_DOWN + "; gpu1: unreachable: ",
        {".fleetctl/state.json": state({"gpu1": serving()})},
        json=None,
    ),
    Case(
        "status-json-lists-the-problems",
        ("status", "--json"),
        3,
        STATUS_DOWN,
        {".fleetctl/state.json": state({"gpu1": serving()})},
        json={
            "problems.0": f"router http://127.0.0.1:{PORT} unreachable: connection refused",
            "hosts.0.should_serve": True,
        },
    ),
    Case(
        "router-status-unreachable",
        ("router", "status"),
        3,
        f"error: router http://127.0.0.1:{PORT} unreachable: connection refused",
    ),
    # -- arguments ----------------------------------------------------------------------------------------------
    Case("timeout-nan", ("drain", "gpu1", "--timeout", "nan"), 2, "error: --timeout must be a number of seconds"),
    Case("timeout-inf", ("drain", "gpu1", "--timeout", "inf"), 2, "error: --timeout must be a number of seconds"),
    Case("timeout-negative", ("drain", "gpu1", "--timeout=-1"), 2, "error: --timeout must be a number of seconds"),
    Case("undrain-timeout-nan", ("undrain", "gpu1", "--timeout", "NaN"), 2, "error: --timeout must be a number"),
    Case("drain-unknown-host", ("drain", "gpu9"), 2, "error: no host named gpu9 in fleet lab"),
    Case(
        "drain-unknown-host-with-escape",
        ("drain", "gpu" + OSC),
        2,
        "error: no host named gpu\\x1b]0;pwned\\x07 in fleet lab",
    ),
    Case("limit-matches-nothing", ("status", "--limit", "nomatch*"), 2, "error: --limit 'nomatch*' matches no host"),
    Case("forks-zero", ("status", "--forks", "0"), 2, "Usage: "),
    Case("unknown-option", ("status", "--no-such-flag"), 2, "Usage: "),
    # -- run journals -------------------------------------------------------------------------------------------
    Case(
        "journal-not-json",
        ("upgrade", "--resume"),
        2,
        f"error: {{tmp}}/.fleetctl/runs/{RUN}.jsonl:1: not JSON",
        {f".fleetctl/runs/{RUN}.jsonl": "hello\n"},
    ),
    Case(
        "journal-at-not-text",
        ("upgrade", "--abort", "--yes"),
        2,
        f"error: {{tmp}}/.fleetctl/runs/{RUN}.jsonl:1: at is not text: 123",
        {f".fleetctl/runs/{RUN}.jsonl": journal_line(at=123)},
    ),
    Case(
        "journal-plan-garbage",
        ("upgrade", "--resume"),
        2,
        f"error: {{tmp}}/.fleetctl/runs/{RUN}.jsonl:1: ",
        {f".fleetctl/runs/{RUN}.jsonl": journal_line(plan="garbage")},
    ),
    Case(
        "journal-unknown-record-refuses-a-new-run",
        ("upgrade", "-p", "next", "--yes"),
        2,
        f"error: {{tmp}}/.fleetctl/runs/{RUN}.jsonl:1: ",
        {f".fleetctl/runs/{RUN}.jsonl": journal_line(event="party")},
    ),
    Case(
        "journal-another-schema",
        ("upgrade", "--resume"),
        2,
        f"error: {{tmp}}/.fleetctl/runs/{RUN}.jsonl:1: ",
        {f".fleetctl/runs/{RUN}.jsonl": journal_line(schema="fleetctl.journal/v9")},
    ),
    # -- the fleet lock ----------------------------------------------------------------------------------------
    Case(
        "lock-held-names-the-holder",
        ("drain", "gpu1"),
        6,
        "error: the fleet is locked by alice (pid 4242 on ops1) running 'fleetctl upgrade --profile next' since",
        {".fleetctl/lock.json": lock_record()},
        held=True,
    ),
    Case(
        "lock-held-with-unreadable-record-is-held-by-an-unknown-holder",
        ("drain", "gpu1"),
        6,
        "error: the fleet is locked by an unknown holder ({tmp}/.fleetctl/lock.json is not JSON)",
        {".fleetctl/lock.json": '{"schema": "fleetctl.lock/v1", "pid": 4'},
        held=True,
    ),
    Case(
        "lock-held-force-unlock-does-not-steal",
        ("drain", "gpu1", "--force-unlock"),
        6,
        "error: the fleet is locked by an unknown holder ({tmp}/.fleetctl/lock.json is empty)",
        {".fleetctl/lock.json": ""},
        held=True,
    ),
    Case(
        "lock-stale-record",
        ("drain", "gpu1"),
        6,
        "error: stale fleet lock left by alice (pid 4242 on ops1) running 'fleetctl upgrade --profile next'",
        {".fleetctl/lock.json": lock_record()},
    ),
    Case(
        "lock-stale-unreadable-record",
        ("drain", "gpu1"),
        6,
        "error: stale fleet lock left by an unknown holder ({tmp}/.fleetctl/lock.json is not a fleetctl.lock/v1",
        {".fleetctl/lock.json": "[]"},
    ),
    Case(
        "lock-record-with-escapes-is-shown",
        ("drain", "gpu1"),
        6,
        "error: stale fleet lock left by alice\\x1b[31m (pid 4242 on ops1) running 'x\\x1b]0;pwned\\x07'",
        {".fleetctl/lock.json": lock_record(user="alice" + ESC, command="x" + OSC)},
    ),
    Case(
        "lock-file-is-a-directory",
        ("drain", "gpu1"),
        2,
        "error: {tmp}/.fleetctl/lock: cannot be opened as a lock file: it is a directory",
        {".fleetctl/lock": None},
    ),
    Case(
        "state-folder-is-a-file",
        ("router", "sync"),
        2,
        "error: {tmp}/.fleetctl: cannot be used as the state folder: a file that is not a directory is in the way",
        {".fleetctl": "not a folder"},
    ),
    # -- the router's record ------------------------------------------------------------------------------------
    Case(
        "router-record-not-json-is-no-router",
        ("router", "down"),
        0,
        "",
        {".fleetctl/router.json": "{torn"},
        shown=(f"no router started by fleetctl is running for http://127.0.0.1:{PORT}",),
    ),
    Case(
        "router-record-with-pid-1-is-never-signalled",
        ("router", "down"),
        0,
        "",
        {".fleetctl/router.json": json.dumps({"schema": "fleetctl.router/v1", "pid": 1, "start_ticks": 1, "args": []})},
        shown=(f"no router started by fleetctl is running for http://127.0.0.1:{PORT}",),
    ),
]


def _write(tmp_path, files: dict[str, str | bytes | None]) -> None:
    if "fleet.toml" not in files:
        (tmp_path / "fleet.toml").write_text(FLEET)
    for name, content in files.items():
        path = tmp_path / name
        path.parent.mkdir(parents=True, exist_ok=True)
        if content is None:
            path.mkdir()
        elif isinstance(content, bytes):
            path.write_bytes(content)
        else:
            path.write_text(content)


def _pick(doc, dotted: str):
    for key in dotted.split("."):
        doc = doc[int(key)] if isinstance(doc, list) else doc[key]
    return doc


@pytest.fixture
def held_lock(tmp_path):
    """Hold the flock on <tmp>/.fleetctl/lock as another process would (a second open file description)."""
    fds = []

    def hold():
        (tmp_path / ".fleetctl").mkdir(exist_ok=True)
        fd = os.open(tmp_path / ".fleetctl" / "lock", os.O_RDWR | os.O_CREAT, 0o644)
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        fds.append(fd)

    yield hold
    for fd in fds:
        os.close(fd)


@pytest.mark.parametrize("case", CASES, ids=[c.id for c in CASES])
def test_hostile_input(case: Case, tmp_path, held_lock):
    _write(tmp_path, case.files)
    if case.held:
        held_lock()
    tmp = str(tmp_path)
    args = [a.replace("{tmp}", tmp) for a in case.args]
    env = {"FLEETCTL_FLEET": f"{tmp}/fleet.toml", "FLEETCTL_PROFILES": "", "HOME": tmp, "COLUMNS": "250"}
    result = CliRunner().invoke(app, args, env=env)
    where = f"{case.id}: exit {result.exit_code}\nstdout: {result.stdout}\nstderr: {result.stderr}"
    assert result.exit_code == case.exit, where
    assert "Traceback" not in result.stderr and "internal error" not in result.stderr, where
    first = next((line for line in result.stderr.splitlines() if line.startswith(MESSAGE_STARTS)), "")
    expected = case.first.replace("{tmp}", tmp)
    assert first.startswith(expected) if expected else first == "", where
    for text in case.shown:
        assert text in result.stdout, where
    if case.json is not None:
        doc = json.loads(result.stdout)
        for key, value in case.json.items():
            assert _pick(doc, key) == value, (key, where)
    else:  # text for people: no control character from the input may reach the terminal
        for stream in (result.stdout, result.stderr):
            assert "\x1b" not in stream and "\x07" not in stream, where


def test_there_are_enough_cases():
    assert len(CASES) >= 40 and len({c.id for c in CASES}) == len(CASES)


@pytest.mark.parametrize(
    ("container", "in_router", "first"),
    [
        ("exited", True, "error: the fleet is not as intended: gpu1: should serve but its container is exited"),
        ("running", False, "error: the fleet is not as intended: gpu1: should serve but is not in the router"),
        (None, True, "error: the fleet is not as intended: gpu1: should serve but runs no fleetctl container"),
    ],
)
def test_status_of_a_killed_container_is_exit_3(tmp_path, monkeypatch, container, in_router, first):
    """`docker kill` of a serving host's vLLM while it is still in the router: the table says exited, exit 3."""
    import fleetctl.services.status as status

    upstream = "http://127.0.0.1:8000"
    router = {"url": f"http://127.0.0.1:{PORT}", "reachable": True, "error": None, "missing": [], "unexpected": []}
    router["upstreams"] = [{"url": upstream, "healthy": True, "load": 0, "intended": True}] if in_router else []
    monkeypatch.setattr(status, "router_status", lambda fleet, state: router)

    def host_status(ops, state, in_router, port):
        row = status._base(ops.host, state, in_router, port)
        row.update(reachable=True, image="i", profile="p", container=container, healthy=container == "running")
        return row

    monkeypatch.setattr(status, "host_status", host_status)
    _write(tmp_path, {".fleetctl/state.json": state({"gpu1": serving(upstream)})})
    result = CliRunner().invoke(app, ["--fleet", str(tmp_path / "fleet.toml"), "status"], env={"HOME": str(tmp_path)})
    assert result.exit_code == 3, result.output
    assert result.stderr.splitlines()[0] == first
