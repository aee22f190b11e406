"""What a server serves: a :class:`~rankwise.experiment.pipeline.Pipeline` built through :mod:`rankwise.build`,
from an experiment config or from the flags of ``rankwise ask``.

:func:`from_config` serves the stages of an experiment config on one data set: the same retriever sections
(each searched to its own ``k``, opened from the experiment's index cache ``<out>/.indexes`` or built there), the
same fusion, the same reranker (its model trained by ``rankwise run``, its ``top_n`` and ``interpolate``) and the
same generator with its ``top_k``: the pipeline whose ``metrics.json`` was measured. :func:`from_flags` turns
``rankwise ask``'s flags into the same section objects and builds them the same way.

:class:`Served` is the pipeline plus what serving needs beyond it: how deep each stage ranks, the first-stage
interpolation weight, how the search query is made from a conversation, and the description ``/healthz`` gives.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from rankwise.build import build_generator, build_reranker, interpolation_weight
from rankwise.config.experiment import ExperimentConfig, dump_config, load_config
from rankwise.errors import RankwiseError
from rankwise.experiment import stages as experiment_stages
from rankwise.experiment.ask_parts import add_models, open_indexes, preload
from rankwise.experiment.cache import content_hash
from rankwise.experiment.datasets import SOURCES, resolve_dataset
from rankwise.experiment.pipeline import FusedRetriever, Pipeline
from rankwise.retrieve.rewrite import full_history
from rankwise.retrieve.store import corpus_fingerprint
from rankwise.types import Document, Query, Run

Log = Callable[[str], None]
SERVED_REWRITES = ("last_turn", "full_history")


@dataclass
class Served:
    """A built pipeline and its serving settings.

    ``pipeline.candidates`` documents come from the first stage; with a reranker, its best ``rerank_depth`` are
    reranked and the rest dropped (as in ``rankwise rerank --top-n`` and experiments); the generator answers from
    the best ``pipeline.k``. ``max_k`` is the deepest ranking a request can ask for.
    """

    pipeline: Pipeline
    rerank_depth: int | None = None
    interpolate: float = 0.0
    rewrite: str = "last_turn"
    info: dict[str, Any] = field(default_factory=dict)

    @property
    def max_k(self) -> int:
        return self.rerank_depth if self.rerank_depth is not None else self.pipeline.candidates

    def search_query(self, query: Query) -> Query:
        """What retrieval and reranking see: the question, or for ``full_history`` the user turns before it."""
        if self.rewrite == "full_history":
            return full_history(query)
        return query


class FixedDepth:
    """A retriever that always searches to its configured ``k`` (an experiment's ``retrieve.<name>.k``)."""

    def __init__(self, retriever: Any, k: int) -> None:
        self.retriever, self.k = retriever, k

    def search(self, queries: Mapping[str, Query], k: int = 100) -> Run:
        return self.retriever.search(queries, k=self.k)


def _model_of(section: Any) -> str | None:
    """The model a section names; for a model behind a URL, ``model @ url``."""
    model = getattr(section, "model", None)
    url = getattr(section, "url", None) or getattr(section, "base_url", None)
    if url is not None:
        return f"{model} @ {url}" if model else url
    return model


def _describe(stages: list[str], models: dict[str, Any], sections: Mapping[str, Any], source: str) -> dict[str, Any]:
    dumped = {name: s.model_dump(mode="json") if hasattr(s, "model_dump") else s for name, s in sections.items()}
    return {"source": source, "stages": stages, "models": models, "config_hash": content_hash(dumped)[:16]}


def from_flags(
    index_dirs: Sequence[Path],
    corpus_path: Path,
    *,
    format: str | None = None,
    reranker: str = "none",
    reranker_model: str | None = None,
    candidates: int = 50,
    generator: str = "none",
    generator_model: str | None = None,
    generator_api_key_env: str | None = None,
    rankrag: Path | None = None,
    k: int = 5,
    template: str = "default",
    max_new_tokens: int = 96,
    max_passage_words: int | None = None,
    threads: int | None = None,
    precision: str | None = None,
    device: str | None = None,
    log: Log = print,
) -> Served:
    """The pipeline ``rankwise ask`` builds from these flags (twice or more ``--index`` = an RRF hybrid;
    ``--rankrag DIR``: one model reranks and answers), through the same :mod:`rankwise.experiment.ask_parts`."""
    if k < 1 or candidates < 1:
        raise RankwiseError(f"--k and --candidates must be at least 1 (got {k} and {candidates})")
    if rankrag is not None and generator.lower() == "none":
        generator = "smollm2"  # the --rankrag model answers (serve's --generator default is none, ask's smollm2)
    parts = open_indexes(index_dirs, corpus_path, format, log)
    add_models(
        parts, log, rankrag=rankrag, reranker=reranker, reranker_model=reranker_model, top_n=candidates,
        generator=generator, model=generator_model, api_key_env=generator_api_key_env,
        key_flag="--generator-api-key-env", template=template, max_new_tokens=max_new_tokens,
        max_passage_words=max_passage_words, threads=threads, batch_size=None, top_k=k, precision=precision,
        device=device,
    )  # fmt: skip
    sections = {**parts.sections, "candidates": candidates, "k": k}
    retrievers = getattr(parts.retriever, "retrievers", [parts.retriever])
    models: dict[str, Any] = {"retrieve": [type(r).__name__ for r in retrievers]}
    stages = ["retrieve" if len(retrievers) == 1 else "retrieve+rrf"]
    if parts.reranker is not None:
        models["rerank"] = _model_of(sections["rerank"])
        stages.append("rerank")
    if parts.generator is not None:
        models["generate"] = _model_of(sections["generate"])
        stages.append("generate")
    pipeline = Pipeline(
        parts.retriever, parts.docs, generator=parts.generator, reranker=parts.reranker, k=k, candidates=candidates
    )
    served = Served(pipeline, rerank_depth=candidates if parts.reranker is not None else None)
    served.info = _describe(stages, models, sections, source="flags")
    return served


def from_config(
    path: Path,
    dataset: str | None = None,
    overrides: Sequence[str] = (),
    out_root: Path = Path("outputs"),
    log: Log = print,
) -> Served:
    """The pipeline of an experiment config on one data set (``-d``, or the config's only one)."""
    config = load_config(path, list(overrides))
    names = [dataset] if dataset else list(config.datasets)
    if len(names) != 1:
        listed = "none" if not names else ", ".join(names)
        raise RankwiseError(f"{path}: serve one data set: pick it with -d (the config lists {listed})")
    if config.rewrite is not None and config.rewrite.strategy not in SERVED_REWRITES:
        raise RankwiseError(
            f"{path}: rewrite.strategy {config.rewrite.strategy!r} is not served (served: "
            f"{', '.join(SERVED_REWRITES)}); use -o rewrite.strategy=full_history or -o rewrite=null"
        )
    source = resolve_dataset(names[0])
    corpus = SOURCES[source.source](source, config.data).corpus
    retriever, depth = _first_stage(config, corpus, out_root / ".indexes", log)
    stages = [*config.ranking_stages()]
    models: dict[str, Any] = {name: _model_of(s) or s.kind for name, s in config.retrieve.items()}

    generator = None
    if config.generate is not None:
        generator = preload(build_generator(config.generate, show_progress=False), log)
    rerank, rerank_depth, weight = None, None, 0.0
    if config.rerank is not None:
        rerank, rerank_depth, weight, models["rerank"] = _reranker(config, path, names[0], out_root, generator, log)
    if generator is not None:
        stages.append("generate")
        models["generate"] = _model_of(config.generate)
    k = config.generate.top_k if config.generate is not None else 5
    pipeline = Pipeline(retriever, corpus, generator=generator, reranker=rerank, k=k, candidates=depth)
    rewrite = config.rewrite.strategy if config.rewrite is not None else "last_turn"
    served = Served(pipeline, rerank_depth=rerank_depth, interpolate=weight, rewrite=rewrite)
    served.info = {
        "source": f"{path} -d {names[0]}",
        "experiment": config.name,
        "dataset": source.name,
        "stages": stages,
        "models": models,
        "config_hash": content_hash(dump_config(config))[:16],
    }
    return served


def _first_stage(config: ExperimentConfig, corpus: dict[str, Document], index_root: Path, log: Log) -> tuple[Any, int]:
    """The config's retriever (its saved index, each cut at its k) or their fusion, and how deep it ranks."""
    fingerprint = corpus_fingerprint(corpus)
    built: list[Any] = []
    for name, section in config.retrieve.items():
        retriever, info = experiment_stages.open_index(section, corpus, fingerprint, index_root, False)
        log(f"{name}: index {info['index']} ({info['index_dir']})")
        built.append(FixedDepth(retriever, section.k))
    if len(built) == 1:
        return built[0], next(iter(config.retrieve.values())).k
    fuse = config.fuse
    assert fuse is not None  # the config model requires one for several retrievers
    options: dict[str, Any] = {}
    if fuse.weights is not None:
        options["weights"] = [fuse.weights.get(name, 1.0) for name in config.retrieve]
    if fuse.method == "rrf":
        options["k"] = fuse.k
    depth = fuse.depth or sum(s.k for s in config.retrieve.values())  # no depth: keep the whole union
    return FusedRetriever(built, method=fuse.method, **options), depth


def _reranker(
    config: ExperimentConfig, path: Path, dataset: str, out_root: Path, generator: Any, log: Log
) -> tuple[Any, int, float, str]:
    """The config's reranker (a trained one from ``out_root``'s cache, never trained here), its depth, the
    first-stage weight and the model it loaded."""
    assert config.rerank is not None

    def refuse_training(message: str) -> None:
        if message.startswith("training"):
            raise RankwiseError(
                f"{path}: rerank.train asks for a cross-encoder that has not been trained under {out_root}; "
                f"run `rankwise run -e {path} -d {dataset} --out {out_root}` first, or serve a trained model "
                "with -o rerank.train=null -o rerank.model=PATH"
            )
        log(message)

    model, _ = experiment_stages.rerank_model(config.rerank, out_root / ".models", refuse_training)
    section = (
        config.rerank
        if model == getattr(config.rerank, "model", None)
        else config.rerank.model_copy(update={"model": model})
    )
    weight, _ = interpolation_weight(section, log)
    return build_reranker(section, show_progress=False, share_with=generator), section.top_n, weight, model
