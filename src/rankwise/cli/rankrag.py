"""``rankwise rankrag ...``: build the instruction blend, train one model on it, run the ranking-fraction study."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from rankwise.config.yaml_keys import parse_overrides

SetOpt = Annotated[
    list[str] | None,
    typer.Option(
        "--set",
        help="Override a config key (YAML value), repeatable: train: --set max_steps=100 --set blend.size=800; "
        "sweep and eval: --set train.max_steps=100 --set eval.scifact_queries=20.",
    ),
]


def register(app: typer.Typer) -> None:
    group = typer.Typer(
        name="rankrag",
        help="RankRAG: one LLM tuned to rerank (P(True)) and to answer — blend, train, ranking-fraction study.",
        no_args_is_help=True,
    )
    from rankwise.cli.rankrag_blend import build_blend

    group.command("build-blend")(build_blend)
    group.command("train")(train)
    group.command("sweep", context_settings={"allow_extra_args": True})(sweep)
    group.command("eval")(evaluate)
    app.add_typer(group, name="rankrag")


def train(
    config: Annotated[Path, typer.Option("--config", help="YAML config (see configs/rankrag/train.yaml).")],
    overrides: SetOpt = None,
) -> None:
    """LoRA-tune a causal LM on the RankRAG blend (Stage-I optional); rerun the same command to resume."""
    from rankwise.cli.allocator import keep_freed_memory
    from rankwise.config.rankrag_train import load_train_config
    from rankwise.rankrag.train import train_rankrag

    settings = load_train_config(config, parse_overrides(overrides or []))
    keep_freed_memory()
    metrics = train_rankrag(settings)
    done = " (already trained)" if metrics.get("already_done") else ""
    typer.echo(
        f"{metrics['steps']} steps, loss {metrics['first_loss']} -> {metrics['last_loss']}, "
        f"{metrics['seconds']:.0f} s{done} -> {metrics['model_dir']}"
    )


def sweep(
    ctx: typer.Context,
    config: Annotated[Path, typer.Option("--config", help="YAML config (see configs/rankrag/sweep.yaml).")],
    fractions: Annotated[
        float | None,
        typer.Option("--fractions", help="Ranking fractions to train, space-separated: --fractions 0 0.05 0.25 1.0."),
    ] = None,
    out: Annotated[Path | None, typer.Option("--out", help="Output directory (default: the config's).")] = None,
    overrides: SetOpt = None,
) -> None:
    """Train one model per ranking fraction at a fixed step budget, evaluate each (SciFact reranking, held-out
    HotpotQA answering, no-rerank ablation) and the zero-shot model; writes sweep.json/.md/.png. Resumable."""
    from rankwise.cli.allocator import keep_freed_memory
    from rankwise.errors import RankwiseError
    from rankwise.rankrag.sweep import load_sweep_config, run_sweep

    settings = parse_overrides(overrides or [])
    if ctx.args and fractions is None:
        raise RankwiseError(f"unexpected arguments: {' '.join(ctx.args)}")
    if fractions is not None:
        try:  # click takes one value per option: the rest of the list arrives as extra arguments
            settings["fractions"] = [fractions, *(float(value) for value in ctx.args)]
        except ValueError as exc:
            raise RankwiseError(f"--fractions takes numbers: {' '.join(ctx.args)}") from exc
    if out is not None:
        settings["output_dir"] = str(out)
    sweep_config = load_sweep_config(config, settings)
    keep_freed_memory()  # also reaches the spawned training / evaluation workers, through the environment
    results = run_sweep(sweep_config)
    typer.echo((Path(results["config"]["output_dir"]) / "sweep.md").read_text(encoding="utf-8"))


def evaluate(
    config: Annotated[
        Path, typer.Option("--config", help="Sweep YAML: its eval and blend (prompt) settings are used.")
    ],
    models: Annotated[
        list[str],
        typer.Option(
            "--model",
            help="A trained model/ or adapter/ directory, a trainer checkpoint (…/checkpoints/checkpoint-N) "
            "or 'smollm2' (zero-shot); repeat it to compare several, e.g. every checkpoint of one run.",
        ),
    ],
    out: Annotated[
        Path | None, typer.Option("--out", help="Output directory (default: <config output_dir>/eval).")
    ] = None,
    no_rerank: Annotated[
        bool, typer.Option("--no-rerank", help="Also answer HotpotQA in BM25 order (the no-reranking ablation).")
    ] = False,
    overrides: SetOpt = None,
) -> None:
    """Evaluate trained RankRAG models as the study does (SciFact P(True) reranking, held-out HotpotQA answering)
    without training; writes eval.json/.md (and eval.png for several models). Cached per model: rerun to resume."""
    from rankwise.cli.allocator import keep_freed_memory
    from rankwise.rankrag.sweep import load_sweep_config, run_eval

    sweep_config = load_sweep_config(config, parse_overrides(overrides or []))
    target = out if out is not None else Path(sweep_config.output_dir) / "eval"
    keep_freed_memory()
    run_eval(sweep_config, models, target, no_rerank=no_rerank)
    typer.echo((target / "eval.md").read_text(encoding="utf-8"))
