"""Settings of the RankRAG instruction blend (``rankwise rankrag build-blend``): a pydantic model read from YAML.

The blend mixes up to five tasks (see :mod:`rankwise.rankrag.blend`): ``context_qa``, ``rag_qa`` and, when a
source lists it, ``retrieved_qa`` (answering), and ``ranking`` and ``rag_ranking`` (ranking). ``size`` examples in
all, ``round(size * ranking_fraction)`` of them ranking ones; inside each group the tasks share by
``task_weights``. Each source is a section that may be left out (or set to ``null``); ``cap`` bounds how many
examples it gives in all.

Unknown keys are errors naming the key, the file and its line. Paths may use environment variables
(``path: ${RANKWISE_DATA}/scifact``). ``--set`` overrides take dotted keys (``--set scifact.cap=500``).

Held-out data never enters the blend: SciFact is read from ``qrels/train.tsv`` only (``split`` other than
``train`` is refused), HotpotQA questions are split by :func:`rankwise.data.hotpotqa.hotpotqa_split` and only the
training part is used; the builder also refuses any example whose question is a held-out one.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from rankwise.config.yaml_config import build, read_mapping
from rankwise.config.yaml_keys import expand_path

Task = Literal["context_qa", "rag_qa", "retrieved_qa", "ranking", "rag_ranking"]
QA_TASKS: tuple[str, ...] = ("context_qa", "rag_qa", "retrieved_qa")
RANKING_TASKS: tuple[str, ...] = ("ranking", "rag_ranking")
TASKS: tuple[str, ...] = QA_TASKS + RANKING_TASKS


class _Source(BaseModel):
    model_config = ConfigDict(extra="forbid", validate_default=True)

    path: str = Field(description="where the source's data is")
    cap: int | None = Field(None, ge=0, description="most examples this source gives in all (null: no cap)")

    @field_validator("path")
    @classmethod
    def _expand(cls, value: str) -> str:
        return expand_path(value)


class HotpotQASource(_Source):
    path: str = Field("${RANKWISE_DATA}/hotpotqa-train100/hotpotqa_train.json", description="HotpotQA JSON file")
    heldout: int = Field(50, ge=0, description="questions held out for evaluation (never in the blend)")
    split_seed: int = Field(0, description="seed of the question split (hotpotqa_split)")
    tasks: list[Task] = Field(
        ["context_qa", "rag_qa", "ranking", "rag_ranking"],
        description="tasks built from this source (retrieved_qa too when asked: the generator curriculum's last stage)",
    )


class MTRAGSource(_Source):
    path: str = Field("${RANKWISE_DATA}/mtrag", description="the mtrag directory (generation tasks)")
    domains: list[str] | None = Field(None, description="domains to use (clapnq, cloud, fiqa, govt); null: all")
    unanswerable: bool = Field(
        True, description="UNANSWERABLE tasks become rag_qa examples whose target is the abstention string"
    )
    tasks: list[Task] = Field(["context_qa", "rag_qa", "rag_ranking"], description="tasks built from this source")


class SciFactSource(_Source):
    path: str = Field("${RANKWISE_DATA}/scifact", description="BEIR SciFact directory")
    split: str = Field("train", description="qrels split; only 'train' is allowed (test queries are held out)")
    negative_window: tuple[int, int] = Field((10, 100), description="1-based BM25 ranks negatives come from")
    num_negatives: int = Field(1, ge=1, description="negatives (False examples) per positive (True example)")
    tasks: list[Task] = Field(["ranking", "rag_ranking"], description="tasks built from this source")
    dev_queries: int = Field(
        0,
        ge=0,
        description="judged train queries kept out of the blend; `rankwise rankrag train` picks the first-stage "
        "weight for `interpolate: auto` on them (50 with dev_seed 42 = the queries `train reranker` holds out)",
    )
    dev_seed: int = Field(42, description="seed of the dev split (the cross-encoder trainer's default seed)")

    @field_validator("split")
    @classmethod
    def _train_only(cls, value: str) -> str:
        if value != "train":
            raise ValueError(f"split '{value}' would put held-out queries into the blend; only 'train' is allowed")
        return value

    @model_validator(mode="after")
    def _check(self) -> SciFactSource:
        start, end = self.negative_window
        if not 1 <= start <= end:
            raise ValueError(f"negative_window must be [start, end] with 1 <= start <= end, got {start}-{end}")
        return self


class QAJsonlSource(_Source):
    """User QA: JSONL lines ``{"id"?, "question", "answer" | "answers", "passages": [str | {title, text}],
    "gold"?: [0-based indexes of the passages that support the answer]}``."""

    tasks: list[Task] = Field(["context_qa", "rag_qa"], description="tasks built from this source")


class TriplesSource(_Source):
    """MS MARCO-style triples: TSV ``query<TAB>positive<TAB>negative`` or JSONL ``{query, positive, negative}``."""

    tasks: list[Task] = Field(["ranking"], description="tasks built from this source")


class BlendConfig(BaseModel):
    """One blend. Sources left out (or null) are not used; at least one is needed."""

    model_config = ConfigDict(extra="forbid")

    size: int = Field(2000, ge=1, description="examples in the blend")
    ranking_fraction: float = Field(0.1, ge=0.0, le=1.0, description="share of ranking + rag_ranking examples")
    seed: int = Field(0, description="seed of every sampling and shuffling step")
    task_weights: dict[Task, float] = Field(
        {"context_qa": 1.0, "rag_qa": 1.0, "retrieved_qa": 1.0, "ranking": 1.0, "rag_ranking": 1.0},
        description="relative shares of the tasks inside the QA group and inside the ranking group",
    )
    tokenizer: str = Field("smollm2", description="tokenizer of the model to train (passage truncation, token counts)")
    max_passage_tokens: int = Field(128, ge=1, description="ranking passages are cut to this many tokens")
    ranking_template: str | None = Field(None, description="ranking prompt with {question} and {passage}")
    ranking_system_prompt: str | None = Field(None, description="system turn of the ranking prompt (default none)")
    qa_template: str = Field("short", description="generator prompt template (name or YAML file) for QA examples")
    max_passage_words: int | None = Field(80, ge=1, description="QA passages cut to this many words (as generate)")
    max_example_tokens: int | None = Field(
        None,
        ge=16,
        description="QA / rag_ranking examples longer than this (prompt + answer tokens) are rendered again with "
        "shorter passages and history turns until they fit; set it to the training max_length (training does)",
    )
    contexts: int = Field(5, ge=1, description="passages shown in rag_qa / rag_ranking examples")
    rag_variants: int = Field(
        1, ge=1, description="rag_qa / rag_ranking candidates per query, each with other negatives and order"
    )
    hotpotqa: HotpotQASource | None = None
    mtrag: MTRAGSource | None = None
    scifact: SciFactSource | None = None
    qa_jsonl: QAJsonlSource | None = None
    triples: TriplesSource | None = None

    @model_validator(mode="after")
    def _check(self) -> BlendConfig:
        if not any(getattr(self, name) is not None for name in SOURCES):
            raise ValueError(f"no source configured: add at least one of {', '.join(SOURCES)}")
        if any(weight < 0 for weight in self.task_weights.values()):
            raise ValueError("task_weights must not be negative")
        return self

    def sources(self) -> dict[str, _Source]:
        """The configured sources by name, in a fixed order."""
        return {name: source for name in SOURCES if (source := getattr(self, name)) is not None}


SOURCES: tuple[str, ...] = ("hotpotqa", "mtrag", "scifact", "qa_jsonl", "triples")


def load_blend_config(path: str | Path, overrides: dict[str, Any] | None = None) -> BlendConfig:
    """Read a YAML blend config; ``overrides`` replace keys, dotted ones inside sections (``scifact.cap``)."""
    overrides = dict(overrides or {})
    nested = {key: overrides.pop(key) for key in list(overrides) if "." in key}
    path, text, raw = read_mapping(path, overrides)
    for dotted, value in nested.items():
        section, _, key = dotted.partition(".")
        target = raw.get(section)
        if target is None and section in SOURCES:
            target = raw[section] = {}
        if not isinstance(target, dict):
            raw[dotted] = value  # reported as an unknown key by the model
            continue
        target[key] = value
    return from_mapping(raw, path, text)


def from_mapping(raw: dict[str, Any], path: str | Path = "<blend config>", text: str = "") -> BlendConfig:
    """Validate an already-read mapping (e.g. the ``blend:`` section of a training config)."""
    return build(BlendConfig, raw, Path(path), text)
