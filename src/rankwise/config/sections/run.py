"""The run's other sections: which part of a data set, what is measured, where results are tracked."""

from __future__ import annotations

from typing import Literal

from pydantic import (
    Field,
    PositiveInt,
    field_validator,
)

from rankwise.config.sections.base import Strict
from rankwise.errors import RankwiseError


class DataConfig(Strict):
    split: str = "test"
    format: Literal["beir", "smart", "hotpotqa"] | None = None
    max_queries: PositiveInt | None = Field(None, description="keep the first N judged queries (quick runs)")
    setting: Literal["open", "distractor"] = Field(
        "open", description="HotpotQA: open = rank the whole corpus; distractor = each question's own paragraphs"
    )
    sentence_lines: bool = Field(
        False, description="HotpotQA: one sentence per line in each paragraph (what [n.s] citations number)"
    )
    answerability: list[Literal["ANSWERABLE", "PARTIAL", "UNANSWERABLE", "UNDERSPECIFIED"]] | None = Field(
        None, description="MT-RAG generation tasks (mtrag-tasks:DOMAIN): keep the tasks with these labels"
    )
    per_label_limit: PositiveInt | None = Field(
        None, description="MT-RAG generation tasks: keep the first N tasks of each answerability label"
    )


class EvaluateConfig(Strict):
    metrics: list[str] = Field(default_factory=lambda: ["nDCG@10", "RR@10", "R@100"], min_length=1)
    missing: Literal["skip", "zero"] = "skip"
    sweep: list[PositiveInt] = Field(
        default_factory=lambda: [1, 3, 5, 10, 20, 50, 100], description="cutoffs k for the nDCG@k / R@k sweep"
    )

    @field_validator("metrics")
    @classmethod
    def _known_metrics(cls, names: list[str]) -> list[str]:
        from rankwise.evaluate.retrieval import parse_measures

        try:
            parse_measures(names)
        except RankwiseError as exc:
            raise ValueError(str(exc)) from None
        return names

    @field_validator("sweep")
    @classmethod
    def _sorted_sweep(cls, cutoffs: list[int]) -> list[int]:
        return sorted(set(cutoffs))


class TrackingConfig(Strict):
    backend: Literal["none", "mlflow", "wandb"] = "none"
    uri: str | None = Field(None, description="mlflow: tracking URI (default file store ./mlruns); wandb: dir")
    project: str = "rankwise"
