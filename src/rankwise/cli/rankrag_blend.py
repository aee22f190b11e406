"""``rankwise rankrag build-blend``: build the RankRAG instruction blend from a YAML config and print its mix.

The command function is registered by the ``rankrag`` group (``cli/rankrag.py``); it is not a group itself.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import typer


def build_blend(
    config: Annotated[Path, typer.Option("--config", help="Blend YAML config (see configs/rankrag/blend.yaml).")],
    out: Annotated[Path, typer.Option("--out", help="Where to write the blend (JSON lines, written atomically).")],
    overrides: Annotated[
        list[str] | None,
        typer.Option(
            "--set", help="Override a config key: --set ranking_fraction=0.25, --set scifact.cap=500 (YAML value)."
        ),
    ] = None,
) -> None:
    """Build the blend (QA + a fraction of ranking examples) and print counts per task and source."""
    from rankwise.config.rankrag_blend import load_blend_config
    from rankwise.config.yaml_keys import parse_overrides
    from rankwise.rankrag.blend import build_blend as build
    from rankwise.rankrag.blend import write_blend

    settings = load_blend_config(config, parse_overrides(overrides or []))
    examples, summary = build(settings, show_progress=True)
    write_blend(examples, out)
    print_summary(summary)
    typer.echo(f"{len(examples)} examples -> {out} ({summary['seconds']:.1f} s)")


def print_summary(summary: dict[str, Any]) -> None:
    """The mix as a rich table: one row per source, one column per task, plus the totals and the notes."""
    from rich.console import Console
    from rich.table import Table

    tasks = list(summary["tasks"])
    table = Table(title=f"RankRAG blend: {summary['size']} examples (asked {summary['size_requested']})")
    table.add_column("source")
    for task in tasks:
        table.add_column(task, justify="right")
    table.add_column("total", justify="right")
    for source, count in summary["sources"].items():
        row = summary["by_source_task"][source]
        table.add_row(source, *(str(row.get(task, 0)) for task in tasks), str(count))
    table.add_row("all", *(str(summary["tasks"][task]) for task in tasks), str(summary["size"]), style="bold")
    table.add_row(
        "mean prompt tokens",
        *(f"{summary['mean_prompt_tokens_by_task'][t]:.0f}" for t in tasks),
        f"{summary['mean_prompt_tokens']:.0f}",
    )
    console = Console()
    console.print(table)
    labels = summary["labels"]
    console.print(
        f"ranking share {summary['ranking_share']:.3f} (asked {summary['ranking_fraction_requested']}); "
        f"ranking labels True {labels.get('True', 0)} / False {labels.get('False', 0)}; "
        f"held out: {', '.join(f'{k} {v}' for k, v in summary['heldout'].items()) or 'none'}"
    )
    for note in summary["notes"]:
        console.print(f"note: {note}", markup=False)
