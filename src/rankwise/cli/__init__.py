"""The ``rankwise`` command line.

Each stage registers its commands from its own module (``cli/<stage>.py`` exposes ``register(app)``), so this
file stays a table of contents. Heavy libraries (torch, transformers, faiss) are imported inside commands, which
keeps ``rankwise --help`` fast. ``main(argv) -> int`` returns the exit code instead of exiting, so tests can call it.

Exit codes: 0 done; 1 an OS error (one line naming the path); 2 a usage error or a :class:`RankwiseError`;
130 interrupted (Ctrl-C), with one line saying whether re-running the command resumes.
"""

from __future__ import annotations

import errno
import os
import sys
from collections.abc import Sequence
from typing import Annotated

import typer

from rankwise.errors import RankwiseError

# What re-running an interrupted command does; a command missing here starts over.
RESUMES = {
    "run": "re-run the same command to resume from the last completed stage",
    "rag": "re-run the same command to resume: questions already answered are skipped",
    "index": "with --kind dense --work-dir, re-run the same command to resume from the finished shards; "
    "otherwise it starts over",
    "train reranker": "re-run the same command to resume from the last checkpoint",
    "train retriever": "re-run the same command to resume from the last checkpoint",
    "rankrag train": "re-run the same command to resume from the last checkpoint",
    "rankrag sweep": "re-run the same command to resume: finished models are kept",
    "rankrag eval": "re-run the same command to resume: finished models are cached",
}


def build_app() -> typer.Typer:
    from rankwise.cli import data, evaluate, experiment, generate, rankrag, rerank, retrieval, serve, train

    app = typer.Typer(
        name="rankwise",
        help="Retrieve, rerank, answer with citations, train and evaluate — ranking is the lever.",
        no_args_is_help=True,
        add_completion=False,
        pretty_exceptions_enable=False,
    )
    app.callback()(_root)
    for module in (data, retrieval, evaluate, rerank, generate, train, rankrag, experiment, serve):
        module.register(app)
    return app


def _print_version(value: bool) -> None:
    if value:
        from rankwise import __version__

        typer.echo(f"rankwise {__version__}")
        raise typer.Exit()


def _root(
    version: Annotated[
        bool, typer.Option("--version", callback=_print_version, is_eager=True, help="Print the version and exit.")
    ] = False,
) -> None:
    # Root options only (the help text is the app's); each command does its own work.
    del version


def command_name(app: typer.Typer, args: Sequence[str]) -> str:
    """The (sub)command ``args`` name, e.g. ``"train reranker"``; ``""`` when they name none."""
    command = typer.main.get_command(app)
    words: list[str] = []
    for arg in args:
        commands = getattr(command, "commands", {})
        if arg not in commands:
            break
        words.append(arg)
        command = commands[arg]
    return " ".join(words)


def interrupted(app: typer.Typer, args: Sequence[str]) -> str:
    """The one line printed on Ctrl-C: which command stopped and whether re-running it resumes."""
    name = command_name(app, args)
    what = RESUMES.get(name, f"re-running it starts over (these resume: {', '.join(RESUMES)})")
    return f"rankwise: interrupted `{f'rankwise {name}'.strip()}`; {what}"


def os_error(exc: OSError) -> str:
    """One line for an OS error: the path(s) it names and the problem (``strerror``), no traceback."""
    problem = exc.strerror or str(exc)
    paths = [str(os.fsdecode(p)) for p in (exc.filename, exc.filename2) if p is not None]
    return f"rankwise: error: {' -> '.join(paths)}: {problem}" if paths else f"rankwise: error: {problem}"


def main(argv: Sequence[str] | None = None) -> int:
    """Run the CLI on ``argv`` (default: ``sys.argv[1:]``) and return the exit code."""
    app = build_app()
    args = list(sys.argv[1:] if argv is None else argv)
    try:
        # Non-standalone typer returns the status instead of exiting: 130 for Ctrl-C, else a typer.Exit's code.
        status = app(args=args, prog_name="rankwise", standalone_mode=False)
    except RankwiseError as exc:
        typer.echo(f"rankwise: error: {exc}", err=True)
        return 2
    except typer.Exit as exc:
        return int(exc.exit_code or 0)
    except typer.Abort:
        typer.echo("aborted", err=True)
        return 130
    except KeyboardInterrupt:  # typer turns one inside a command into status 130; this is one outside it
        status = 130
    except typer.TyperException as exc:  # usage errors (typer's own click): Usage line + one "Error:" line
        show = getattr(exc, "show", None)
        if show is None:
            typer.echo(f"Error: {exc.format_message()}", err=True)
        else:
            show()
        return exc.exit_code
    except OSError as exc:
        if exc.errno == errno.EPIPE:  # the reader went away (``rankwise ... | head``): stop quietly
            _silence_stdout()
            return 1
        typer.echo(os_error(exc), err=True)
        return 1
    if status == 130:
        typer.echo(interrupted(app, args), err=True)
    if isinstance(status, int) and not isinstance(status, bool):
        return status
    return 0


def _silence_stdout() -> None:
    # Python's recipe for SIGPIPE: point stdout at devnull so the flush at exit does not raise again.
    try:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
    except (OSError, ValueError):  # stdout has no file descriptor (captured): nothing to flush at exit
        pass


def run() -> None:
    """Console-script entry point."""
    raise SystemExit(main())
