"""The ``fleetctl`` command: global options, the command list, and the one error boundary."""

from __future__ import annotations

import sys
from typing import Annotated, Any

import typer
from typer._click.exceptions import ClickException

from fleetctl import __version__
from fleetctl.cli.coercion import QuickGroup, use_quick_commands
from fleetctl.cli.context import AppContext
from fleetctl.errors import ExitCode, FleetError


class FleetGroup(QuickGroup):
    """Translates errors at the edge: one clear line on stderr and a documented exit code. Option values are
    coerced without pydantic where the result is certain (``fleetctl.cli.coercion``)."""

    def invoke(self, ctx: Any) -> Any:
        try:
            return super().invoke(ctx)
        except FleetError as e:
            _report(ctx, f"error: {e.message}", e.hint)
            ctx.exit(int(e.exit_code))
        except KeyboardInterrupt:
            _report(ctx, "interrupted", None)
            ctx.exit(int(ExitCode.INTERRUPTED))
        except (ClickException, typer.Exit, typer.Abort, SystemExit):
            raise  # usage errors (exit 2) and exits are click's to report
        except Exception as e:
            if _debug(ctx):
                raise
            _report(ctx, f"internal error: {type(e).__name__}: {e}", "run again with --debug for the traceback")
            ctx.exit(int(ExitCode.INTERNAL))


def _debug(ctx: Any) -> bool:
    obj = ctx.find_root().obj
    return isinstance(obj, AppContext) and obj.debug


def _report(ctx: Any, line: str, hint: str | None) -> None:
    """The error line (and its hint) on stderr, as text: messages carry names, paths and reasons from files,
    hosts and arguments, whose control characters are shown, never sent to the terminal."""
    from fleetctl.cli.safe import visible

    if _debug(ctx):
        import traceback

        traceback.print_exc(file=sys.stderr)
    print(visible(line, newlines=True), file=sys.stderr)
    if hint:
        print(f"hint: {visible(hint, newlines=True)}", file=sys.stderr)


app = typer.Typer(
    cls=FleetGroup,
    name="fleetctl",
    help="Own a fleet of bare-metal GPU hosts serving LLMs with vLLM.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
    context_settings={"help_option_names": ["-h", "--help"]},
)


def _version(value: bool) -> None:
    if value:
        print(f"fleetctl {__version__}")
        raise typer.Exit()


@app.callback()
def root(
    ctx: typer.Context,
    fleet: Annotated[
        str | None, typer.Option("--fleet", help="Fleet file (else $FLEETCTL_FLEET, else ./fleet.toml).")
    ] = None,
    debug: Annotated[bool, typer.Option("--debug", help="Show tracebacks and debug logs.")] = False,
    version: Annotated[
        bool, typer.Option("--version", callback=_version, is_eager=True, help="Print the version.")
    ] = False,
) -> None:
    """fleetctl: inventory, compatibility checks, drain and canary rollouts for GPU hosts running vLLM.

    Exit codes: 0 ok, 1 internal error, 2 usage or configuration error, 3 one or more hosts failed (for status:
    the fleet is not as intended), 4 compatibility check failed, 5 rollout halted and rolled back, 6 fleet lock
    held, 130 interrupted.
    """
    ctx.obj = AppContext(fleet_path=fleet, debug=debug)


def _register() -> None:
    from fleetctl.cli import commands

    commands.register(app)
    use_quick_commands(app)


_register()


def main() -> None:
    app(prog_name="fleetctl")
