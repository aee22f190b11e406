"""``rankwise train ...``: one sub-command group; each trainable stage adds its command in ``register``."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer


def register(app: typer.Typer) -> None:
    from rankwise.cli import train_retriever

    group = typer.Typer(name="train", help="Train rerankers and retrievers from a YAML config.", no_args_is_help=True)
    group.command("reranker")(reranker)
    train_retriever.register(group)
    app.add_typer(group, name="train")


def reranker(
    config: Annotated[Path, typer.Option("--config", help="YAML config (see configs/train/reranker-scifact.yaml).")],
    overrides: Annotated[
        list[str] | None,
        typer.Option("--set", help="Override a config key: --set epochs=2 (value parsed as YAML); repeatable."),
    ] = None,
) -> None:
    """Train a cross-encoder on BM25 hard negatives; rerun the same command to resume after an interruption."""
    from rankwise.cli.allocator import keep_freed_memory
    from rankwise.config.train_reranker import load_config
    from rankwise.config.yaml_keys import parse_overrides
    from rankwise.train.reranker import train_reranker

    settings = load_config(config, parse_overrides(overrides or []))
    keep_freed_memory()
    metrics = train_reranker(settings)
    typer.echo(
        f"best dev nDCG@10 {metrics['best_dev_ndcg@10']:.4f} (first stage {metrics['first_stage_dev_ndcg@10']:.4f}) "
        f"after {metrics['steps']} steps in {metrics['seconds']:.0f} s -> {metrics['model_dir']}"
    )
