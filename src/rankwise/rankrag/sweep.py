"""The RankRAG ranking-fraction study: one model per ranking fraction, same step budget, same evaluation.

``run_sweep(config)`` — for each fraction: build the blend with that ``ranking_fraction`` (BLEND's builder), train
(:func:`rankwise.rankrag.train.train_rankrag`, ``max_steps`` fixed), then evaluate the tuned model:

- ranking: P(True) reranking of BM25's top-``depth`` (20) for the first ``scifact_queries`` (50) SciFact *test*
  queries, nDCG@10 and RR@10 — what ``python benchmarks/rerank.py llm-zero-shot --queries 50 --depth 20``
  computes, with passages cut to the blend's ``max_passage_tokens``;
- answering: the held-out HotpotQA questions (``rankwise.data.hotpotqa.hotpotqa_split``, never in any blend),
  distractor setting, run by the experiment runner (:mod:`rankwise.experiment.rag`, as ``rankwise rag`` runs it)
  with the tuned model as both reranker and generator (``kind: rankrag`` sections with the blend's prompt
  settings), top-``k`` shown: EM/F1 and supporting-paragraph F1;
- the "no reranking" ablation: the same questions, BM25 order, answered by the tuned model.

The zero-shot base model is evaluated the same way; fraction 0 is the "Stage-II without ranking data" ablation.
Writes ``sweep.json``, ``sweep.md`` and ``sweep.png`` (rewritten after every model). Resumable at every level:
a trained model is not retrained, each evaluation is cached in its own file, and HotpotQA runs resume
question-chunk by chunk — rerunning the command does only what is missing.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from rankwise.config.rankrag_train import RankRAGTrainConfig, blend_config
from rankwise.config.yaml_config import build, expand_setting, read_mapping
from rankwise.data.files import atomic_write_text
from rankwise.errors import RankwiseError
from rankwise.rankrag.report import curve_plot, markdown_table, plot
from rankwise.rankrag.study_eval import Evaluator
from rankwise.rankrag.train import train_rankrag

logger = logging.getLogger(__name__)


class SweepEval(BaseModel):
    model_config = ConfigDict(extra="forbid")

    scifact: str = Field("${RANKWISE_DATA}/scifact", description="BEIR SciFact directory (test split evaluated)")
    scifact_queries: int = Field(50, ge=1, description="first N judged test queries (SciFact test has 300)")
    depth: int = Field(20, ge=1, description="BM25 documents reranked per query")
    hotpotqa: str | None = Field(
        "${RANKWISE_DATA}/hotpotqa-train100/hotpotqa_train.json", description="HotpotQA file; null: skip answering"
    )
    hotpotqa_limit: int | None = Field(None, ge=1, description="first N held-out questions only")
    mtrag_domain: str | None = Field(
        None,
        description="also answer this MT-RAG domain's first mtrag_per_label UNANSWERABLE and ANSWERABLE generation "
        "tasks ($RANKWISE_DATA/mtrag, pooled corpus, BM25 then the model's P(True)) and report how often the model "
        "abstains on each; null: skip",
    )
    mtrag_per_label: int = Field(20, ge=1, description="tasks of each label answered (file order)")
    k: int = Field(5, ge=1, description="passages given to the generator")
    max_new_tokens: int = Field(48, ge=1)
    batch_size: int = Field(4, ge=1, description="prompts per generation batch")
    rerank_batch_size: int = Field(16, ge=1)
    no_rerank: bool | list[float] = Field(True, description="no-reranking ablation: for every fraction, or a list")
    zero_shot: bool = Field(True, description="also evaluate the untuned base model")


class SweepConfig(BaseModel):
    model_config = ConfigDict(extra="forbid")

    output_dir: str
    fractions: list[float] = Field([0.0, 0.05, 0.1, 0.25, 1.0], min_length=1)
    train: dict[str, Any] = Field(default_factory=dict, description="RankRAGTrainConfig keys (not output_dir/blend)")
    blend: dict[str, Any] = Field(description="BlendConfig section; ranking_fraction is set per model")
    eval: SweepEval = SweepEval()


def load_sweep_config(path: str | Path, overrides: dict[str, Any] | None = None) -> SweepConfig:
    path, text, raw = read_mapping(path, overrides)
    if isinstance(raw.get("output_dir"), str):
        raw["output_dir"] = expand_setting(path, text, "output_dir", raw["output_dir"])
    config = build(SweepConfig, raw, path, text)
    for key in ("output_dir", "blend", "blend_path"):
        if key in config.train:
            raise RankwiseError(f"{path}: 'train.{key}' is set by the sweep; remove it")
    blend_config(config.blend, path, text)
    return config


def fraction_name(fraction: float) -> str:
    return f"fraction-{fraction:g}"


def train_config(config: SweepConfig, fraction: float) -> RankRAGTrainConfig:
    out = Path(config.output_dir) / fraction_name(fraction) / "train"
    return RankRAGTrainConfig(**config.train, output_dir=str(out), blend={**config.blend, "ranking_fraction": fraction})


def run_sweep(config: SweepConfig, show_progress: bool = True, isolate: bool = True) -> dict[str, Any]:
    """Train and evaluate every fraction (module docstring); returns what ``sweep.json`` holds.

    With ``isolate`` each model is trained and evaluated in a fresh (spawned) process, so its memory goes back to
    the operating system when it is done: in one process, five SmolLM2 trainings grew it to 12.5 GB.
    """
    out = Path(config.output_dir)
    out.mkdir(parents=True, exist_ok=True)
    base = RankRAGTrainConfig(**config.train, output_dir=str(out), blend=config.blend)
    evaluator = Evaluator(config.eval, blend_config(config.blend), out, base.dtype, base.threads, show_progress)
    results: dict[str, Any] = {"config": config.model_dump(mode="json"), "models": []}
    run = _in_fresh_process if isolate else _here
    if config.eval.zero_shot:
        row = {"name": "zero-shot", "fraction": None, "steps": 0, "train_seconds": 0.0}
        row.update(run(_evaluate, config, base.model, str(out / "zero-shot"), False, show_progress))
        results["models"].append(row)
        _write(out, results, evaluator, "sweep", plot)
    for fraction in config.fractions:
        results["models"].append(run(_train_and_evaluate, config, fraction, show_progress))
        _write(out, results, evaluator, "sweep", plot)
    return results


def run_eval(
    config: SweepConfig,
    models: list[str],
    out: str | Path,
    no_rerank: bool = False,
    show_progress: bool = True,
    isolate: bool = True,
) -> dict[str, Any]:
    """Evaluate already trained models the way the study does (``rankwise rankrag eval``): a merged model, an
    adapter, a trainer checkpoint (``checkpoints/checkpoint-N``: a learning curve) or ``"smollm2"`` (zero-shot).

    The prompt settings (answer template, passage cuts, ranking prompt) come from the config's ``blend`` section,
    as in the sweep. Each model gets its own cached eval directory under ``out``; writes ``eval.json``, ``eval.md``
    and, for two or more models, ``eval.png``.
    """
    out = Path(out)
    for model in models:
        if model.startswith((".", "/", "~")) and not Path(model).expanduser().exists():
            raise RankwiseError(f"--model {model}: no such directory")
    out.mkdir(parents=True, exist_ok=True)
    here = config.model_copy(update={"output_dir": str(out)})
    base = RankRAGTrainConfig(**config.train, output_dir=str(out), blend=config.blend)
    evaluator = Evaluator(config.eval, blend_config(config.blend), out, base.dtype, base.threads, show_progress)
    results: dict[str, Any] = {"config": here.model_dump(mode="json"), "models": []}
    run = _in_fresh_process if isolate else _here
    for model, name in zip(models, _short_names(models), strict=True):
        row: dict[str, Any] = {"name": name, "model": model, "fraction": None, "train_seconds": None}
        row["steps"] = trained_steps(Path(model).expanduser())
        row.update(run(_evaluate, here, str(Path(model).expanduser()), str(out / name), no_rerank, show_progress))
        results["models"].append(row)
        _write(out, results, evaluator, "eval", curve_plot if len(results["models"]) > 1 else None)
    return results


def trained_steps(model: Path) -> int | None:
    """Optimizer steps behind ``model``: 0 for ``smollm2``, a checkpoint's ``trainer_state.json``, or the
    ``metrics.json`` next to a ``model``/``adapter`` directory written by ``rankwise rankrag train``."""
    if str(model) == "smollm2":
        return 0
    for state in (model / "trainer_state.json", model.parent / "metrics.json"):
        if state.is_file():
            saved = json.loads(state.read_text(encoding="utf-8"))
            return saved.get("global_step", saved.get("steps"))
    return None


def _short_names(models: list[str]) -> list[str]:
    """The shortest trailing path parts that tell the models apart (``checkpoint-60``, ``fraction-1__model``)."""
    parts = [Path(m).parts or (m,) for m in models]
    for depth in range(1, max(len(p) for p in parts) + 1):
        names = ["__".join(p[-depth:]) for p in parts]
        if len(set(names)) == len(names):
            return names
    raise RankwiseError(f"--model is given the same model twice: {models}")


def _train_and_evaluate(config: SweepConfig, fraction: float, show_progress: bool) -> dict[str, Any]:
    started = time.perf_counter()
    trained = train_rankrag(train_config(config, fraction), show_progress=show_progress)
    logger.info("fraction %g trained in %.0f s", fraction, time.perf_counter() - started)
    wanted = config.eval.no_rerank
    ablate = wanted if isinstance(wanted, bool) else any(abs(fraction - f) < 1e-9 for f in wanted)
    row = {
        "name": fraction_name(fraction),
        "fraction": fraction,
        "steps": trained["steps"],
        "train_seconds": trained["train_seconds"],
        "last_loss": trained["last_loss"],
        "examples": trained.get("examples"),
        "examples_trained": trained.get("examples_trained"),  # what trl kept of the blend (see rankrag_train)
    }
    eval_dir = str(Path(config.output_dir) / fraction_name(fraction) / "eval")
    row.update(_evaluate(config, trained["model_dir"], eval_dir, ablate, show_progress))
    return row


def _evaluate(config: SweepConfig, model: str, eval_dir: str, no_rerank: bool, show_progress: bool) -> dict[str, Any]:
    base = RankRAGTrainConfig(**config.train, output_dir=config.output_dir, blend=config.blend)
    evaluator = Evaluator(
        config.eval, blend_config(config.blend), Path(config.output_dir), base.dtype, base.threads, show_progress
    )
    return evaluator.evaluate(model, Path(eval_dir), no_rerank=no_rerank)


def _here(fn: Callable[..., dict[str, Any]], *args: Any) -> dict[str, Any]:
    return fn(*args)


def _in_fresh_process(fn: Callable[..., dict[str, Any]], *args: Any) -> dict[str, Any]:
    """``fn(*args)`` in a spawned process (not forked: torch's thread pools do not survive a fork)."""
    import multiprocessing
    from concurrent.futures import ProcessPoolExecutor

    with ProcessPoolExecutor(max_workers=1, mp_context=multiprocessing.get_context("spawn")) as pool:
        return pool.submit(fn, *args).result()


def _write(out: Path, results: dict[str, Any], evaluator: Any, stem: str, draw: Callable[..., None] | None) -> None:
    """``<stem>.json`` and ``<stem>.md`` (the table), and ``<stem>.png`` when there is a ``draw`` function."""
    results["bm25"] = evaluator.bm25_metrics()
    results["hotpotqa_heldout"] = evaluator.heldout_summary()
    atomic_write_text(out / f"{stem}.json", json.dumps(results, indent=2) + "\n")
    atomic_write_text(out / f"{stem}.md", markdown_table(results))
    if draw is not None:
        draw(results, out / f"{stem}.png")
