"""``rankwise train retriever --config CONFIG``: dense-encoder training (:mod:`rankwise.train.retriever`).

``register(group)`` adds the command to the ``train`` group (called from :mod:`rankwise.cli.train`).
Under ``torchrun`` the same command trains with DDP (one process per GPU, or CPU processes on gloo)::

    torchrun --nproc-per-node 2 -m rankwise.train.retriever --config configs/train/retriever-scifact.yaml
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer


def register(group: typer.Typer) -> None:
    """Add ``retriever`` to the ``train`` group."""
    group.command("retriever")(retriever)


def retriever(
    config: Annotated[Path, typer.Option("--config", help="YAML config (see configs/train/retriever-scifact.yaml).")],
    overrides: Annotated[
        list[str] | None,
        typer.Option("--set", help="Override a config key: --set freeze_base=true (value parsed as YAML); repeatable."),
    ] = None,
) -> None:
    """Train a dense encoder (base + projection head) with in-batch and BM25 hard negatives; rerun to resume."""
    from rankwise.cli.allocator import keep_freed_memory
    from rankwise.config.train_retriever import load_config
    from rankwise.config.yaml_keys import parse_overrides
    from rankwise.train.retriever import train_retriever

    settings = load_config(config, parse_overrides(overrides or []))
    keep_freed_memory()
    summary = train_retriever(settings)
    before, after = summary["before"], summary["after"]
    if "dev_ndcg@10" in after:
        typer.echo(f"dev nDCG@10 {before['dev_ndcg@10']:.4f} -> {after['dev_ndcg@10']:.4f}")
    if summary.get("wise_ft"):
        wise = summary["wise_ft"]
        curve = ", ".join(f"{alpha} {value:.4f}" for alpha, value in wise["dev_ndcg@10"].items())
        typer.echo(
            f"WiSE-FT alpha {wise['alpha']} ({wise['rule']})" + (f"; dev nDCG@10 by alpha: {curve}" if curve else "")
        )
    for key in ("mean_pairwise_cosine", "effective_rank"):
        typer.echo(f"{key} {before['isotropy'][key]:.4f} -> {after['isotropy'][key]:.4f}")
    typer.echo(
        f"{summary['steps']} steps on {summary['world_size']} process(es) in {summary['seconds']:.0f} s "
        f"-> {summary['model_dir']}"
    )
