"""Settings of ``rankwise rankrag train``: a pydantic model read from YAML (``yaml.safe_load``).

Unknown keys are an error naming the key, the file and its line. Path settings may name environment variables
(``blend_path: ${RANKWISE_DATA}/...``). Stage-II data is either ``blend_path`` (a blend JSONL written by
``rankwise rankrag build-blend``) or a ``blend:`` section (:class:`rankwise.config.rankrag_blend.BlendConfig`),
built on the fly into ``<output_dir>/blend.jsonl``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from rankwise.config.sections.run import TrackingConfig
from rankwise.config.yaml_config import build, expand_setting, read_mapping

PATH_KEYS = ("output_dir", "blend_path")


class LoraSettings(BaseModel):
    """peft ``LoraConfig`` knobs (``target_modules: all-linear`` = every linear layer but the output head)."""

    model_config = ConfigDict(extra="forbid")

    r: int = Field(16, ge=1, description="adapter rank")
    alpha: int = Field(32, ge=1, description="scaling numerator (lora_alpha)")
    dropout: float = Field(0.05, ge=0, lt=1)
    target_modules: list[str] | str = Field("all-linear", description="module names, or 'all-linear'")
    layers: int | None = Field(
        None,
        ge=1,
        description="adapt only the last N transformer layers: backpropagation stops below them (SmolLM2, last 10 "
        "of 30: ~2x faster CPU steps); null: every layer",
    )


class StageOne(BaseModel):
    """Optional Stage-I: general instruction SFT (for base models) before the blend.

    ``data``: a JSONL file in trl's ``messages`` (conversational) or ``prompt``/``completion`` format, or a
    Hugging Face dataset name (loaded with ``datasets.load_dataset(data, split=split)``).
    """

    model_config = ConfigDict(extra="forbid")

    data: str
    split: str = "train"
    max_steps: int = Field(100, ge=1)
    learning_rate: float | None = Field(None, gt=0, description="default: the Stage-II learning rate")
    limit: int | None = Field(None, ge=1, description="first N examples only")


class Curriculum(BaseModel):
    """The generator curriculum (:mod:`rankwise.rankrag.curriculum`): QA passages from gold alone (until
    ``gold_until`` of the examples seen), gold mixed with BM25 negatives (until ``mixed_until``), then as retrieved.
    The blend needs all three QA tasks: list ``retrieved_qa`` in the sources' tasks."""

    model_config = ConfigDict(extra="forbid")

    gold_until: float = Field(0.3, gt=0, lt=1, description="share of training on gold passages alone")
    mixed_until: float = Field(0.7, gt=0, le=1, description="end of the gold + retrieved stage (share of training)")

    @model_validator(mode="after")
    def _order(self) -> Curriculum:
        if self.mixed_until <= self.gold_until:
            raise ValueError(f"mixed_until ({self.mixed_until}) must be after gold_until ({self.gold_until})")
        return self


class RankRAGTrainConfig(BaseModel):
    """One RankRAG training run (LoRA on a causal LM). Paths are as given (relative to the working directory)."""

    model_config = ConfigDict(extra="forbid")

    output_dir: str = Field(description="checkpoints/, adapter/, model/, metrics.json and log.jsonl go here")
    model: str = Field("smollm2", description="start point: 'smollm2' (bundled GGUF), a hub name or a local path")
    blend_path: str | None = Field(None, description="Stage-II blend JSONL (rankwise rankrag build-blend)")
    blend: dict[str, Any] | None = Field(None, description="a BlendConfig section: build the blend on the fly")
    stage1: StageOne | None = None
    curriculum: Curriculum | None = Field(None, description="generator curriculum over Stage II (null: plain blend)")
    schedule: Literal["joint", "sequential"] = Field(
        "joint",
        description="joint: Stage II's tasks shuffled together (RankRAG); sequential: the ranking examples first, "
        "then the QA ones (the ablation RankRAG compares with)",
    )
    max_steps: int = Field(60, ge=1, description="Stage-II optimizer steps (the training budget)")
    batch_size: int = Field(8, ge=1, description="sequences per device per step")
    gradient_accumulation_steps: int = Field(1, ge=1)
    learning_rate: float = Field(2e-4, gt=0)
    warmup_ratio: float = Field(0.05, ge=0, lt=1)
    weight_decay: float = Field(0.0, ge=0)
    max_length: int = Field(
        512, ge=16, description="prompt + completion tokens, cut at the end (examples cut before the answer: dropped)"
    )
    lora: LoraSettings = LoraSettings()
    qlora: bool = Field(False, description="4-bit base weights (bitsandbytes + a CUDA GPU; untested here)")
    merge: bool = Field(True, description="save a merged plain checkpoint in model/ (else model/ holds the adapter)")
    dtype: Literal["auto", "float32", "bfloat16", "float16"] = Field(
        "auto", description="auto: bfloat16 where the hardware runs it natively (CUDA, AVX512-BF16/AMX), else float32"
    )
    gradient_checkpointing: bool = False
    save_steps: int = Field(20, ge=1, description="checkpoint interval (steps)")
    save_total_limit: int = Field(2, ge=1)
    logging_steps: int = Field(5, ge=1)
    seed: int = 0
    resume: bool = Field(True, description="continue from the last checkpoint in output_dir if there is one")
    threads: int | None = Field(None, ge=1, description="torch CPU threads (default: torch's choice)")
    device: str | None = Field(None, description="'cpu' to force the CPU; default: what the Trainer picks")
    trust_remote_code: bool = False
    tracking: TrackingConfig = Field(default_factory=TrackingConfig, description="MLflow / W&B run of this training")
    tune_interpolation: bool = Field(
        True,
        description="after training, pick the first-stage weight for `rerank: {kind: rankrag, interpolate: auto}` "
        "on the blend's SciFact dev queries (scifact.dev_queries > 0; otherwise nothing to pick on)",
    )
    interpolation_depth: int = Field(20, ge=1, description="BM25 depth the dev pick reranks (the study's depth)")

    @model_validator(mode="after")
    def _check(self) -> RankRAGTrainConfig:
        if (self.blend_path is None) == (self.blend is None):
            raise ValueError("give exactly one of blend_path (a blend JSONL) and blend (a BlendConfig section)")
        if self.schedule == "sequential" and self.curriculum is not None:
            raise ValueError("schedule: sequential and a curriculum each order Stage II; give one of them")
        return self


def blend_config(section: dict[str, Any], path: str | Path = "<blend section>", text: str = "") -> Any:
    """Validate a ``blend:`` section as BLEND's ``BlendConfig`` (errors name the key, file and line)."""
    from rankwise.config.rankrag_blend import from_mapping

    return from_mapping(dict(section), path, text)


def load_train_config(path: str | Path, overrides: dict[str, Any] | None = None) -> RankRAGTrainConfig:
    """Read a YAML config; ``overrides`` (e.g. from ``--set key=value``) replace its top-level keys."""
    path, text, raw = read_mapping(path, overrides)
    for key in PATH_KEYS:
        if isinstance(raw.get(key), str):
            raw[key] = expand_setting(path, text, key, raw[key])
    config = build(RankRAGTrainConfig, raw, path, text)
    if config.blend is not None:
        blend_config(config.blend, path, text)  # fail now, not after the model has loaded
    return config
