"""Train a cross-encoder reranker on hard negatives mined from a first-stage run.

``train_reranker(config)``:

1. loads the data set's ``train_split`` (e.g. SciFact ``qrels/train.tsv``) and holds ``dev_queries`` of its
   judged queries out for model selection (seeded);
2. retrieves the first-stage run (BM25 unless ``first_stage_run`` names a TREC file) and mines
   ``(query, positive, negatives)`` examples from ``negative_window`` (:mod:`rankwise.train.negatives`); with
   ``train_text: bm25_window`` each document is cut to the ``rerank --windows`` window BM25 ranks best;
3. fine-tunes a sentence-transformers ``CrossEncoder`` (``num_labels=1``) with ``CrossEncoderTrainer`` and one of
   its losses, evaluating nDCG@10 of reranking the dev queries' top-``dev_depth`` every ``eval_steps``, and keeps
   the best checkpoint;
4. writes ``<output_dir>/model`` (loadable by :class:`rankwise.rerank.cross_encoder.CrossEncoderReranker`),
   ``metrics.json``, ``examples.jsonl``, ``config.json`` and ``log.jsonl`` (loss and dev metrics as they come);
5. with ``tune_interpolation``, picks on the dev split the first-stage weight for ``rankwise rerank
   --interpolate W`` (min-max fusion of reranker and first-stage scores) and records it in ``metrics.json``.

Checkpoints go to ``<output_dir>/checkpoints`` every ``eval_steps``; running the same config again after a kill
resumes from the last one (optimizer, scheduler, RNG and data order restored by the HF Trainer).
The configuration lives in :mod:`rankwise.config.train_reranker`.
"""

from __future__ import annotations

import json
import logging
import time
from pathlib import Path
from typing import Any

from sentence_transformers.base.evaluation.evaluator import BaseEvaluator
from transformers import TrainerCallback

from rankwise.config.train_reranker import RerankerTrainConfig
from rankwise.data import load_dataset, read_run
from rankwise.data.files import atomic_dir, atomic_write_text
from rankwise.data.mtrag_split import HELDOUT_FILE, write_heldout
from rankwise.errors import RankwiseError
from rankwise.evaluate.retrieval import evaluate
from rankwise.rerank.cross_encoder import TRAINED_SETTINGS, CrossEncoderReranker, load_cross_encoder
from rankwise.retrieve.bm25 import BM25Retriever
from rankwise.train.dev import split_dev, tune_interpolation
from rankwise.train.mtrag_data import mtrag_domains, mtrag_training_data
from rankwise.train.negatives import TrainingExample, bm25_windows, mine_negatives, write_examples
from rankwise.train.pairs import sample
from rankwise.train.tracking import start_tracking
from rankwise.types import Document, Qrels, Query, Run

logger = logging.getLogger(__name__)

DEV_METRIC = "eval_dev_ndcg@10"


def build_train_dataset(examples: list[TrainingExample], loss: str) -> Any:
    """The columns each sentence-transformers loss expects (see its docstring)."""
    from datasets import Dataset

    if loss == "bce":
        rows: dict[str, list[Any]] = {"query": [], "passage": [], "label": []}
        for ex in examples:
            for text, label in [(ex.positive, 1.0)] + [(neg, 0.0) for neg in ex.negatives]:
                rows["query"].append(ex.query)
                rows["passage"].append(text)
                rows["label"].append(label)
        return Dataset.from_dict(rows)
    if loss == "softmax":
        width = min(len(ex.negatives) for ex in examples)  # columns must be rectangular
        columns: dict[str, list[str]] = {"query": [ex.query for ex in examples]}
        columns["positive"] = [ex.positive for ex in examples]
        for i in range(width):
            columns[f"negative_{i + 1}"] = [ex.negatives[i] for ex in examples]
        return Dataset.from_dict(columns)
    return Dataset.from_dict(
        {
            "query": [ex.query for ex in examples],
            "docs": [[ex.positive, *ex.negatives] for ex in examples],
            "labels": [[1.0] + [0.0] * len(ex.negatives) for ex in examples],
        }
    )


def build_loss(model: Any, config: RerankerTrainConfig) -> Any:
    from sentence_transformers.cross_encoder import losses

    if config.loss == "bce":
        return losses.BinaryCrossEntropyLoss(model)
    if config.loss == "listnet":
        return losses.ListNetLoss(model)
    if config.loss == "lambda":
        return losses.LambdaLoss(model)
    if config.in_batch_negatives > 0:
        return losses.MultipleNegativesRankingLoss(model, num_negatives=config.in_batch_negatives)

    # Softmax cross-entropy over (positive, hard negatives) only: sentence-transformers' MNRL always adds
    # in-batch negatives (num_negatives=0 is rejected by torch.multinomial), so this subclass turns them off.
    class HardNegativesSoftmaxLoss(losses.MultipleNegativesRankingLoss):
        def get_in_batch_negatives(self, anchors: list[str], candidates: list[list[str]]) -> Any:
            return iter(())

    return HardNegativesSoftmaxLoss(model)


class DevRerankEvaluator(BaseEvaluator):
    """nDCG@10 of reranking the dev queries' first-stage top-``depth`` with the model being trained.

    Follows sentence-transformers' evaluator protocol (``__call__`` returns metrics, ``primary_metric``), and
    computes the metric with rankwise's evaluation (ir_measures), the same code that scores the test runs.
    """

    def __init__(
        self,
        queries: dict[str, Query],
        run: Run,
        corpus: dict[str, Document],
        qrels: Qrels,
        depth: int,
        max_length: int,
        name: str = "dev",
        show_progress: bool = False,
        windows: str = "first",
    ) -> None:
        super().__init__()
        self.queries, self.run, self.corpus, self.qrels = queries, run, corpus, qrels
        self.depth, self.max_length, self.name = depth, max_length, name
        self.show_progress, self.windows = show_progress, windows
        self.greater_is_better = True
        self.primary_metric = f"{name}_ndcg@10"
        self.last_run: Run = {}

    def __call__(self, model: Any, output_path: str | None = None, epoch: int = -1, steps: int = -1) -> dict:
        reranker = CrossEncoderReranker(
            model, max_length=self.max_length, show_progress=self.show_progress, windows=self.windows
        )
        reranked = reranker.rerank(self.queries, self.run, self.corpus, k=self.depth)
        self.last_run = reranked
        value = evaluate(reranked, self.qrels, ["nDCG@10"])["nDCG@10"]
        logger.info("dev nDCG@10 at step %s: %.4f", steps, value)
        return {self.primary_metric: value}

    def get_config_dict(self) -> dict[str, Any]:
        return {"depth": self.depth, "windows": self.windows}


def training_arguments(config: RerankerTrainConfig, checkpoints: Path, show_progress: bool) -> Any:
    """The ``CrossEncoderTrainingArguments`` of ``config``: a batch of ``batch_size`` examples (query groups for
    the listwise losses), dev evaluation and checkpoints every ``eval_steps``, the best checkpoint kept."""
    from sentence_transformers.cross_encoder import CrossEncoderTrainingArguments

    group = 1 if config.loss == "bce" else 1 + config.num_negatives
    args = CrossEncoderTrainingArguments(
        output_dir=str(checkpoints),
        num_train_epochs=config.epochs,
        per_device_train_batch_size=max(1, config.batch_size // group),
        learning_rate=config.learning_rate,
        warmup_steps=config.warmup_ratio,  # a float < 1 is a ratio of the total steps (transformers v5)
        weight_decay=config.weight_decay,
        lr_scheduler_type="linear",
        eval_strategy="steps",
        eval_steps=config.eval_steps,
        eval_on_start=config.eval_on_start,
        save_strategy="steps",
        save_steps=config.eval_steps,
        save_total_limit=config.save_total_limit,
        load_best_model_at_end=True,
        metric_for_best_model=DEV_METRIC,
        greater_is_better=True,
        logging_steps=config.logging_steps,
        seed=config.seed,
        data_seed=config.seed,
        report_to="none",
        disable_tqdm=not show_progress,
        use_cpu=config.device == "cpu",
        dataloader_num_workers=0,
        dataloader_pin_memory=False,
    )
    return args


def _pick_interpolation(
    config: RerankerTrainConfig, data: dict[str, Any], model: Any, out: Path, show_progress: bool
) -> dict[str, Any]:
    """The first-stage weight picked on the dev queries (:func:`tune_interpolation`) with the trained ``model``,
    also written beside it as the settings ``rankwise rerank`` and experiments apply."""
    depth = config.interpolation_depth or config.dev_depth
    windows = config.interpolation_windows
    logger.info("picking the first-stage weight on the dev queries' top %d (windows: %s)", depth, windows)
    final = DevRerankEvaluator(
        data["dev_queries"],
        data["dev_run"],
        data["corpus"],
        data["dev_qrels"],
        depth,
        config.max_length,
        show_progress=show_progress,
        windows=windows,
    )
    final(model)  # the best model's dev run at the pick's depth
    chosen = tune_interpolation(final.last_run, data["dev_run"], data["dev_qrels"])
    chosen.update(depth=depth, windows=windows)
    picked = {
        "first_stage_weight": chosen["weight"],
        "picked_on": f"dev nDCG@10, {len(data['dev_queries'])} queries, first-stage top {depth}",
        "max_length": config.max_length,
        "windows": windows,
    }
    atomic_write_text(out / "model" / TRAINED_SETTINGS, json.dumps(picked, indent=2) + "\n")
    return chosen


def train_reranker(
    config: RerankerTrainConfig, show_progress: bool = True, callbacks: list[TrainerCallback] | None = None
) -> dict[str, Any]:
    """Run the whole recipe (module docstring); returns the metrics also written to ``metrics.json``.

    ``callbacks`` are extra ``transformers.TrainerCallback`` objects (e.g. for early stopping or tests).
    """
    import torch
    from sentence_transformers.cross_encoder import CrossEncoderTrainer
    from transformers import set_seed
    from transformers.trainer_utils import get_last_checkpoint

    started, cpu_started = time.perf_counter(), time.process_time()
    if config.threads:
        torch.set_num_threads(config.threads)
    out = Path(config.output_dir)
    checkpoints = out / "checkpoints"
    _check_resumable(config, out)
    data = _prepare(config)
    atomic_write_text(out / "config.json", json.dumps(config.model_dump(mode="json"), indent=2) + "\n")
    write_examples(data["examples"], out / "examples.jsonl")
    if data["heldout"] is not None:
        write_heldout(out / HELDOUT_FILE, data["heldout"])

    tracker = start_tracking(config.tracking, "reranker", config)
    set_seed(config.seed)
    model = load_cross_encoder(
        config.model, max_length=config.max_length, trust_remote_code=config.trust_remote_code, num_labels=1
    )
    args = training_arguments(config, checkpoints, show_progress)
    evaluator = DevRerankEvaluator(
        data["dev_queries"],
        data["dev_run"],
        data["corpus"],
        data["dev_qrels"],
        config.dev_depth,
        config.max_length,
        windows=config.dev_windows,
    )
    trainer = CrossEncoderTrainer(
        model=model,
        args=args,
        train_dataset=build_train_dataset(data["examples"], config.loss),
        loss=build_loss(model, config),
        evaluator=evaluator,
        callbacks=[_JsonLogCallback(out / "log.jsonl"), tracker.callback(), *(callbacks or [])],
    )
    last = get_last_checkpoint(str(checkpoints)) if checkpoints.is_dir() and config.resume else None
    if last:
        logger.info("resuming from %s", last)
    trainer.train(resume_from_checkpoint=last)

    with atomic_dir(out / "model") as tmp:
        trainer.model.save_pretrained(str(tmp))
    state = trainer.state
    first_stage = evaluate(data["dev_run"], data["dev_qrels"], ["nDCG@10"])["nDCG@10"]
    metrics = {
        "best_dev_ndcg@10": state.best_metric,
        "best_checkpoint": state.best_model_checkpoint,
        "first_stage_dev_ndcg@10": first_stage,
        "steps": state.global_step,
        "examples": len(data["examples"]),
        "train_queries": data["train_query_count"],
        "dev_queries": len(data["dev_queries"]),
        "resumed_from": last,
        "seconds": round(time.perf_counter() - started, 1),
        "cpu_seconds": round(time.process_time() - cpu_started, 1),  # wall time lies on a shared machine
        "mining_warnings": data["warnings"],
        "model_dir": str(out / "model"),
    }
    if data["heldout"] is not None:
        metrics["heldout"] = {d: len(ids) for d, ids in data["heldout"]["tasks"].items()}
    if config.tune_interpolation:
        metrics["interpolation"] = _pick_interpolation(config, data, trainer.model, out, show_progress)
    atomic_write_text(out / "metrics.json", json.dumps(metrics, indent=2) + "\n")
    tracker.finish(out / "model", metrics, state.best_model_checkpoint)  # load_best_model_at_end: final is best
    return metrics


def _prepare(config: RerankerTrainConfig) -> dict[str, Any]:
    heldout, run = None, None
    if mtrag_domains(config.data) is not None:  # train conversations only; their BM25 run in each domain's pool
        mtrag = mtrag_training_data(
            config.data, config.mtrag_dir, config.test_fraction, config.seed, config.query, config.first_stage_depth
        )
        dataset, heldout = mtrag.dataset, mtrag.heldout
        run = mtrag.run
    else:
        dataset = load_dataset(config.data, split=config.train_split)
    if not dataset.qrels:
        raise RankwiseError(f"{config.data}: split '{config.train_split}' has no judgements to train on")
    train_ids, dev_ids = split_dev(dataset.qrels, dataset.queries, config.dev_queries, config.seed)
    kept = None
    if config.sample_ratio < 1 or config.max_triples is not None:  # (query, positive) pairs, seeded, before mining
        judged = ((qid, doc_id) for qid in train_ids for doc_id, grade in dataset.qrels[qid].items() if grade > 0)
        kept = set(sample(judged, config.sample_ratio, config.max_triples, config.seed))
        train_ids = sorted({qid for qid, _ in kept})
    wanted = {qid: dataset.queries[qid] for qid in train_ids + dev_ids}
    if config.first_stage_run:
        run = read_run(config.first_stage_run)
        missing = sorted(set(wanted) - set(run))
        if missing:
            raise RankwiseError(
                f"{config.first_stage_run}: no ranking for {len(missing)} training queries, e.g. {missing[:3]}"
            )
    elif run is None:
        bm25 = BM25Retriever(show_progress=False)
        bm25.index(dataset.corpus)
        run = bm25.search(wanted, k=config.first_stage_depth)
    train_set = set(train_ids)
    mined = mine_negatives(
        {qid: dataset.queries[qid] for qid in train_ids},
        {qid: run[qid] for qid in train_ids},
        {qid: dataset.qrels[qid] for qid in train_ids},
        dataset.corpus,
        num_negatives=config.num_negatives,
        window=config.negative_window,
        seed=config.seed,
    )
    if not mined.examples:
        raise RankwiseError("no training example could be mined: " + "; ".join(mined.warnings))
    examples = [ex for ex in mined.examples if kept is None or (ex.query_id, ex.positive_id) in kept]
    if config.train_text == "bm25_window":
        examples = bm25_windows(examples, dataset.corpus)
    return {
        "examples": examples,
        "warnings": mined.warnings,
        "train_query_count": len(train_set),
        "corpus": dataset.corpus,
        "dev_queries": {qid: dataset.queries[qid] for qid in dev_ids},
        "dev_run": {qid: run[qid] for qid in dev_ids if qid in run},
        "dev_qrels": {qid: dataset.qrels[qid] for qid in dev_ids},
        "heldout": heldout,
    }


def _check_resumable(config: RerankerTrainConfig, out: Path) -> None:
    """Refuse to resume checkpoints written under a different config (that would mix two experiments)."""
    saved = out / "config.json"
    if not (config.resume and saved.is_file() and (out / "checkpoints").is_dir()):
        return
    previous = json.loads(saved.read_text())
    current = config.model_dump(mode="json")
    ignored = {"threads", "resume", "tracking"}
    defaults = RerankerTrainConfig.model_construct().model_dump(mode="json")
    changed = sorted(k for k in current if k not in ignored and previous.get(k, defaults.get(k)) != current[k])
    if changed:
        raise RankwiseError(
            f"{out} holds checkpoints of a run with different settings ({', '.join(changed)}): "
            "use another output_dir, or set resume: false to start over"
        )


class _JsonLogCallback(TrainerCallback):
    """Appends every Trainer log (loss, learning rate, dev metrics) to a JSON-lines file as it arrives."""

    def __init__(self, path: Path) -> None:
        self.path = path

    def on_log(self, args: Any, state: Any, control: Any, logs: dict | None = None, **kwargs: Any) -> None:
        if logs:
            with self.path.open("a", encoding="utf-8") as handle:
                handle.write(json.dumps({"step": state.global_step, **logs}) + "\n")
