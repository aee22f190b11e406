"""Which data set a ``-d`` argument names, and loading it for an experiment.

``-d`` accepts, in this order of precedence:

1. ``mtrag:<domain>`` — an MT-RAG domain (clapnq, cloud, fiqa, govt) on its pooled corpus, from
   ``$RANKWISE_DATA/mtrag``; a bare domain name works too when no file of that name exists;
   ``mtrag-human:<domain>`` — the original MT-RAG tasks of the domain judged inside the same pool, where the
   benchmark's human rewrites exist (``rewrite: {strategy: human}``; see
   :func:`rankwise.data.mtrag.load_human_retrieval`); ``mtrag-answerability:<domain>`` — every UNANSWERABLE
   generation task of the domain and as many ANSWERABLE ones (seeded sample), unjudged ones kept, for
   measuring abstention (:func:`rankwise.data.mtrag.load_answerability_probe`); ``mtrag-tasks:<domain>`` —
   every MT-RAG-UN generation task of the domain, unjudged ones kept (``data.answerability`` picks labels,
   ``data.per_label_limit`` caps each label);
2. ``open-qa:<file>`` — open-domain QA questions with gold answers (NQ-open, TriviaQA, PopQA or the generic
   ``{"id", "question", "answers"}`` JSONL; :mod:`rankwise.data.open_qa`) over the corpus beside the file
   (``corpus.jsonl`` or ``psgs_w100.tsv``) or ``data.corpus``; no judgements: scored by ``AnswerRecall@k``;
3. a path to a data set directory or file (BEIR, SMART, HotpotQA);
4. a folder name under ``$RANKWISE_DATA`` (``scifact``, ``cranfield``, ``hotpotqa-train100``);
5. a BEIR data set name, downloaded (md5-checked, cached) by :func:`rankwise.data.download.ensure_beir`.

The table of sources is a plain dict (:data:`SOURCES`): a new kind of data set plugs in with one entry.

HotpotQA options of the ``data`` section: ``sentence_lines`` builds each paragraph one sentence per line (what
the sentence-numbered prompt template cites), and ``setting: distractor`` gives each question the candidate set
of its own paragraphs (:func:`candidate_sets`; the retrieve stage ranks only those, with the statistics of the
whole file's corpus).
"""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from rankwise.config.experiment import DataConfig
from rankwise.data import detect_format, load_dataset
from rankwise.data.download import BEIR_MD5, ensure_beir
from rankwise.data.hotpotqa import hotpotqa_inputs
from rankwise.data.mtrag import (
    load_answerability_probe,
    load_generation_tasks,
    load_human_retrieval,
    load_pooled_retrieval,
)
from rankwise.data.mtrag_split import read_heldout_tasks
from rankwise.data.open_qa import QA_FORMATS, load_open_qa
from rankwise.errors import RankwiseError
from rankwise.types import Dataset

MTRAG_DOMAINS = ("clapnq", "cloud", "fiqa", "govt")
# -d prefix -> source kind
MTRAG_PREFIXES = {
    "mtrag": "mtrag",
    "mtrag-human": "mtrag-human",
    "mtrag-answerability": "mtrag-answerability",
    "mtrag-tasks": "mtrag-tasks",
}
OPEN_QA = "open-qa"
KEEPS_UNJUDGED = ("mtrag-answerability", "mtrag-tasks", OPEN_QA)  # sources whose unjudged queries are kept (generation)


@dataclass(frozen=True)
class DatasetSource:
    """A resolved ``-d`` argument: ``name`` names the output folder; ``source`` picks the loader."""

    name: str
    source: str
    path: str
    domain: str | None = None


def data_root() -> Path | None:
    env = os.environ.get("RANKWISE_DATA")
    return Path(env) if env else None


def resolve_dataset(arg: str) -> DatasetSource:
    """Resolve one ``-d`` argument (see the module docstring); raise :class:`RankwiseError` when nothing fits."""
    root = data_root()
    prefix, sep, domain = arg.partition(":")
    if (sep and prefix in MTRAG_PREFIXES) or (not sep and arg in MTRAG_DOMAINS and not Path(arg).exists()):
        prefix, domain = (prefix, domain) if sep else ("mtrag", arg)
        if root is None or not (root / "mtrag").is_dir():
            raise RankwiseError(f"-d {arg}: MT-RAG is read from $RANKWISE_DATA/mtrag; set RANKWISE_DATA")
        return DatasetSource(f"{prefix}-{domain}", MTRAG_PREFIXES[prefix], str(root / "mtrag"), domain)
    if sep and prefix == OPEN_QA:
        if not Path(domain).is_file():
            raise RankwiseError(f"-d {arg}: {domain}: no such question file")
        return DatasetSource(Path(domain).stem, OPEN_QA, domain)
    path = Path(arg)
    if path.exists():
        name = path.name if path.is_dir() else path.stem
        return DatasetSource(name, "files", str(path))
    if root is not None and (root / arg).exists():
        return DatasetSource(Path(arg).name, "files", str(root / arg))

    if arg in BEIR_MD5:
        return DatasetSource(arg, "beir-download", arg)
    where = f"$RANKWISE_DATA ({root})" if root is not None else "$RANKWISE_DATA (unset)"
    raise RankwiseError(
        f"-d {arg}: not a path, not a folder of {where}, not a BEIR data set name and not an MT-RAG domain "
        f"(mtrag:{'|'.join(MTRAG_DOMAINS)}, mtrag-human:DOMAIN, mtrag-answerability:DOMAIN, mtrag-tasks:DOMAIN)"
    )


def _load_files(source: DatasetSource, config: DataConfig) -> Dataset:
    if not config.sentence_lines:
        return load_dataset(source.path, format=config.format, split=config.split)

    dataset = load_dataset(source.path, format=_hotpotqa_only(source, config, "sentence_lines"), split=config.split)
    _, lines, _ = hotpotqa_inputs(source.path)
    return Dataset(dataset.name, lines, dataset.queries, dataset.qrels, dataset.warnings)


def _hotpotqa_only(source: DatasetSource, config: DataConfig, key: str) -> str:
    """``"hotpotqa"``, or a one-line error naming ``data.<key>`` when ``source`` is not a HotpotQA file."""
    fmt = config.format or (detect_format(source.path) if source.source == "files" else source.source)
    if fmt != "hotpotqa":
        raise RankwiseError(f"data.{key} applies to HotpotQA files; {source.path} is {fmt} data")
    return fmt


def candidate_sets(source: DatasetSource, config: DataConfig) -> dict[str, list[str]] | None:
    """Each question's own paragraphs (``data.setting: distractor``), else None (rank the whole corpus)."""
    if config.setting == "open":
        return None

    _hotpotqa_only(source, config, "setting")
    return hotpotqa_inputs(source.path)[2]


def _load_beir_download(source: DatasetSource, config: DataConfig) -> Dataset:
    return load_dataset(ensure_beir(source.path), format="beir", split=config.split)


def _load_mtrag(source: DatasetSource, config: DataConfig) -> Dataset:
    return load_pooled_retrieval(source.path, source.domain or "")


def _load_mtrag_human(source: DatasetSource, config: DataConfig) -> Dataset:
    return load_human_retrieval(source.path, source.domain or "")


def _load_mtrag_answerability(source: DatasetSource, config: DataConfig) -> Dataset:
    return load_answerability_probe(source.path, source.domain or "")


def _load_mtrag_tasks(source: DatasetSource, config: DataConfig) -> Dataset:
    """Every generation task of the domain with a chosen label (all labels by default), the first
    ``per_label_limit`` of each label, in file order; the pooled corpus and the judgements they have."""
    tasks = load_generation_tasks(source.path, [source.domain or ""])
    pooled = load_pooled_retrieval(source.path, source.domain or "", tasks)
    labels = set(config.answerability or [t.answerability for t in tasks])
    seen: dict[str, int] = {}
    chosen = []
    for task in tasks:
        seen[task.answerability] = seen.get(task.answerability, 0) + 1
        if task.answerability in labels and (
            config.per_label_limit is None or seen[task.answerability] <= config.per_label_limit
        ):
            chosen.append(task)
    note = f"{source.domain}: {len(chosen)} of {len(tasks)} generation tasks (labels {', '.join(sorted(labels))})"
    queries = {t.id: t.query() for t in chosen}
    qrels = {q: pooled.qrels[q] for q in queries if q in pooled.qrels}
    return Dataset(f"mtrag-tasks-{source.domain}-pooled", pooled.corpus, queries, qrels, [*pooled.warnings, note])


def _load_open_qa(source: DatasetSource, config: DataConfig) -> Dataset:
    fmt = config.format if config.format in QA_FORMATS else None
    if config.format is not None and fmt is None:
        raise RankwiseError(f"data.format '{config.format}' is not a QA file format ({', '.join(QA_FORMATS)})")
    return load_open_qa(source.path, config.corpus, fmt)


# source kind -> loader (plain dict literal; see the module docstring).
SOURCES: dict[str, Callable[[DatasetSource, DataConfig], Dataset]] = {
    "files": _load_files,
    "beir-download": _load_beir_download,
    "mtrag": _load_mtrag,
    "mtrag-human": _load_mtrag_human,
    "mtrag-answerability": _load_mtrag_answerability,
    "mtrag-tasks": _load_mtrag_tasks,
    OPEN_QA: _load_open_qa,
}


def load_for_experiment(source: DatasetSource, config: DataConfig) -> Dataset:
    """Load the data set and keep its judged queries (all queries for :data:`KEEPS_UNJUDGED` sources; those of
    ``tasks_file`` when set; the first ``max_queries`` when set) and their qrels."""
    if (config.answerability is not None or config.per_label_limit is not None) and source.source != "mtrag-tasks":
        raise RankwiseError(
            f"data.answerability and data.per_label_limit apply to -d mtrag-tasks:DOMAIN, not {source.name}"
        )
    if config.corpus is not None and source.source != OPEN_QA:
        raise RankwiseError(f"data.corpus applies to -d open-qa:FILE, not {source.name}")
    dataset = SOURCES[source.source](source, config)
    queries = dict(dataset.queries) if source.source in KEEPS_UNJUDGED else dataset.judged_queries()
    if config.tasks_file is not None:
        listed = read_heldout_tasks(config.tasks_file)
        queries = {qid: query for qid, query in queries.items() if qid in listed}
        if not queries:
            raise RankwiseError(f"data.tasks_file {config.tasks_file}: none of its tasks is a query of {source.name}")
    if not queries:
        raise RankwiseError(f"{source.path}: no judged queries in split '{config.split}'; nothing to evaluate")
    if config.max_queries is not None:
        queries = dict(list(queries.items())[: config.max_queries])
    qrels = {qid: dataset.qrels[qid] for qid in queries if qid in dataset.qrels}
    answers = {qid: dataset.answers[qid] for qid in queries if qid in dataset.answers}
    return Dataset(dataset.name, dataset.corpus, queries, qrels, list(dataset.warnings), answers)
