"""``rankwise rag`` as an experiment: HotpotQA or MT-RAG end to end (retrieve -> rerank -> answer with citations)
is an :class:`~rankwise.config.experiment.ExperimentConfig` run by :func:`rankwise.experiment.runner.run_experiment`,
with its records, resume and output folders (``<out_root>/<name>/<dataset>/``: ``config.yaml``, ``runs/*.trec``,
``answers.jsonl``, ``per_query.json``, ``metrics.json``; see :mod:`rankwise.experiment.runner`).

The stage sections come in built (from the CLI's flags, or from a caller such as the RankRAG study); this module
adds what each data set needs and picks the data sources:

- HotpotQA: paragraphs one sentence per line (what the sentence-numbered template cites), the ``distractor``
  setting (each question ranks its own paragraphs, with BM25/dense statistics from the whole file's corpus) or
  ``open`` (the whole corpus), and the R@2/R@5 the summary turns into "both gold paragraphs in the top 2/5";
- open-domain QA (``open-qa:FILE``, :mod:`rankwise.data.open_qa`): questions with gold answers over a corpus,
  no judgements: retrieval is scored by answer recall@5/20/100 (DPR's top-k accuracy), answers by EM/F1 against
  any gold answer;
- MT-RAG, one data set per domain, evaluated on pooled corpora (:mod:`rankwise.data.mtrag`): without a generator
  the judged tasks (``mtrag:<domain>``) or, with ``subset="human"``, the original tasks that have the benchmark's
  human rewrites (``mtrag-human:<domain>``); with one, the generation tasks of the chosen answerability labels
  (``mtrag-tasks:<domain>``), answered from the retrieved or the reference passages.

:func:`run_rag` runs the config and returns the summary :mod:`rankwise.experiment.rag_scores` reads back.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from rankwise.config.experiment import DataConfig, EvaluateConfig, ExperimentConfig
from rankwise.data import mtrag
from rankwise.errors import RankwiseError
from rankwise.experiment.datasets import OPEN_QA, DatasetSource
from rankwise.experiment.rag_scores import hotpotqa_summary, mtrag_summary, open_qa_summary
from rankwise.experiment.runner import run_experiment

HOTPOTQA_METRICS = ["nDCG@10", "R@2", "R@5", "R@10", "R@100"]
MTRAG_METRICS = ["nDCG@10", "R@5", "R@10"]
OPEN_QA_METRICS = ["AnswerRecall@5", "AnswerRecall@20", "AnswerRecall@100"]
SETTINGS = ("distractor", "open")
HOTPOT_PARAGRAPHS = 10  # a HotpotQA distractor question has (at most) 10 paragraphs: all of them are reranked


def hotpotqa_experiment(
    path: str | Path,
    name: str,
    stages: Mapping[str, Any],
    setting: str = "distractor",
    limit: int | None = None,
) -> tuple[ExperimentConfig, list[DatasetSource]]:
    """HotpotQA at ``path`` (a question file or the folder holding one) with the given stage sections
    (``retrieve`` {name: section}, optional ``fuse``, ``rerank``, ``generate``); ``limit``: the first N questions."""
    if setting not in SETTINGS:
        raise RankwiseError(f"unknown HotpotQA setting '{setting}' (known: {', '.join(SETTINGS)})")
    path = Path(path)
    if not path.exists():
        raise RankwiseError(f"{path}: no such file or directory")
    rerank = stages.get("rerank")
    if rerank is not None and setting == "distractor":
        rerank = rerank.model_copy(update={"top_n": max(rerank.top_n, HOTPOT_PARAGRAPHS)})
    data = DataConfig(format="hotpotqa", setting=setting, sentence_lines=True, max_queries=limit)
    config = _config(name, {**stages, "rerank": rerank}, data, HOTPOTQA_METRICS)
    source = DatasetSource(path.name if path.is_dir() else path.stem, "files", str(path))
    return config, [source]


def open_qa_experiment(
    path: str | Path,
    name: str,
    stages: Mapping[str, Any],
    corpus: str | Path | None = None,
    limit: int | None = None,
) -> tuple[ExperimentConfig, list[DatasetSource]]:
    """Open-domain QA questions at ``path`` (NQ-open, TriviaQA, PopQA or QA JSONL) over ``corpus`` (default: the
    ``corpus.jsonl`` or ``psgs_w100.tsv`` beside the file); ``limit``: the first N questions."""
    path = Path(path)
    if not path.is_file():
        raise RankwiseError(f"{path}: no such question file")
    data = DataConfig(corpus=None if corpus is None else str(corpus), max_queries=limit)
    return _config(name, stages, data, OPEN_QA_METRICS), [DatasetSource(path.stem, OPEN_QA, str(path))]


def mtrag_experiment(
    path: str | Path,
    name: str,
    stages: Mapping[str, Any],
    domains: Sequence[str] | None = None,
    subset: str = "un",
    answerability: Sequence[str] | None = None,
    per_label_limit: int | None = None,
    limit: int | None = None,
) -> tuple[ExperimentConfig, list[DatasetSource]]:
    """MT-RAG under ``path`` per domain (default all four); ``limit`` and ``per_label_limit`` count per domain."""
    generated = stages.get("generate") is not None
    if subset not in ("un", "human"):
        raise RankwiseError(f"subset must be 'un' (MT-RAG-UN tasks) or 'human' (original tasks), not '{subset}'")
    if subset == "human" and generated:
        raise RankwiseError("the 'human' subset is for retrieval only: run it without a generator")
    unknown = sorted(set(answerability or ()) - set(mtrag.ANSWERABILITY))
    if unknown:
        raise RankwiseError(f"unknown answerability label(s) {unknown} (known: {', '.join(mtrag.ANSWERABILITY)})")
    options: dict[str, Any] = {"max_queries": limit}
    if generated:
        options.update(answerability=sorted(answerability) if answerability else None, per_label_limit=per_label_limit)
    kind = "mtrag-human" if subset == "human" else "mtrag-tasks" if generated else "mtrag"
    chosen = [mtrag.canonical_domain(d) for d in (domains or mtrag.DOMAINS)]
    sources = [DatasetSource(f"{kind}-{d}", kind, str(path), d) for d in chosen]
    return _config(name, stages, DataConfig(**options), MTRAG_METRICS), sources


def _config(name: str, stages: Mapping[str, Any], data: DataConfig, metrics: list[str]) -> ExperimentConfig:
    try:
        return ExperimentConfig(
            name=name,
            data=data,
            evaluate=EvaluateConfig(metrics=metrics),
            **{stage: section for stage, section in stages.items() if section is not None},
        )
    except ValidationError as exc:  # the name, or how the sections fit together
        error = exc.errors()[0]
        key = ".".join(str(part) for part in error["loc"]) or "(top level)"
        raise RankwiseError(f"rag experiment {name!r}: {key}: {error['msg']}") from None


def run_rag(
    dataset: str,
    config: ExperimentConfig,
    sources: Sequence[DatasetSource],
    out_root: Path,
    log: Callable[[str], None] = print,
    show_progress: bool = True,
) -> tuple[dict[str, Any], list[Path]]:
    """Run ``config`` on ``sources`` into ``out_root/<name>/<dataset>/`` (indexes cached in ``out_root/.indexes``);
    return the summary of ``dataset`` (``hotpotqa``, ``open-qa`` or ``mtrag``) and the output folders."""
    folders = run_experiment(config, list(sources), out_root, show_progress=show_progress, log=log)
    if dataset == "hotpotqa":
        return hotpotqa_summary(folders[0]), folders
    return (open_qa_summary(folders[0]) if dataset == OPEN_QA else mtrag_summary(folders)), folders
