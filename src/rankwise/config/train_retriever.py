"""Settings of ``rankwise train retriever``: a pydantic model loaded from YAML (``yaml.safe_load``).

Unknown keys are an error naming the key, the file and its line, so a typo never silently trains with a default.
Paths may use environment variables (``$RANKWISE_DATA/scifact``); relative paths are relative to the working
directory. Self-contained on purpose, like ``reranker_config.py``: it can move into a central config as it is.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from rankwise.config.sections.run import TrackingConfig
from rankwise.config.yaml_config import build, read_mapping


class RetrieverTrainConfig(BaseModel):
    """One dense-encoder training run: exactly one of ``data``, ``triples`` or ``passages`` is the source."""

    model_config = ConfigDict(extra="forbid")

    output_dir: str = Field(description="where checkpoints/, model/ and summary.json go")
    data: str | None = Field(None, description="judged data set to train on (e.g. a BEIR directory)")
    train_split: str = "train"
    triples: str | None = Field(None, description="MS MARCO-style triples, .tsv or .jsonl")
    passages: str | None = Field(None, description="raw passages (.jsonl or blank-line text) -> pseudo queries")
    pseudo_queries: Literal["ict", "title"] = "ict"
    max_pairs: int | None = Field(None, ge=1, description="use at most this many training pairs (after dev)")
    sample_ratio: float = Field(
        1.0, gt=0, le=1, description="keep each triple / judged pair with this probability (seeded; read streamed)"
    )
    max_triples: int | None = Field(None, ge=1, description="stop reading after this many kept triples / pairs")
    negative_pool: int | None = Field(
        None,
        ge=0,
        description="data: read the BEIR files line by line (MS MARCO's 8.8M passages never held whole), keeping "
        "the sampled pairs' texts and a seeded sample of this many other passages for BM25 negatives and dev",
    )
    dev_split: str | None = Field(None, description="judged split for dev evaluation; default: hold out queries")
    dev_queries: int = Field(50, ge=0, description="training queries held out for dev evaluation (0: none)")
    dev_corpus_size: int = Field(1000, ge=0, description="dev corpus: relevant docs + others up to this (0: all)")

    model: str = Field("minilm", description="base encoder: 'minilm' (bundled), a hub name or a path")
    head: bool = Field(True, description="add a trainable linear projection head after pooling")
    head_dim: int | None = Field(None, ge=1, description="head output dimension (default: the base's)")
    head_init: Literal["identity", "orthogonal"] = "identity"
    freeze_base: bool = Field(False, description="train the head only")
    cache_frozen_base: bool = Field(
        True, description="with freeze_base: embed each text once with the base and train the head on the cache"
    )
    max_seq_length: int | None = Field(
        256, ge=8, description="truncate training and dev texts (the saved model keeps the base's own limit)"
    )
    trust_remote_code: bool = False

    loss: Literal["mnrl", "cached_mnrl"] = "mnrl"
    scale: float = Field(20.0, gt=0, description="inverse temperature of the in-batch softmax")
    mini_batch_size: int = Field(16, ge=1, description="cached_mnrl: texts per forward pass")
    gather_across_devices: bool = Field(True, description="DDP: in-batch negatives from every process")
    isotropy_weight: float = Field(0.0, ge=0, description="weight of the isotropy (GOR) regulariser; 0: off")
    negative_miner: Literal["bm25", "none"] = "bm25"
    num_negatives: int = Field(1, ge=0, description="hard negatives per pair (0: in-batch negatives only)")
    negative_window: tuple[int, int] = Field((10, 100), description="1-based inclusive BM25 ranks to sample")

    epochs: float = Field(1.0, gt=0)
    max_steps: int = Field(-1, description="stop after this many steps (-1: run the epochs)")
    batch_size: int = Field(32, ge=2, description="pairs per step (per process under DDP)")
    lr_base: float = Field(2e-5, gt=0, description="learning rate of the base encoder")
    lr_head: float = Field(1e-3, gt=0, description="learning rate of the projection head")
    warmup_ratio: float = Field(0.1, ge=0, lt=1)
    weight_decay: float = Field(0.01, ge=0)
    eval_steps: int = Field(50, ge=1, description="dev evaluation and checkpoint interval (steps)")
    load_best: bool = Field(True, description="end with the checkpoint of best dev nDCG@10")
    wise_ft: float | Literal["auto"] | None = Field(
        None,
        description="WiSE-FT: save (1 - a) * initial + a * trained weights; a number a in [0, 1], or auto: the "
        "smallest a whose dev nDCG@10 is within wise_ft_tolerance of the best (null: the trained weights as they are)",
    )
    wise_ft_tolerance: float = Field(0.005, ge=0, description="wise_ft auto: dev nDCG@10 it may give up")
    logging_steps: int = Field(10, ge=1)
    save_total_limit: int = Field(2, ge=1)
    seed: int = 42
    resume: bool = Field(True, description="continue from the last checkpoint in output_dir if there is one")
    threads: int | None = Field(None, ge=1, description="torch CPU threads (default: torch's choice)")
    device: str | None = Field(None, description="'cpu' to force the CPU; default: what the Trainer picks")
    diagnostics_sample: int = Field(512, ge=2, description="corpus texts embedded for the isotropy diagnostics")
    tracking: TrackingConfig = Field(default_factory=TrackingConfig, description="MLflow / W&B run of this training")

    @model_validator(mode="after")
    def _check(self) -> RetrieverTrainConfig:
        sources = [name for name in ("data", "triples", "passages") if getattr(self, name)]
        if len(sources) != 1:
            raise ValueError(f"give exactly one of data, triples, passages (got {sources or 'none'})")
        start, end = self.negative_window
        if not 1 <= start <= end:
            raise ValueError(f"negative_window must be [start, end] with 1 <= start <= end, got {start}-{end}")
        if isinstance(self.wise_ft, float) and not 0 <= self.wise_ft <= 1:
            raise ValueError(f"wise_ft must be auto or a number in [0, 1], got {self.wise_ft}")
        if self.wise_ft == "auto" and self.dev_queries == 0 and not self.dev_split:
            raise ValueError("wise_ft: auto picks on the dev split; set dev_queries > 0 or dev_split")
        if self.freeze_base and not self.head:
            raise ValueError("freeze_base needs head: true (otherwise nothing is trained)")
        if self.head_dim is not None and not self.head:
            raise ValueError("head_dim applies with head: true only")
        if self.dev_split and not self.data:
            raise ValueError("dev_split applies to data only")
        if self.negative_pool is not None and (not self.data or self.dev_split):
            raise ValueError("negative_pool applies to data without dev_split (dev queries are held out instead)")
        return self

    def path(self, name: str) -> Path | None:
        """The path setting ``name`` with environment variables expanded (None when unset)."""
        value = getattr(self, name)
        return Path(os.path.expandvars(value)).expanduser() if value else None


def load_config(path: str | Path, overrides: dict[str, Any] | None = None) -> RetrieverTrainConfig:
    """Read a YAML config; ``overrides`` (e.g. from ``--set key=value``) replace its keys."""
    path, text, raw = read_mapping(path, overrides)
    return build(RetrieverTrainConfig, raw, path, text)
