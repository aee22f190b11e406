"""Settings of ``rankwise train reranker``: a pydantic model loaded from YAML (``yaml.safe_load``).

Unknown keys are an error that names the key, the file and its line, so a typo never silently trains with a
default. Path settings may use environment variables (``data: ${RANKWISE_DATA}/scifact``).
Self-contained on purpose: it moves into a central ``config.py`` as it is.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from rankwise.config.defaults import Aggregate
from rankwise.config.sections.run import TrackingConfig
from rankwise.config.yaml_config import build, expand_setting, read_mapping

LOSSES = ("bce", "softmax", "listnet", "lambda")
PATH_KEYS = (
    "data",
    "output_dir",
    "first_stage_run",
    "mtrag_dir",
)  # these may name environment variables: ${RANKWISE_DATA}


class RerankerTrainConfig(BaseModel):
    """One training run. Paths are as given (relative to the working directory)."""

    model_config = ConfigDict(extra="forbid")

    data: str = Field(
        description="data set to train on: a BEIR directory such as SciFact, or MT-RAG tasks split by "
        "conversation: 'mtrag:all' or 'mtrag:clapnq,fiqa' (see the MT-RAG block below)"
    )
    output_dir: str = Field(description="where checkpoints/, model/, metrics.json and log.jsonl go")
    model: str = Field("minilm", description="start point: 'minilm' (bundled MiniLM body), a hub name or a path")
    train_split: str = "train"
    dev_queries: int = Field(50, ge=1, description="judged train queries held out for model selection")
    first_stage_run: str | None = Field(None, description="TREC run of the train queries; default: BM25")
    first_stage_depth: int = Field(100, ge=1)
    sample_ratio: float = Field(
        1.0, gt=0, le=1, description="keep each judged (query, positive) training pair with this probability (seeded)"
    )
    max_triples: int | None = Field(None, ge=1, description="train on at most this many (query, positive) pairs")
    num_negatives: int = Field(2, ge=1, description="negatives per positive (1:N)")
    negative_window: tuple[int, int] = Field((10, 100), description="1-based inclusive ranks to sample from")
    loss: Literal["bce", "softmax", "listnet", "lambda"] = "bce"
    in_batch_negatives: int = Field(0, ge=0, description="extra in-batch negatives (softmax loss only)")
    max_length: int = Field(256, ge=8, description="query + passage tokens")
    train_text: Literal["contents", "bm25_window"] = Field(
        "contents",
        description="what the model trains on of each document: its contents (cut at max_length), or the "
        "`rerank --windows` window BM25 scores highest for the query (for a model that will rerank with windows)",
    )
    epochs: float = Field(1.0, gt=0)
    batch_size: int = Field(16, ge=1, description="(query, passage) pairs per optimizer step")
    learning_rate: float = Field(5e-5, gt=0)
    warmup_ratio: float = Field(0.1, ge=0, lt=1)
    weight_decay: float = Field(0.01, ge=0)
    eval_steps: int = Field(100, ge=1, description="dev evaluation and checkpoint interval (steps)")
    eval_on_start: bool = False
    dev_depth: int = Field(20, ge=1, description="first-stage documents reranked per dev query")
    dev_windows: Aggregate = Field(
        "first", description="score the dev documents as `rankwise rerank --windows` does when picking checkpoints"
    )
    tune_interpolation: bool = Field(
        True, description="after training, pick the first-stage weight for `rerank --interpolate` on the dev split"
    )
    interpolation_depth: int | None = Field(
        None,
        ge=1,
        description="first-stage documents per dev query reranked for that pick (default: dev_depth); "
        "set it to the depth you will rerank at, since the best weight depends on it",
    )
    interpolation_windows: Aggregate = Field(
        "first",
        description="score the dev documents for that pick as `rankwise rerank --windows` does (first = plain); "
        "stored with the weight",
    )
    logging_steps: int = Field(10, ge=1)
    save_total_limit: int = Field(2, ge=1)
    seed: int = 42
    resume: bool = Field(True, description="continue from the last checkpoint in output_dir if there is one")
    threads: int | None = Field(None, ge=1, description="torch CPU threads (default: torch's choice)")
    device: str | None = Field(None, description="'cpu' to force the CPU; default: what the Trainer picks")
    trust_remote_code: bool = False
    tracking: TrackingConfig = Field(default_factory=TrackingConfig, description="MLflow / W&B run of this training")

    # MT-RAG tasks (data: mtrag:...): conversation-level train/test split (rankwise.train.mtrag_data).
    mtrag_dir: str | None = Field(None, description="the MT-RAG directory (default: $RANKWISE_DATA/mtrag)")
    split_by: Literal["conversation"] = Field(
        "conversation", description="MT-RAG: held-out tasks are whole conversations (none on both sides)"
    )
    test_fraction: float = Field(
        0.3, gt=0, lt=1, description="MT-RAG: share of each domain's conversations held out (heldout.json)"
    )
    query: Literal["last_turn", "full_history"] = Field(
        "last_turn", description="MT-RAG: the query text, as rewrite.strategy (last user turn / all user turns)"
    )

    @model_validator(mode="after")
    def _check(self) -> RerankerTrainConfig:
        start, end = self.negative_window
        if not 1 <= start <= end:
            raise ValueError(f"negative_window must be [start, end] with 1 <= start <= end, got {start}-{end}")
        if self.in_batch_negatives and self.loss != "softmax":
            raise ValueError("in_batch_negatives applies to loss: softmax only")
        mtrag_only = {"mtrag_dir": None, "test_fraction": 0.3, "query": "last_turn"}
        if not self.data.startswith("mtrag:"):
            changed = [key for key, default in mtrag_only.items() if getattr(self, key) != default]
            if changed:
                raise ValueError(f"{changed[0]} applies to data: mtrag:... only")
        return self


def load_config(path: str | Path, overrides: dict[str, Any] | None = None) -> RerankerTrainConfig:
    """Read a YAML config; ``overrides`` (e.g. from ``--set key=value``) replace its top-level keys."""
    path, text, raw = read_mapping(path, overrides)
    for key in PATH_KEYS:
        if isinstance(raw.get(key), str):
            raw[key] = expand_setting(path, text, key, raw[key])
    return build(RerankerTrainConfig, raw, path, text)
