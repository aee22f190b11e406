"""Which data set a ``-d`` argument names, and loading it for an experiment.

``-d`` accepts, in this order of precedence:

1. ``mtrag:<domain>`` — an MT-RAG domain (clapnq, cloud, fiqa, govt) on its pooled corpus, from
   ``$RANKWISE_DATA/mtrag``; a bare domain name works too when no file of that name exists;
   ``mtrag-human:<domain>`` — the original MT-RAG tasks of the domain judged inside the same pool, where the
   benchmark's human rewrites exist (``rewrite: {strategy: human}``; see
   :func:`rankwise.data.mtrag.load_human_retrieval`); ``mtrag-answerability:<domain>`` — every UNANSWERABLE
   generation task of the domain and as many ANSWERABLE ones (seeded sample), unjudged ones kept, for
   measuring abstention (:func:`rankwise.data.mtrag.load_answerability_probe`);
2. a path to a data set directory or file (BEIR, SMART, HotpotQA);
3. a folder name under ``$RANKWISE_DATA`` (``scifact``, ``cranfield``, ``hotpotqa-train100``);
4. a BEIR data set name, downloaded (md5-checked, cached) by :func:`rankwise.data.download.ensure_beir`.

The table of sources is a plain dict (:data:`SOURCES`): a new kind of data set plugs in with one entry.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from rankwise.config.experiment import DataConfig
from rankwise.errors import RankwiseError
from rankwise.types import Dataset

MTRAG_DOMAINS = ("clapnq", "cloud", "fiqa", "govt")
# -d prefix -> source kind
MTRAG_PREFIXES = {"mtrag": "mtrag", "mtrag-human": "mtrag-human", "mtrag-answerability": "mtrag-answerability"}
KEEPS_UNJUDGED = ("mtrag-answerability",)  # source kinds whose unjudged queries are kept (generation probes)


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
    path = Path(arg)
    if path.exists():
        name = path.name if path.is_dir() else path.stem
        return DatasetSource(name, "files", str(path))
    if root is not None and (root / arg).exists():
        return DatasetSource(Path(arg).name, "files", str(root / arg))
    from rankwise.data.download import BEIR_MD5

    if arg in BEIR_MD5:
        return DatasetSource(arg, "beir-download", arg)
    where = f"$RANKWISE_DATA ({root})" if root is not None else "$RANKWISE_DATA (unset)"
    raise RankwiseError(
        f"-d {arg}: not a path, not a folder of {where}, not a BEIR data set name and not an MT-RAG domain "
        f"(mtrag:{'|'.join(MTRAG_DOMAINS)}, mtrag-human:DOMAIN, mtrag-answerability:DOMAIN)"
    )


def _load_files(source: DatasetSource, config: DataConfig) -> Dataset:
    from rankwise.data import load_dataset

    return load_dataset(source.path, format=config.format, split=config.split)


def _load_beir_download(source: DatasetSource, config: DataConfig) -> Dataset:
    from rankwise.data import load_dataset
    from rankwise.data.download import ensure_beir

    return load_dataset(ensure_beir(source.path), format="beir", split=config.split)


def _load_mtrag(source: DatasetSource, config: DataConfig) -> Dataset:
    from rankwise.data.mtrag import load_pooled_retrieval

    return load_pooled_retrieval(source.path, source.domain or "")


def _load_mtrag_human(source: DatasetSource, config: DataConfig) -> Dataset:
    from rankwise.data.mtrag import load_human_retrieval

    return load_human_retrieval(source.path, source.domain or "")


def _load_mtrag_answerability(source: DatasetSource, config: DataConfig) -> Dataset:
    from rankwise.data.mtrag import load_answerability_probe

    return load_answerability_probe(source.path, source.domain or "")


# source kind -> loader (plain dict literal; see the module docstring).
SOURCES: dict[str, Callable[[DatasetSource, DataConfig], Dataset]] = {
    "files": _load_files,
    "beir-download": _load_beir_download,
    "mtrag": _load_mtrag,
    "mtrag-human": _load_mtrag_human,
    "mtrag-answerability": _load_mtrag_answerability,
}


def load_for_experiment(source: DatasetSource, config: DataConfig) -> Dataset:
    """Load the data set and keep its judged queries (all queries for :data:`KEEPS_UNJUDGED` sources; the first
    ``max_queries`` when set) and their qrels."""
    dataset = SOURCES[source.source](source, config)
    queries = dict(dataset.queries) if source.source in KEEPS_UNJUDGED else dataset.judged_queries()
    if not queries:
        raise RankwiseError(f"{source.path}: no judged queries in split '{config.split}'; nothing to evaluate")
    if config.max_queries is not None:
        queries = dict(list(queries.items())[: config.max_queries])
    qrels = {qid: dataset.qrels[qid] for qid in queries if qid in dataset.qrels}
    return Dataset(dataset.name, dataset.corpus, queries, qrels, list(dataset.warnings))
