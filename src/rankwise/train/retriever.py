"""Train a dense bi-encoder (base encoder + linear projection head) with in-batch and hard negatives.

``train_retriever(config)``:

1. builds ``(query, positive, negatives)`` pairs from a judged data set, MS MARCO-style triples or raw passages
   (:mod:`rankwise.train.pairs`), holds out dev queries (or reads ``dev_split``), and mines ``num_negatives``
   BM25 negatives per pair from ``negative_window`` when the source has none;
2. builds the model: the base's modules up to pooling, a ``Dense`` head (``head_dim``; identity-initialised
   when the dimension is kept, so step 0 *is* the base model), then ``Normalize``; ``freeze_base`` trains the
   head only; the base and the head get their own learning rates (``lr_base``, ``lr_head``);
3. trains with sentence-transformers' ``MultipleNegativesRankingLoss`` or its cached (GradCache) variant, plus
   optionally an isotropy regulariser (global orthogonal regularisation: mean and second moment of in-batch
   cosine similarities, weight ``isotropy_weight``), with ``SentenceTransformerTrainer`` — which runs DDP when
   launched with ``torchrun`` (``gloo`` on CPU, NCCL on GPUs; ``gather_across_devices`` shares in-batch negatives
   across processes);
4. evaluates dev nDCG@10 (exact search over the dev corpus, scored by rankwise/ir_measures) every
   ``eval_steps``, checkpoints there, keeps the best (then, with ``wise_ft``, interpolates it with the initial
   weights: :mod:`rankwise.train.weight_ensemble`), and writes ``<output_dir>/model`` (safetensors, loadable by
   :class:`rankwise.retrieve.dense.DenseRetriever`), ``summary.json`` (dev nDCG@10 and isotropy diagnostics —
   mean pairwise cosine and effective rank of the embedding covariance — before and after), ``config.json`` and
   ``log.jsonl``.

Running the same config again resumes from the last checkpoint in ``<output_dir>/checkpoints`` (the HF Trainer
restores optimizer, scheduler, RNG and data order). Multi-process: ``torchrun --nproc-per-node 2 -m
rankwise.train.retriever --config CONFIG``.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import logging
import os
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from sentence_transformers import SentenceTransformer, SentenceTransformerTrainer, SentenceTransformerTrainingArguments
from sentence_transformers.base.evaluation.evaluator import BaseEvaluator
from sentence_transformers.base.sampler import BatchSamplers
from torch import nn
from transformers import TrainerCallback

from rankwise.config.models import resolve_path
from rankwise.config.train_retriever import RetrieverTrainConfig, load_config
from rankwise.data.files import atomic_dir, atomic_write_text
from rankwise.errors import MissingExtraError, RankwiseError, loading_model
from rankwise.evaluate.retrieval import evaluate
from rankwise.train.frozen_base import lookup_model
from rankwise.train.retriever_data import prepare_data
from rankwise.train.retriever_losses import build_loss, isotropy_stats
from rankwise.train.tracking import start_tracking
from rankwise.train.weight_ensemble import apply_wise_ft, snapshot
from rankwise.types import Qrels, Query

logger = logging.getLogger(__name__)

DEV_METRIC = "eval_dev_ndcg@10"


def build_model(config: RetrieverTrainConfig) -> tuple[SentenceTransformer, int | None, int | None]:
    """The base encoder's modules up to pooling, then the projection head and ``Normalize``.

    Returns the model (truncating at the configured ``max_seq_length``), the head's module index (None without a
    head) and the base's own ``max_seq_length``, which the saved model gets back.
    """
    from sentence_transformers.sentence_transformer.modules import Dense, Normalize

    with loading_model(config.model):
        base = SentenceTransformer(resolve_path(config.model), device="cpu", trust_remote_code=config.trust_remote_code)
    inference_length = base.max_seq_length  # read now: the modules below are shared with ``base``
    modules = [module for module in base if not isinstance(module, Normalize)]
    dim = base.get_embedding_dimension()
    if dim is None:
        raise RankwiseError(f"model '{config.model}': cannot tell its embedding dimension")
    head_index = None
    if config.head:
        out = config.head_dim or dim
        if config.head_init == "identity" and out != dim:
            raise RankwiseError(f"head_init identity needs head_dim = {dim} (the base's), not {out}; use orthogonal")
        weight = torch.empty(out, dim)
        if config.head_init == "identity":
            nn.init.eye_(weight)
        else:
            nn.init.orthogonal_(weight, generator=torch.Generator().manual_seed(config.seed))
        head = Dense(dim, out, activation_function=None, init_weight=weight, init_bias=torch.zeros(out))
        head_index = len(modules)
        modules.append(head)
    modules.append(Normalize())
    model = SentenceTransformer(modules=modules, device="cpu")
    if config.max_seq_length is not None:
        model.max_seq_length = config.max_seq_length
    if config.freeze_base:
        for module in modules[: head_index if head_index is not None else len(modules)]:
            for parameter in module.parameters():
                parameter.requires_grad_(False)
    return model, head_index, inference_length


class DevRetrievalEvaluator(BaseEvaluator):
    """nDCG@10 of exact dense search over the dev corpus with the model being trained (rankwise metrics)."""

    def __init__(self, queries: dict[str, Query], corpus: dict[str, str], qrels: Qrels, batch_size: int) -> None:
        super().__init__()
        self.queries, self.corpus, self.qrels, self.batch_size = queries, corpus, qrels, batch_size
        self.greater_is_better = True
        self.primary_metric = "dev_ndcg@10"

    def __call__(self, model: Any, output_path: str | None = None, epoch: int = -1, steps: int = -1) -> dict:
        options = {"batch_size": self.batch_size, "normalize_embeddings": True, "show_progress_bar": False}
        docs = model.encode(list(self.corpus.values()), convert_to_numpy=True, **options)
        queries = model.encode([q.text for q in self.queries.values()], convert_to_numpy=True, **options)
        scores = queries @ docs.T
        doc_ids = list(self.corpus)
        run = {}
        for row, qid in enumerate(self.queries):
            top = np.argsort(-scores[row], kind="stable")[:100]
            run[qid] = {doc_ids[i]: float(scores[row, i]) for i in top}
        value = evaluate(run, self.qrels, ["nDCG@10"])["nDCG@10"]
        logger.info("dev nDCG@10 at step %s: %.4f", steps, value)
        return {self.primary_metric: value}


def _embed_stats(model: SentenceTransformer, texts: Sequence[str]) -> dict[str, float]:
    vectors = model.encode(list(texts), batch_size=64, normalize_embeddings=True, show_progress_bar=False)
    return isotropy_stats(vectors)


def head_digest(model: SentenceTransformer, head_index: int | None) -> str | None:
    if head_index is None:
        return None
    digest = hashlib.sha256()
    for tensor in model[head_index].state_dict().values():
        digest.update(tensor.detach().cpu().numpy().tobytes())
    return digest.hexdigest()


def replicas_identical(model: nn.Module) -> bool | None:
    """Under DDP: whether every process ends with the same trainable weights (None when not distributed)."""
    if not (torch.distributed.is_available() and torch.distributed.is_initialized()):
        return None
    digest = hashlib.sha256()
    for parameter in model.parameters():
        if parameter.requires_grad:
            digest.update(parameter.detach().cpu().numpy().tobytes())
    digests: list[Any] = [None] * torch.distributed.get_world_size()
    torch.distributed.all_gather_object(digests, digest.hexdigest())
    return len(set(digests)) == 1


def training_arguments(
    config: RetrieverTrainConfig,
    checkpoints: Path,
    evaluating: bool,
    model_head: int | None,
    distributed: bool,
    show_progress: bool,
) -> Any:
    """The ``SentenceTransformerTrainingArguments`` of ``config``: the head's own learning rate, checkpoints (and
    dev evaluation, when ``evaluating``) every ``eval_steps``, DDP over gloo on CPUs under torchrun."""
    on_cpu = config.device == "cpu" or not torch.cuda.is_available()
    # accelerate runs multi-process CPU training as DDP only when told to use the CPU: without it, torchrun on a
    # machine without CUDA trains one separate model per process (and only rank 0 gets the dev metrics).
    use_cpu = config.device == "cpu" or (config.device is None and distributed and on_cpu)
    mapping = {rf"(^|\.)model\.{model_head}\.": config.lr_head} if model_head is not None else {}
    args = SentenceTransformerTrainingArguments(
        output_dir=str(checkpoints),
        num_train_epochs=config.epochs,
        max_steps=config.max_steps,
        per_device_train_batch_size=config.batch_size,
        learning_rate=config.lr_base,
        learning_rate_mapping=mapping,
        warmup_steps=config.warmup_ratio,  # a float < 1 is a ratio of the total steps (transformers v5)
        weight_decay=config.weight_decay,
        batch_sampler=BatchSamplers.NO_DUPLICATES,  # a query twice in a batch would be its own false negative
        eval_strategy="steps" if evaluating else "no",
        eval_steps=config.eval_steps,
        save_strategy="steps",
        save_steps=config.eval_steps,
        save_total_limit=config.save_total_limit,
        load_best_model_at_end=evaluating and config.load_best,
        metric_for_best_model=DEV_METRIC if evaluating else None,
        greater_is_better=True,
        logging_steps=config.logging_steps,
        seed=config.seed,
        data_seed=config.seed,
        report_to="none",
        disable_tqdm=not show_progress,
        use_cpu=use_cpu,
        ddp_backend="gloo" if on_cpu and distributed else None,
        dataloader_num_workers=0,
        dataloader_pin_memory=False,
    )
    return args


def train_retriever(
    config: RetrieverTrainConfig, show_progress: bool = True, callbacks: list[TrainerCallback] | None = None
) -> dict[str, Any]:
    """Run the recipe in the module docstring; returns the summary also written to ``summary.json``."""
    try:
        import accelerate  # noqa: F401  (the Trainer needs it; fail here with the extra to install)
        from datasets import Dataset
    except ImportError as exc:
        raise MissingExtraError(exc.name or "datasets", "train") from exc
    from transformers import set_seed
    from transformers.trainer_utils import get_last_checkpoint

    started = time.perf_counter()
    if config.threads:
        torch.set_num_threads(config.threads)
    out = config.path("output_dir")
    assert out is not None
    checkpoints = out / "checkpoints"
    _check_resumable(config, out)
    data = prepare_data(config)
    set_seed(config.seed)
    full, head_index, inference_length = build_model(config)
    initial_head = head_digest(full, head_index)
    initial_weights = snapshot(full) if config.wise_ft is not None else None
    model, model_head = full, head_index
    if config.freeze_base and config.cache_frozen_base and head_index is not None:
        model, model_head = lookup_model(full, head_index, _all_texts(data), show_progress=show_progress), 1
    evaluator = None
    if data["dev"] is not None:
        evaluator = DevRetrievalEvaluator(**data["dev"], batch_size=64)
    distributed = int(os.environ.get("WORLD_SIZE", "1")) > 1  # set by torchrun
    args = training_arguments(config, checkpoints, evaluator is not None, model_head, distributed, show_progress)
    tracker = start_tracking(config.tracking, "retriever", config)
    trainer = SentenceTransformerTrainer(
        model=model,
        args=args,
        train_dataset=Dataset.from_dict(data["columns"]),
        loss=build_loss(model, config, distributed),
        evaluator=evaluator,
        callbacks=[_JsonLogCallback(out / "log.jsonl"), tracker.callback(), *(callbacks or [])],
    )
    main_process = trainer.is_world_process_zero()
    if main_process:
        atomic_write_text(out / "config.json", json.dumps(config.model_dump(mode="json"), indent=2) + "\n")
    before = {"isotropy": _embed_stats(model, data["diagnostic_texts"])}
    if evaluator:
        before["dev_ndcg@10"] = evaluator(model)[evaluator.primary_metric]
    last = get_last_checkpoint(str(checkpoints)) if checkpoints.is_dir() and config.resume else None
    if last:
        logger.info("resuming from %s", last)
    trainer.train(resume_from_checkpoint=last)
    model = trainer.model  # the best checkpoint's weights when load_best; its head is shared with ``full``
    wise_ft = None
    if initial_weights is not None:
        score = (lambda: evaluator(model)[evaluator.primary_metric]) if evaluator else None
        wise_ft = apply_wise_ft(full, initial_weights, config.wise_ft, config.wise_ft_tolerance, score)
        logger.info(
            "WiSE-FT: alpha %s (%s); dev nDCG@10 by alpha: %s",
            wise_ft["alpha"],
            wise_ft["rule"],
            json.dumps(wise_ft["dev_ndcg@10"]),
        )
    after = {"isotropy": _embed_stats(model, data["diagnostic_texts"])}
    if evaluator:
        after["dev_ndcg@10"] = evaluator(model)[evaluator.primary_metric]
    logger.info("isotropy and dev nDCG@10 before: %s, after: %s", json.dumps(before), json.dumps(after))
    summary = {
        "steps": trainer.state.global_step,
        "world_size": args.world_size,
        "global_batch_size": config.batch_size * args.world_size,
        "train_pairs": len(data["columns"]["anchor"]),
        "dev_queries": len(data["dev"]["queries"]) if data["dev"] else 0,
        "before": before,
        "after": after,
        "best_checkpoint": trainer.state.best_model_checkpoint,
        "wise_ft": wise_ft,
        "resumed_from": last,
        "head_sha256": {"initial": initial_head, "final": head_digest(full, head_index)},
        "cached_frozen_base": model is not full,
        "replicas_identical": replicas_identical(model),
        "warnings": data["warnings"],
        "seconds": round(time.perf_counter() - started, 1),
        "model_dir": str(out / "model"),
    }
    if main_process:
        full.max_seq_length = inference_length
        with atomic_dir(out / "model") as tmp:
            full.save(str(tmp), safe_serialization=True)
        atomic_write_text(out / "summary.json", json.dumps(summary, indent=2) + "\n")
        best = trainer.state.best_model_checkpoint
        tracker.finish(out / "model", summary, best, final_is_best=config.load_best or best is None)
    return summary


def _all_texts(data: dict[str, Any]) -> list[str]:
    """Every text the training model will embed: training columns, dev queries and corpus, diagnostics."""
    texts = [text for column in data["columns"].values() for text in column]
    if data["dev"] is not None:
        texts += [query.text for query in data["dev"]["queries"].values()] + list(data["dev"]["corpus"].values())
    return texts + list(data["diagnostic_texts"])


def _check_resumable(config: RetrieverTrainConfig, out: Path) -> None:
    """Refuse to resume checkpoints written under a different config (that would mix two experiments)."""
    saved = out / "config.json"
    if not (config.resume and saved.is_file() and (out / "checkpoints").is_dir()):
        return
    previous = json.loads(saved.read_text(encoding="utf-8"))
    current = config.model_dump(mode="json")
    ignored = {"threads", "resume", "max_steps", "epochs", "device", "tracking", "wise_ft", "wise_ft_tolerance"}
    defaults = RetrieverTrainConfig.model_construct().model_dump(mode="json")
    changed = sorted(k for k in current if k not in ignored and previous.get(k, defaults.get(k)) != current[k])
    if changed:
        raise RankwiseError(
            f"{out} holds checkpoints of a run with different settings ({', '.join(changed)}): "
            "use another output_dir, or set resume: false to start over"
        )


class _JsonLogCallback(TrainerCallback):
    """Appends every Trainer log (loss parts, learning rates, dev metrics) to a JSON-lines file (main process)."""

    def __init__(self, path: Path) -> None:
        self.path = path

    def on_log(self, args: Any, state: Any, control: Any, logs: dict | None = None, **kwargs: Any) -> None:
        if logs and state.is_world_process_zero:
            with self.path.open("a", encoding="utf-8") as handle:
                handle.write(json.dumps({"step": state.global_step, **logs}) + "\n")


def main(argv: Sequence[str] | None = None) -> int:
    """``python -m rankwise.train.retriever --config C [--set key=value ...]`` (the entry point for torchrun)."""
    import yaml

    parser = argparse.ArgumentParser(prog="rankwise.train.retriever", description=__doc__.split("\n")[0])
    parser.add_argument("--config", required=True, type=Path)
    parser.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE")
    args = parser.parse_args(argv)
    overrides = {}
    for item in args.overrides:
        key, sep, value = item.partition("=")
        if not sep or not key.strip():
            raise RankwiseError(f"--set expects key=value, not {item!r}")
        overrides[key.strip()] = yaml.safe_load(value)
    summary = train_retriever(load_config(args.config, overrides))
    if summary["world_size"] == 1 or torch.distributed.get_rank() == 0:
        print(json.dumps(summary, indent=2))
    if torch.distributed.is_available() and torch.distributed.is_initialized():
        # tear gloo down in order: left to interpreter exit, a rank sometimes aborted ("terminate called without
        # an active exception", exit -6) after training had finished and saved
        torch.distributed.barrier()
        torch.distributed.destroy_process_group()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
