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
    data_app.command("download")(download)
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


def download(
    name: Annotated[str, typer.Argument(help="BEIR data set name, e.g. scifact, nfcorpus, fiqa.")],
    cache_dir: Annotated[
        Path | None, typer.Option("--cache-dir", help="Cache root (default: $RANKWISE_CACHE or ~/.cache/rankwise).")
    ] = None,
    base_url: Annotated[
        str | None, typer.Option("--base-url", help="Mirror serving <name>.zip (default: BEIR's published URL).")
    ] = None,
    md5: Annotated[str | None, typer.Option("--md5", help="Expected md5 of the zip (default: BEIR's).")] = None,
) -> None:
    """Download a BEIR data set (checksum-verified, cached) and print its directory."""
    from rankwise.data.download import ensure_beir

    typer.echo(str(ensure_beir(name, cache_dir=cache_dir, base_url=base_url, md5=md5)))
