"""``rankwise data ...``: inspect data sets."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer

_FORMAT_HELP = "beir | smart | hotpotqa (recognised from the files when left out)"


def register(app: typer.Typer) -> None:
    data_app = typer.Typer(help="Inspect data sets (BEIR, SMART collections, HotpotQA).", no_args_is_help=True)
    data_app.command("stats")(stats)
    app.add_typer(data_app, name="data")


def stats(
    dataset: Annotated[Path, typer.Argument(help="Data set directory or file.")],
    format: Annotated[str | None, typer.Option("--format", help=_FORMAT_HELP)] = None,
    split: Annotated[str, typer.Option("--split", help="Which judgements to count (BEIR qrels/<split>.tsv).")] = (
        "test"
    ),
    as_json: Annotated[bool, typer.Option("--json", help="Print the counts as JSON.")] = False,
) -> None:
    """Count documents, queries, judged queries and judgements; warnings go to stderr."""
    from rankwise.data import load_dataset

    loaded = load_dataset(dataset, format=format, split=split)
    for warning in loaded.warnings:
        typer.echo(f"warning: {warning}", err=True)
    counts = loaded.stats()
    if as_json:
        typer.echo(json.dumps(counts))
        return
    from rich.console import Console
    from rich.table import Table

    table = Table(title=f"{loaded.name} ({split})")
    table.add_column("count")
    table.add_column("value", justify="right")
    for key, value in counts.items():
        table.add_row(key, f"{value:,}")
    Console().print(table)
