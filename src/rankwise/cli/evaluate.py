"""``rankwise eval``: score a TREC run against qrels with IR metrics named as strings.

Metrics can be given in any of these forms (all equivalent)::

    rankwise eval --run run.trec --qrels data/scifact --metrics nDCG@10 RR@10 R@100
    rankwise eval --run run.trec --qrels data/scifact --metrics nDCG@10 --metrics RR@10 --metrics R@100
    rankwise eval --run run.trec --qrels data/scifact --metrics nDCG@10,RR@10,R@100

(click options take one value each, so names after the first are collected as trailing arguments.)
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer

DEFAULT_METRICS = ("nDCG@10", "RR@10", "R@100")


def register(app: typer.Typer) -> None:
    app.command("eval")(eval_command)


def split_metrics(values: list[str]) -> list[str]:
    """Split each value on top-level commas (``nDCG(gains={0:0,1:1})@10`` stays whole); drop blanks."""
    names: list[str] = []
    for value in values:
        depth, start = 0, 0
        for i, char in enumerate(value):
            if char in "([{":
                depth += 1
            elif char in ")]}":
                depth -= 1
            elif char == "," and depth == 0:
                names.append(value[start:i])
                start = i + 1
        names.append(value[start:])
    return [name.strip() for name in names if name.strip()]


def eval_command(
    run: Annotated[Path, typer.Option("--run", help="TREC run file (qid Q0 docid rank score tag).")],
    qrels: Annotated[
        Path, typer.Option("--qrels", help="Qrels file (TREC or BEIR TSV), or a data set directory/file.")
    ],
    metrics: Annotated[
        list[str] | None,
        typer.Option("--metrics", "-m", help="Metric names, e.g. nDCG@10 RR@10 R@100 AP@100 P@10 AP."),
    ] = None,
    more_metrics: Annotated[
        list[str] | None, typer.Argument(metavar="[METRIC]...", help="More metric names (after --metrics).")
    ] = None,
    split: Annotated[str, typer.Option("--split", help="Which judgements of a data set (qrels/<split>.tsv).")] = (
        "test"
    ),
    missing: Annotated[
        str,
        typer.Option(
            "--missing",
            help="skip: average over queries in both run and qrels (trec_eval, BEIR); "
            "zero: judged queries absent from the run score 0 (trec_eval -c).",
        ),
    ] = "skip",
    as_json: Annotated[
        bool,
        typer.Option(
            "--json",
            help='Print {"<metric>": mean, ..., "queries": {"evaluated": n, "missing_from_run": n, '
            '"unjudged_in_run": n, "missing": "skip"|"zero"}, "per_query": {metric: {qid: value}}}.',
        ),
    ] = False,
) -> None:
    """Evaluate a run against relevance judgements (equal scores rank by the run file's rank column).

    Metrics: --metrics nDCG@10 RR@10, repeated --metrics, or --metrics nDCG@10,RR@10 (default: nDCG@10
    RR@10 R@100).
    """
    from rankwise.data import load_qrels, read_run
    from rankwise.evaluate import evaluate, evaluate_per_query

    names = split_metrics([*(metrics or []), *(more_metrics or [])]) or list(DEFAULT_METRICS)
    run_data = read_run(run)
    qrels_data = load_qrels(qrels, split=split)
    means = evaluate(run_data, qrels_data, names, missing=missing)  # type: ignore[arg-type]
    shared = len(set(run_data) & set(qrels_data))
    absent = len(set(qrels_data) - set(run_data))
    counts = {
        "evaluated": len(qrels_data) if missing == "zero" else shared,
        "missing_from_run": absent,  # judged queries the run lacks: not counted (skip) or counted as 0 (zero)
        "unjudged_in_run": len(set(run_data) - set(qrels_data)),
        "missing": missing,
    }
    note = ""
    if absent and missing == "skip":
        note = f"note: {absent} judged queries are not in the run and were not counted (see --missing)"

    if as_json:
        per_query = evaluate_per_query(run_data, qrels_data, names, missing=missing)  # type: ignore[arg-type]
        typer.echo(json.dumps({**means, "queries": counts, "per_query": per_query}))
        if note:
            typer.echo(note, err=True)
        return

    from rich.console import Console
    from rich.table import Table

    table = Table(title=f"{run.name} ({counts['evaluated']} queries)")
    table.add_column("metric")
    table.add_column("mean", justify="right")
    for name, value in means.items():
        table.add_row(name, f"{value:.4f}")
    Console().print(table)
    if note:
        typer.echo(note, err=True)
