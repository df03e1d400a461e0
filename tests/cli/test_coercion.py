"""Option values coerced without pydantic give what typer's own coercion gives; everything else goes to typer."""

import subprocess
import sys
import textwrap

import pytest
import typer.main
from typer._coercion import build_runtime_param
from typer.testing import CliRunner

from fleetctl.cli.app import app
from fleetctl.cli.coercion import _SLOW, QuickCommand, QuickGroup, quick_value


def descriptors():
    """One parameter's type descriptor for each kind of option fleetctl declares, from the real command tree."""
    found = {}

    def walk(command):
        for param in command.params:
            found.setdefault(repr(param.type_descriptor.annotation), param.type_descriptor)
        for sub in getattr(command, "commands", {}).values():
            walk(sub)

    walk(typer.main.get_command(app))
    return found


KINDS = descriptors()

ROWS = [
    ("<class 'str'>", ["abc", "", "--x", "ünï", " pad "]),
    ("<class 'bool'>", [True, False, "yes", "0", 1]),
    ("<class 'int'>", [1, 32, 512, "1", "8", "512", 0, 513, "0", "513", "08", " 8", "1_0", "abc", "-3", True, 2.0]),
    ("<class 'float'>", [2.5, 0.0, "2.5", "10", "0", "0.25", "1e3", "-1", "nan", " 1", 3, True]),
    ("<enum 'Format'>", ["table", "json", "junit", "JSON", "xml", "", 1]),
    ("list[str]", [("a", "b"), ["a"], (), ("a", 1)]),
]


def test_every_kind_of_option_is_in_the_table():
    assert sorted(KINDS) == sorted(kind for kind, _ in ROWS)


@pytest.mark.parametrize(("kind", "value"), [(kind, v) for kind, values in ROWS for v in values])
def test_a_quick_value_is_exactly_typers(kind, value):
    descriptor = KINDS[kind]
    quick = quick_value(descriptor.annotation, descriptor.parameter_info, value, None)
    if quick is _SLOW:
        return  # typer's own coercion takes it (checked below)
    real = build_runtime_param(descriptor)._coerce_value(value, param=None, ctx=None)
    assert (quick, type(quick)) == (real, type(real))


def test_the_enum_default_and_exact_choices_are_quick():
    from fleetctl.cli.check_cmd import Format

    descriptor = KINDS["<enum 'Format'>"]
    assert quick_value(descriptor.annotation, descriptor.parameter_info, Format.table, None) is Format.table
    assert quick_value(descriptor.annotation, descriptor.parameter_info, "json", None) is Format.json


def test_every_command_and_group_is_quick():
    def walk(command):
        yield command
        for sub in getattr(command, "commands", {}).values():
            yield from walk(sub)

    classes = {type(c) for c in walk(typer.main.get_command(app))}
    assert all(issubclass(cls, (QuickCommand, QuickGroup)) for cls in classes)


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["status", "--forks", "0"], "Invalid value for '--forks'"),
        (["status", "--forks", "x"], "Invalid value for '--forks'"),
        (["check", "--profile", "p", "--format", "xml"], "Invalid value for '--format'"),
    ],
)
def test_a_bad_value_still_gets_typers_own_error(args, message):
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 2 and message in result.stderr


def test_a_command_starts_without_pydantic(tmp_path):
    fleet = tmp_path / "fleet.toml"
    fleet.write_text('[fleet]\nname = "f"\n[[hosts]]\nname = "gpu-01"\nring = "canary"\n')
    code = textwrap.dedent(
        """
        import sys
        sys.argv = ["fleetctl", "--fleet", sys.argv[1], "hosts", "--limit", "gpu-*", "--json"]
        from fleetctl.cli import main
        try:
            main()
        except SystemExit as e:
            assert not e.code, e.code
        print("pydantic" in sys.modules, file=sys.stderr)
        """
    )
    done = subprocess.run([sys.executable, "-c", code, str(fleet)], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    assert '"gpu-01"' in done.stdout and done.stderr.strip() == "False"
