"""The typer application, global options and error handling shared by every command."""

from __future__ import annotations

import logging
import os
import sys
import traceback
from pathlib import Path
from typing import Optional

import typer

from osnas import distributed
from osnas.console import err, labelled, out, warn
from osnas.errors import OsnasError
from osnas.plugins import PluginFailure, load_builtins, load_plugins

app = typer.Typer(
    name="osnas",
    help="One-shot neural architecture search: train a supernet, search it under a hardware budget, "
    "train the found network from scratch.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)


class State:
    """Options of the top-level callback, read by the commands."""

    debug: bool = False
    plugin_failures: list[PluginFailure] = []
    plugin_dirs: list[Path] = []


def report_plugin_failures(failures: list[PluginFailure]) -> None:
    for failure in failures:
        warn(f"could not import user component {failure.source}: {failure.error}")
        if State.debug:
            err.print(failure.details, highlight=False)


@app.callback()
def _root(
    debug: bool = typer.Option(False, "--debug", help="Show full tracebacks on errors."),
    plugins: Optional[list[Path]] = typer.Option(
        None, "--plugins", help="Directory of user components (default: ./generated). Repeatable."
    ),
) -> None:
    """Load built-in components, then user components from generated/ and the osnas.plugins entry points."""
    State.debug = debug or bool(os.environ.get("OSNAS_DEBUG"))
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    for handler in logging.getLogger().handlers:  # run logs (log.txt) take INFO; the console only warnings
        handler.setLevel(logging.WARNING)
    load_builtins()
    dirs = list(plugins) if plugins else [Path.cwd() / "generated"]
    State.plugin_dirs = [Path(d).resolve() for d in dirs]
    State.plugin_failures = load_plugins(dirs)
    report_plugin_failures(State.plugin_failures)


def fail(message: str) -> None:
    """Print an error in one message (verbatim: it may quote the user's text) and exit with code 2."""
    labelled("error:", "bold red", message)
    raise SystemExit(2)


def user_frame(exc: BaseException) -> traceback.FrameSummary | None:
    """The innermost frame of ``exc``'s traceback that lies in a loaded plugin directory, if any."""
    current: BaseException | None = exc
    while current is not None:  # an osnas wrapper may re-raise: look through the causes too
        frames = [frame for frame in traceback.extract_tb(current.__traceback__)
                  if any(Path(frame.filename).resolve().is_relative_to(root) for root in State.plugin_dirs)]
        if frames:
            return frames[-1]
        current = current.__cause__ or current.__context__
    return None


def main() -> None:
    """Console-script entry point: user errors become one message and exit code 2.

    Usage errors are left to typer's standalone mode (one message, their own exit code 2), so no
    exception class of the command-line parser is named here: typer >= 0.29 ships its own copy of it.
    """
    debug = "--debug" in sys.argv or bool(os.environ.get("OSNAS_DEBUG"))
    try:
        app(standalone_mode=True)
    except OsnasError as exc:
        if debug:
            raise
        fail(str(exc))
    except KeyboardInterrupt:
        err.print("interrupted", style="yellow")
        raise SystemExit(130)
    except SystemExit:
        distributed.shutdown()
        raise
    except Exception as exc:
        if debug:
            raise
        frame = user_frame(exc)
        if frame is not None:  # the user's own code failed: theirs to fix, like any bad input
            fail(f"error in user component {frame.filename}:{frame.lineno}: {type(exc).__name__}: {exc} "
                 "(run with --debug for the traceback)")
        labelled("internal error:", "bold red", f"{type(exc).__name__}: {exc} (run with --debug for the traceback)")
        raise SystemExit(1)
