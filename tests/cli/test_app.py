"""The CLI boundary: documented exit codes, one line per error, tracebacks only with --debug."""

import subprocess
import sys

import pytest
from typer.testing import CliRunner

import fleetctl.services.files as files
from fleetctl import __version__
from fleetctl.cli.app import app


def invoke(*args):
    return CliRunner().invoke(app, list(args))


def test_version_fast_path_in_a_real_process():
    out = subprocess.run([sys.executable, "-m", "fleetctl", "--version"], capture_output=True, text=True)
    assert (out.returncode, out.stdout) == (0, f"fleetctl {__version__}\n")


def test_unknown_option_is_a_usage_error():
    result = invoke("hosts", "--no-such-flag")
    assert result.exit_code == 2 and "No such option" in result.stderr


def test_missing_fleet_file_is_one_line_exit_2(tmp_path):
    result = invoke("--fleet", str(tmp_path / "nope.toml"), "hosts")
    assert result.exit_code == 2
    assert (
        result.stderr.strip().splitlines()[0] == f"error: {tmp_path / 'nope.toml'}: no such fleet file "
        "(use --fleet or $FLEETCTL_FLEET)"
    )


@pytest.fixture
def broken_loader(monkeypatch):
    def boom(path):
        raise RuntimeError("disk on fire")

    monkeypatch.setattr(files, "load_fleet", boom)


def test_a_bug_is_one_line_and_exit_1(broken_loader):
    result = invoke("hosts")
    assert result.exit_code == 1
    assert "internal error: RuntimeError: disk on fire" in result.stderr and "Traceback" not in result.stderr


def test_debug_shows_the_traceback(broken_loader):
    result = invoke("--debug", "hosts")
    assert result.exit_code != 0 and "disk on fire" in str(result.exception or result.stderr)


def test_ctrl_c_exits_130(monkeypatch):
    def interrupted(path):
        raise KeyboardInterrupt

    monkeypatch.setattr(files, "load_fleet", interrupted)
    result = invoke("hosts")
    assert result.exit_code == 130 and "interrupted" in result.stderr


def test_every_command_has_help():
    result = invoke("--help")
    assert result.exit_code == 0
    for command in ("hosts", "inventory"):
        sub = invoke(command, "--help")
        assert sub.exit_code == 0 and "Usage" in sub.stdout


def test_piped_output_does_not_cut_names_short_unless_columns_says_so():
    from fleetctl.cli.context import PIPE_WIDTH, AppContext
    from fleetctl.cli.render_serve import status_table

    host = {
        "name": "gpu-rack12-node07.dc2.example",
        "ring": "canary",
        "drained": True,
        "reachable": True,
        "drain_reason": "ECC errors on GPU 3, ticket OPS-4411",
        "image": "vllm/vllm-openai:v0.12.0-cu129",
        "profile": "qwen25-7b-vllm012",
        "container": "running",
        "healthy": True,
        "in_router": False,
        "requests_running": 0,
        "requests_waiting": 0,
        "kv_cache_usage": 0.0,
    }
    doc = {"router": {"url": "http://127.0.0.1:30000", "reachable": True, "upstreams": []}, "hosts": [host]}
    ctx = AppContext(env={})
    assert not ctx.out.is_terminal and ctx.out.width == PIPE_WIDTH  # pytest captures stdout: a pipe
    with ctx.out.capture() as captured:
        status_table(ctx.out, doc)
    for value in (
        "gpu-rack12-node07.dc2.example",
        "yes: ECC errors on GPU 3, ticket OPS-4411",
        "vllm/vllm-openai:v0.12.0-cu129",
        "qwen25-7b-vllm012",
    ):
        assert value in captured.get()
    assert AppContext(env={"COLUMNS": "80"}).out.width != PIPE_WIDTH


def test_a_serving_url_without_a_port_in_state_json_is_one_line_exit_2(tmp_path):
    fleet = tmp_path / "fleet.toml"
    fleet.write_text('[fleet]\nname = "t"\n\n[[hosts]]\nname = "gpu-01"\naddress = "10.0.0.1"\n')
    (tmp_path / ".fleetctl").mkdir()
    state = tmp_path / ".fleetctl" / "state.json"
    record = '{"url": "http://10.0.0.1", "profile": "p", "image": "i", "revision": "r1", "since": "x"}'
    state.write_text('{"schema": "fleetctl.state/v1", "serving": {"gpu-01": ' + record + "}}\n")
    result = invoke("--fleet", str(fleet), "drain", "gpu-01", "--dry-run")
    assert result.exit_code == 2
    first = result.stderr.strip().splitlines()[0]
    assert (
        first
        == f"error: {state}: serving.gpu-01: url 'http://10.0.0.1' has no port (fleetctl writes http://ADDRESS:PORT)"
    )
