"""The ``rankwise`` command line.

Each stage registers its commands from its own module (``cli/<stage>.py`` exposes ``register(app)``), so this
file stays a table of contents. Heavy libraries (torch, transformers, faiss) are imported inside commands, which
keeps ``rankwise --help`` fast. ``main(argv) -> int`` returns the exit code instead of exiting, so tests can call it.
"""

from __future__ import annotations

import sys
from collections.abc import Sequence

import typer

from rankwise.errors import RankwiseError


def build_app() -> typer.Typer:
    from rankwise.cli import data, evaluate, experiment, generate, rankrag, rerank, retrieval, serve, train

    app = typer.Typer(
        name="rankwise",
        help="Retrieve, rerank, answer with citations, train and evaluate — ranking is the lever.",
        no_args_is_help=True,
        add_completion=False,
        pretty_exceptions_enable=False,
    )
    for module in (data, retrieval, evaluate, rerank, generate, train, rankrag, experiment, serve):
        module.register(app)
    return app


def main(argv: Sequence[str] | None = None) -> int:
    """Run the CLI on ``argv`` (default: ``sys.argv[1:]``) and return the exit code."""
    app = build_app()
    args = list(sys.argv[1:] if argv is None else argv)
    try:
        app(args=args, prog_name="rankwise", standalone_mode=False)
    except RankwiseError as exc:
        typer.echo(f"error: {exc}", err=True)
        return 2
    except typer.Exit as exc:
        return int(exc.exit_code or 0)
    except typer.Abort:
        typer.echo("aborted", err=True)
        return 130
    except Exception as exc:  # click usage errors arrive here in non-standalone mode
        import click

        if isinstance(exc, click.ClickException):
            exc.show()
            return exc.exit_code
        raise
    return 0


def run() -> None:
    """Console-script entry point."""
    raise SystemExit(main())
