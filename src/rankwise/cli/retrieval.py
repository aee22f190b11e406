"""``rankwise index``, ``rankwise search`` and ``rankwise quickstart``."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer

from rankwise.errors import RankwiseError

_FORMAT_HELP = "beir | smart | hotpotqa (recognised from the files when left out)"
KINDS = ("bm25", "dense")
FUSERS = ("rrf", "weighted")


def register(app: typer.Typer) -> None:
    app.command("index")(index)
    app.command("search")(search)
    app.command("quickstart")(quickstart)


def index(
    dataset: Annotated[Path, typer.Argument(help="Data set directory or file (BEIR, SMART, HotpotQA).")],
    out: Annotated[Path, typer.Option("--out", help="Directory to write the index to (replaced atomically).")],
    kind: Annotated[str, typer.Option("--kind", help="bm25 | dense")] = "bm25",
    model: Annotated[
        str | None,
        typer.Option("--model", help="Dense encoder: sentence-transformers name or path (default: all-MiniLM-L6-v2)."),
    ] = None,
    format: Annotated[str | None, typer.Option("--format", help=_FORMAT_HELP)] = None,
    batch_size: Annotated[int, typer.Option("--batch-size", help="Dense encoding batch size.")] = 64,
) -> None:
    """Index a data set's corpus with BM25 (bm25s) or a dense encoder (sentence-transformers + FAISS)."""
    from rankwise.data import load_dataset
    from rankwise.retrieve.bm25 import BM25Retriever
    from rankwise.retrieve.dense import DEFAULT_MODEL, DenseRetriever

    if kind not in KINDS:
        raise RankwiseError(f"--kind must be one of {', '.join(KINDS)}, not '{kind}'")
    if model is not None and kind != "dense":
        raise RankwiseError("--model applies to --kind dense only")
    loaded = load_dataset(dataset, format=format)
    for warning in loaded.warnings:
        typer.echo(f"warning: {warning}", err=True)
    retriever: BM25Retriever | DenseRetriever
    if kind == "bm25":
        retriever = BM25Retriever()
    else:
        retriever = DenseRetriever(model=model or DEFAULT_MODEL, batch_size=batch_size)
    retriever.index(loaded.corpus)
    retriever.save(out)
    typer.echo(f"indexed {len(loaded.corpus):,} documents ({kind}) -> {out}")


def search(
    index_dirs: Annotated[list[Path], typer.Option("--index", help="Index directory; give it twice or more to fuse.")],
    queries: Annotated[Path, typer.Option("--queries", help="Data set (its judged queries) or a queries file.")],
    out: Annotated[Path, typer.Option("--out", help="TREC run file to write.")],
    split: Annotated[str, typer.Option("--split", help="Which queries: those judged in this split.")] = "test",
    k: Annotated[int, typer.Option("--k", help="Documents per query.")] = 100,
    fuse: Annotated[str, typer.Option("--fuse", help="rrf | weighted (with two or more --index).")] = "rrf",
    weights: Annotated[
        str | None, typer.Option("--weights", help="Comma-separated weight per --index for fusion.")
    ] = None,
    rrf_k: Annotated[int, typer.Option("--rrf-k", help="RRF constant k.")] = 60,
) -> None:
    """Search one index, or several fused with RRF or weighted score fusion, and write a TREC run."""
    from rankwise.data import load_queries, write_run
    from rankwise.retrieve.fusion import fuse as fuse_runs
    from rankwise.retrieve.store import load_index

    if k < 1:
        raise RankwiseError(f"--k must be at least 1, not {k}")
    if fuse not in FUSERS:
        raise RankwiseError(f"--fuse must be one of {', '.join(FUSERS)}, not '{fuse}'")
    parsed_weights = _parse_weights(weights, len(index_dirs))
    loaded_queries = load_queries(queries, split=split)
    runs = [load_index(directory).search(loaded_queries, k=k) for directory in index_dirs]
    if len(runs) == 1:
        run = runs[0]
    else:
        options: dict[str, object] = {"weights": parsed_weights, "depth": k}
        if fuse == "rrf":
            options["k"] = rrf_k
        run = fuse_runs(runs, method=fuse, **options)
    write_run(run, out, tag="rankwise" if len(runs) == 1 else f"rankwise-{fuse}")
    typer.echo(f"searched {len(loaded_queries):,} queries -> {out}")


def _parse_weights(text: str | None, count: int) -> list[float] | None:
    if text is None:
        return None
    try:
        values = [float(part) for part in text.split(",")]
    except ValueError:
        raise RankwiseError(f"--weights must be comma-separated numbers, not '{text}'") from None
    if len(values) != count:
        raise RankwiseError(f"--weights gives {len(values)} weights for {count} --index directories")
    return values


def quickstart(
    data: Annotated[
        Path | None,
        typer.Option("--data", help="SciFact directory (default: $RANKWISE_DATA/scifact, else download BEIR's)."),
    ] = None,
    out: Annotated[Path, typer.Option("--out", help="Output directory.")] = Path("outputs/quickstart"),
    model: Annotated[
        str, typer.Option("--model", help="Dense encoder name or path.")
    ] = "sentence-transformers/all-MiniLM-L6-v2",
    as_json: Annotated[bool, typer.Option("--json", help="Print metrics.json instead of a table.")] = False,
) -> None:
    """BM25, dense and RRF hybrid on SciFact test: a table of nDCG@10 / RR@10 / R@100 and time per stage."""
    from rich.console import Console
    from rich.table import Table

    from rankwise.data import load_dataset
    from rankwise.quickstart import METRICS, resolve_scifact, run_quickstart

    console = Console(stderr=as_json)
    source = resolve_scifact(data)
    dataset = load_dataset(source, split="test")
    console.print(f"SciFact test from {source}: {len(dataset.corpus):,} documents, {len(dataset.qrels)} queries")
    metrics = run_quickstart(dataset, out, dense_model=model, log=console.print)
    if as_json:
        typer.echo(json.dumps(metrics, indent=2))
        return
    table = Table(title="rankwise quickstart — SciFact test")
    table.add_column("system")
    for name in METRICS:
        table.add_column(name, justify="right")
    table.add_column("index s", justify="right")
    table.add_column("search s", justify="right")
    for system, values in metrics.items():
        table.add_row(
            system,
            *(f"{values[name]:.4f}" for name in METRICS),
            f"{values.get('index_s', 0.0):.1f}",
            f"{values.get('search_s', values.get('fuse_s', 0.0)):.2f}",
        )
    console.print(table)
    console.print(f"runs and metrics.json written to {out}")
