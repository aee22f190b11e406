"""``rankwise run``, ``rankwise compare``, ``rankwise check`` and ``rankwise report``: experiments end to end.

::

    rankwise run -e configs/scifact-hybrid.yaml -d scifact --set rerank.top_n=50
    rankwise compare outputs/scifact-bm25/scifact outputs/scifact-hybrid/scifact --markdown table.md
    rankwise compare outputs/scifact-hybrid/scifact:fuse outputs/scifact-hybrid/scifact:rerank
    rankwise check outputs/scifact-hybrid --expected configs/scifact-hybrid.expected.yaml
    rankwise report outputs/scifact-bm25 outputs/scifact-hybrid --html report.html
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from rankwise.errors import RankwiseError

if TYPE_CHECKING:
    from rich.console import Console
    from rich.table import Table

    from rankwise.experiment.outputs import Output


def register(app: typer.Typer) -> None:
    app.command("run")(run)
    app.command("compare")(compare)
    app.command("check")(check)
    app.command("report")(report)


def run(
    experiment: Annotated[Path, typer.Option("--experiment", "-e", help="Experiment config (YAML).")],
    datasets: Annotated[
        list[str] | None,
        typer.Option(
            "--dataset",
            "-d",
            help="Data set: a path, a folder of $RANKWISE_DATA, a BEIR name, or mtrag:<domain>. Repeatable; "
            "default: the config's datasets.",
        ),
    ] = None,
    overrides: Annotated[
        list[str] | None,
        typer.Option("--set", help="Override a config key: --set rerank.top_n=50 (value parsed as YAML); repeatable."),
    ] = None,
    old_overrides: Annotated[
        list[str] | None,
        typer.Option("--override", "-o", help="Deprecated spelling of --set (kept working).", hidden=True),
    ] = None,
    out: Annotated[Path, typer.Option("--out", help="Output root: writes <out>/<experiment>/<dataset>/.")] = Path(
        "outputs"
    ),
    quiet: Annotated[bool, typer.Option("--quiet", "-q", help="No progress bars.")] = False,
) -> None:
    """Run an experiment: the configured stages on each data set, one metrics.json per data set.

    Stages whose config and inputs are unchanged are reused (content hashes in stages.json); an interrupted
    run resumes from its last completed stage. A run works in <dataset>.partial/ and replaces <dataset>/ only
    when it finishes, so a failed run leaves the last good results as they were.
    """
    from rich.console import Console

    from rankwise.config.experiment import load_config
    from rankwise.experiment import load_output, run_experiment

    console = Console(stderr=True)
    if old_overrides:
        typer.echo("note: -o/--override is deprecated; use --set KEY=VALUE (the same syntax)", err=True)
    config = load_config(experiment, [*(old_overrides or []), *(overrides or [])])

    def log(message: str) -> None:
        console.print(message, markup=False, highlight=False, soft_wrap=True)

    folders = run_experiment(config, datasets or [], out_root=out, show_progress=not quiet, log=log)
    for folder in folders:
        output = load_output(folder)
        _console().print(_summary(output, [s for s in output.stages if s != "generate"], "ranking"))
        if "generate" in output.stages:
            _console().print(_summary(output, ["generate"], "answers"))


def _summary(output: Output, stages: list[str], what: str) -> Table:
    from rich.table import Table

    metrics = list(dict.fromkeys(m for s in stages for m in output.stage(s)["metrics"]))
    queries = output.metrics["counts"].get("judged_queries", "?")
    table = Table(title=f"{output.label}: {what} ({queries} queries)")
    table.add_column("stage")
    for name in metrics:
        table.add_column(name, justify="right")
    table.add_column("seconds", justify="right")
    for stage in stages:
        entry = output.stage(stage)
        seconds = entry.get("timing", {}).get("total_s")
        table.add_row(
            stage,
            *(f"{entry['metrics'][m]:.4f}" if m in entry["metrics"] else "" for m in metrics),
            "" if seconds is None else f"{seconds:.1f}",
        )
    return table


def compare(
    outputs: Annotated[
        list[str],
        typer.Argument(help="Output folders (or FOLDER:STAGE); the first is the baseline. Experiment folders expand."),
    ],
    metrics: Annotated[
        list[str] | None, typer.Option("--metric", "-m", help="Metric to compare (repeatable; default: all shared).")
    ] = None,
    alpha: Annotated[float, typer.Option("--alpha", help="Significance level.")] = 0.05,
    correction: Annotated[str, typer.Option("--correction", help="none | bonferroni | holm")] = "holm",
    permutations: Annotated[int, typer.Option("--permutations", help="Random sign flips (exact when n <= 16).")] = (
        10_000
    ),
    seed: Annotated[int, typer.Option("--seed", help="Seed of the permutation test.")] = 0,
    as_json: Annotated[bool, typer.Option("--json", help="Print the tables as JSON.")] = False,
    markdown: Annotated[Path | None, typer.Option("--markdown", help="Also write the tables as Markdown.")] = None,
) -> None:
    """Compare systems per metric with paired t-tests and randomisation tests over queries.

    Systems are compared within each data set (experiment folders expand to one output per data set).
    """
    from rich.table import Table

    from rankwise.data.files import atomic_write_text
    from rankwise.experiment.compare import (
        HEADERS,
        cells,
        compare_systems,
        dataset_warnings,
        group_by_dataset,
        to_json,
        to_markdown,
    )
    from rankwise.experiment.outputs import load_systems

    groups = group_by_dataset(load_systems(outputs))
    results = {
        dataset: compare_systems(systems, metrics, alpha, correction, permutations, seed)
        for dataset, systems in groups.items()
    }
    warnings = {dataset: dataset_warnings(systems) for dataset, systems in groups.items()}
    for dataset, notes in warnings.items():  # stderr: the JSON on stdout stays parseable
        for note in notes:
            typer.echo(f"warning: {dataset}: {note}", err=True)
    if markdown is not None:
        text = "\n".join(
            f"### {dataset}\n\n"
            + "".join(f"> warning: {note}\n\n" for note in warnings[dataset])
            + f"{to_markdown(t, alpha, correction)}\n"
            for dataset, t in results.items()
        )
        atomic_write_text(markdown, text)
    if as_json:
        payload = {dataset: to_json(t) for dataset, t in results.items()}
        typer.echo(json.dumps(payload if len(payload) > 1 else next(iter(payload.values())), indent=2))
        return
    console = _console()
    for dataset, tables in results.items():
        for name, rows in tables.items():
            table = Table(title=f"{dataset} — {name} ({rows[0].queries} queries)")
            width = max(len(row.label) for row in rows)
            for header in HEADERS:
                if header == "system":
                    table.add_column(header, min_width=width, no_wrap=True)
                else:
                    table.add_column(header, justify="right")
            for row in rows:
                table.add_row(*cells(row))
            console.print(table)
    console.print(
        f"▲/▼: paired randomisation test p < {alpha} vs the first system ({correction} correction); "
        "W/T/L = queries better/equal/worse."
    )


def check(
    output: Annotated[Path, typer.Argument(help="Experiment folder or one data set's output folder.")],
    expected: Annotated[Path, typer.Option("--expected", help="Expected ranges (YAML), e.g. configs/*.expected.yaml.")],
    write: Annotated[
        float | None,
        typer.Option("--write", help="Instead of checking, write --expected from OUTPUT's metrics +- this tolerance."),
    ] = None,
) -> None:
    """Fail (non-zero exit status) when a metric falls outside its expected range or is missing."""
    from rich.table import Table

    from rankwise.data.files import atomic_write_text
    from rankwise.experiment.check import check as run_check
    from rankwise.experiment.check import expected_from

    if write is not None:
        note = f"written by: rankwise check {output} --expected {expected.name} --write {write}"
        atomic_write_text(expected, expected_from(output, write, note))
        typer.echo(f"expected ranges (+-{write}) written to {expected}")
        return

    outcomes = run_check(output, expected)
    table = Table(title=f"rankwise check {output} against {expected}")
    for header in ("data set", "stage", "metric", "value", "expected", "result"):
        table.add_column(header)
    for outcome in outcomes:
        exp = outcome.expectation
        value = "" if outcome.value is None else f"{outcome.value:.4f}"
        result = "ok" if outcome.passed else f"FAIL {outcome.problem}".strip()
        table.add_row(exp.dataset, exp.stage, exp.metric, value, exp.describe(), result)
    _console().print(table)
    failed = sum(1 for o in outcomes if not o.passed)
    if failed:
        raise RankwiseError(f"{failed} of {len(outcomes)} expectations in {expected} failed")
    typer.echo(f"all {len(outcomes)} expectations hold")


def report(
    outputs: Annotated[list[Path], typer.Argument(help="Output folders or experiment folders.")],
    html_path: Annotated[Path, typer.Option("--html", help="HTML file to write (self-contained).")],
    examples: Annotated[int, typer.Option("--examples", help="Before/after rankings shown per output.")] = 3,
    title: Annotated[str | None, typer.Option("--title", help="Page title.")] = None,
) -> None:
    """Write one self-contained HTML report: tables, significance, plots and example rankings."""
    from rankwise.experiment.report import write_report

    path = write_report(outputs, html_path, examples=examples, title=title)
    typer.echo(f"report written to {path}")


def _console() -> Console:
    """stdout console; piped output gets 160 columns instead of rich's 80, so tables are not truncated."""
    from rich.console import Console

    console = Console()
    return console if console.is_terminal else Console(width=160)
