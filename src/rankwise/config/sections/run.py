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
    format: Literal["beir", "smart", "hotpotqa", "nq-open", "triviaqa", "popqa", "qa-jsonl"] | None = Field(
        None, description="data set format; for open-domain QA (-d open-qa:FILE) the question file's format"
    )
    corpus: str | None = Field(
        None, description="open-domain QA: the corpus (corpus.jsonl or psgs_w100.tsv); default: beside the file"
    )
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
    tasks_file: str | None = Field(
        None,
        description="keep only the tasks listed in this heldout.json (written by `rankwise train reranker` on "
        "data: mtrag:...): evaluate on the held-out conversations",
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
        from rankwise.evaluate.qa import parse_answer_recall
        from rankwise.evaluate.retrieval import parse_measures

        ir_names = [name for name in names if parse_answer_recall(name) is None]  # AnswerRecall@k: open QA
        try:
            if ir_names:
                parse_measures(ir_names)
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
