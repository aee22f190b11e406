"""The one builder: a typed config section (:mod:`rankwise.config.sections`) -> a component.

Every way of running rankwise builds its parts here: experiment configs (``rankwise run``), the CLI commands
(``index``, ``search``, ``rerank``, ``ask``, ``rag``; their flags become the same section objects a YAML config
gives) and the Python API. The name -> builder tables are plain dict literals; a new kind is one entry here and
one section class in the config package, or, for a reranker, one call to :func:`register_reranker`.

Stage rooms never read config: what they get from here are plain constructor arguments.
"""

from __future__ import annotations

import inspect
import os
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path
from typing import Any, Literal

from pydantic import create_model

from rankwise.config.experiment import register_section
from rankwise.config.precision import llm_dtype
from rankwise.config.sections import (
    BM25Config,
    CrossEncoderConfig,
    DenseConfig,
    EngineConfig,
    HTTPGenerateConfig,
    HTTPRerankConfig,
    LLMRerankConfig,
    LocalGenerateConfig,
    RankRAGGenerateConfig,
    RankRAGRerankConfig,
    RewriteConfig,
    SparseConfig,
)
from rankwise.config.sections.rerank import RerankCommon
from rankwise.errors import IndexStoreError, RankwiseError

RetrieverSection = BM25Config | DenseConfig | SparseConfig

# --------------------------------------------------------------------------------------------------- engines


def build_engine(config: EngineConfig) -> Any:
    """What runs a stage's shards: :class:`~rankwise.engine.LocalEngine` (this process) or
    :class:`~rankwise.engine.ray_engine.RayEngine` (imports ray: without it, a MissingExtraError naming
    ``rankwise[ray]``)."""
    if config.kind == "local":
        from rankwise.engine import LocalEngine

        return LocalEngine()
    from rankwise.engine.ray_engine import RayEngine

    return RayEngine(
        address=config.address,
        actors=config.actors,
        cpus_per_actor=config.cpus_per_actor,
        gpus_per_actor=config.gpus_per_actor,
        retries=config.retries,
    )


def in_process(config: Any) -> Any:
    """``config`` as one process runs it: its engine local, the engine's batch size (if set) as its own."""
    engine = getattr(config, "engine", None)
    if engine is None or engine == EngineConfig():
        return config
    return config.model_copy(update={"engine": EngineConfig(), "batch_size": engine.batch_size or config.batch_size})


def key_params(config: Any) -> dict[str, Any]:
    """What a stage's output depends on: its section without where it ran (an engine's batch size counts: it is
    the stage's own), so a run resumes the chunks another engine computed."""
    return in_process(config).model_dump(exclude={"engine"})


# ------------------------------------------------------------------------------------------------ retrievers


def _bm25(config: BM25Config, progress: bool) -> Any:
    from rankwise.retrieve.bm25 import BM25Retriever

    return BM25Retriever(**config.model_dump(exclude={"kind", "k"}), show_progress=progress)


def _bm25_load(directory: Path, config: BM25Config | None, progress: bool) -> Any:
    from rankwise.retrieve.bm25 import BM25Retriever

    return BM25Retriever.load(directory, show_progress=progress, backend=config.backend if config else "auto")


def _dense(config: DenseConfig, progress: bool) -> Any:
    from rankwise.retrieve.dense import DenseRetriever

    options = in_process(config).model_dump(exclude={"kind", "k", "engine"})
    return DenseRetriever(**options, engine=build_engine(config.engine), show_progress=progress)


def _dense_load(directory: Path, config: DenseConfig | None, progress: bool) -> Any:
    from rankwise.retrieve.dense import DenseRetriever

    if config is None:
        return DenseRetriever.load(directory, show_progress=progress)
    retriever = DenseRetriever.load(
        directory,
        batch_size=config.batch_size,
        trust_remote_code=config.trust_remote_code,
        show_progress=progress,
        ef_search=config.ef_search,
        nprobe=config.nprobe,
        precision=config.precision,  # must be the index's own (or auto): queries are encoded like the documents
        runtime=config.runtime,
    )
    retriever.query_prompt = config.query_prompt
    return retriever


def _sparse(config: SparseConfig, progress: bool) -> Any:
    from rankwise.retrieve.sparse import SparseRetriever

    options = in_process(config).model_dump(exclude={"kind", "k", "engine"})
    return SparseRetriever(**options, engine=build_engine(config.engine), show_progress=progress)


def _sparse_load(directory: Path, config: SparseConfig | None, progress: bool) -> Any:
    from rankwise.retrieve.sparse import SparseRetriever

    if config is None:
        return SparseRetriever.load(directory, show_progress=progress)
    return SparseRetriever.load(directory, **config.load_options(), show_progress=progress)


# kind -> (build a fresh retriever, open a saved index); plain dict literal.
RETRIEVERS: dict[str, tuple[Callable[[Any, bool], Any], Callable[[Path, Any, bool], Any]]] = {
    "bm25": (_bm25, _bm25_load),
    "dense": (_dense, _dense_load),
    "sparse": (_sparse, _sparse_load),
}


def build_retriever(config: RetrieverSection, show_progress: bool = True) -> Any:
    """A fresh (empty) retriever of ``config.kind``; call ``index(corpus)`` on it."""
    return RETRIEVERS[config.kind][0](config, show_progress)


def open_retriever(directory: str | Path, config: RetrieverSection, show_progress: bool = True) -> Any:
    """The index saved in ``directory``, opened with the search-time settings of ``config``."""
    return RETRIEVERS[config.kind][1](Path(directory), config, show_progress)


def load_index(directory: str | Path, **kwargs: Any) -> Any:
    """Open a saved index of any kind, reading its kind from the manifest; ``kwargs`` go to the class's ``load``."""
    from rankwise.retrieve.bm25 import BM25Retriever
    from rankwise.retrieve.dense import DenseRetriever
    from rankwise.retrieve.sparse import SparseRetriever
    from rankwise.retrieve.store import MANIFEST, read_envelope

    kinds: dict[str, Any] = {"bm25": BM25Retriever, "dense": DenseRetriever, "sparse": SparseRetriever}
    kind = read_envelope(directory).kind
    if kind not in kinds:
        raise IndexStoreError(
            f"{Path(directory) / MANIFEST}: field 'kind' is '{kind}', not a known index kind ({sorted(kinds)})"
        )
    return kinds[kind].load(directory, **kwargs)


# ------------------------------------------------------------------------------------------------- rerankers


def _on_engine(build: Callable[[Any, bool], Any], config: Any, progress: bool) -> Any:
    """The reranker of a section with engine settings: built by ``build`` from the section with the engine's
    batch size as its own and the engine local; with a Ray engine, one such reranker per worker, each running
    shards of queries."""
    local = in_process(config)
    if config.engine.kind == "local":
        return build(local, progress)
    from functools import partial

    from rankwise.rerank.sharded import EngineReranker

    return EngineReranker(partial(build, local, False), build_engine(config.engine), show_progress=progress)


def _cross_encoder(config: CrossEncoderConfig, progress: bool) -> Any:
    if config.engine != EngineConfig():
        return _on_engine(_cross_encoder, config, progress)
    from rankwise.rerank.cross_encoder import CrossEncoderReranker

    options = config.model_dump(exclude={*_RERANK_COMMON, "engine", "train"})  # the rest: constructor arguments
    return CrossEncoderReranker(**options, show_progress=progress)


def _llm(config: LLMRerankConfig, progress: bool) -> Any:
    if config.engine != EngineConfig():
        return _on_engine(_llm, config, progress)
    from rankwise.rerank.llm import DEFAULT_TEMPLATE, LLMReranker

    return LLMReranker(
        model=config.model,
        gguf_file=config.gguf_file,
        template=config.template or DEFAULT_TEMPLATE,
        system_prompt=config.system_prompt,
        max_passage_tokens=config.max_passage_tokens,
        batch_size=config.batch_size,
        max_tokens=config.max_tokens,
        dtype=llm_dtype(config, "llm reranker"),
        device=config.device,
        trust_remote_code=config.trust_remote_code,
        show_progress=progress,
    )


def _http(config: HTTPRerankConfig, progress: bool) -> Any:
    from rankwise.rerank.http import HTTPReranker

    return HTTPReranker(**config.model_dump(exclude=set(_RERANK_COMMON)), show_progress=progress)


def _rankrag(config: RankRAGRerankConfig, progress: bool) -> Any:
    from rankwise.rankrag.preset import load_rankrag

    prompt = {
        name: getattr(config, name) for name in ("max_passage_tokens", "ranking_template", "ranking_system_prompt")
    }
    parts = load_rankrag(
        config.model,
        dtype=config.dtype,
        threads=config.threads,
        device=config.device,
        rerank_batch_size=config.batch_size,
        show_progress=progress,
        **{name: value for name, value in prompt.items() if value is not None},  # None: as the model was trained
    )
    return parts.reranker


# kind -> builder(section, show_progress); plain dict literal (register_reranker adds to it).
RERANKERS: dict[str, Callable[[Any, bool], Any]] = {
    "cross-encoder": _cross_encoder,
    "llm": _llm,
    "http": _http,
    "rankrag": _rankrag,
}
_BUILT_IN_RERANKERS = tuple(RERANKERS)
# settings every rerank section has; not constructor arguments of a reranker
_RERANK_COMMON = ("kind", "top_n", "interpolate", "checkpoint_every")


def build_reranker(config: Any, show_progress: bool = True, share_with: Any = None) -> Any:
    """The reranker of ``config.kind``. An ``llm`` reranker on the model a local ``share_with`` generator already
    loaded reuses its weights (RankRAG style) instead of loading a second copy."""
    if config.kind not in RERANKERS:
        raise RankwiseError(f"unknown reranker kind {config.kind!r}; expected one of: {', '.join(RERANKERS)}")
    local = isinstance(config, LLMRerankConfig) and config.engine.kind == "local"  # a Ray reranker: its own copies
    if local and share_with is not None and config.gguf_file is None:
        from rankwise.generate.local import LocalGenerator
        from rankwise.rerank.llm import DEFAULT_TEMPLATE, LLMReranker

        if isinstance(share_with, LocalGenerator) and share_with.model_name == config.model:
            model, tokenizer = share_with.model_and_tokenizer()
            prompt = config.model_dump(include={"system_prompt", "max_passage_tokens", "batch_size", "max_tokens"})
            template = config.template or DEFAULT_TEMPLATE  # the section's prompt settings hold for a shared model
            return LLMReranker(model, tokenizer, template=template, **prompt, show_progress=show_progress)
    return RERANKERS[config.kind](config, show_progress)


def register_reranker(kind: str, cls: type, section: type | None = None) -> type:
    """Make ``cls`` (a class with ``rerank(queries, run, corpus, k) -> Run``) the reranker of ``kind`` everywhere:
    YAML experiments (``rerank: {kind: KIND, ...}``), ``rankwise rerank --reranker KIND --set key=value`` and
    :func:`build_reranker`. Its settings are ``section`` or, by default, the constructor's keyword arguments (with
    their annotations and defaults) on top of every rerank section's ``top_n``/``interpolate``/``checkpoint_every``.
    Returns the section class."""
    if section is None:
        fields: dict[str, Any] = {"kind": (Literal[kind], kind)}  # type: ignore[valid-type]
        for name, parameter in inspect.signature(cls).parameters.items():
            if name in ("self", "show_progress") or parameter.kind in (parameter.VAR_POSITIONAL, parameter.VAR_KEYWORD):
                continue
            annotation = Any if parameter.annotation is inspect.Parameter.empty else parameter.annotation
            default = ... if parameter.default is inspect.Parameter.empty else parameter.default
            fields[name] = (annotation, default)
        section = create_model(f"{cls.__name__}Config", __base__=RerankCommon, **fields)
    accepts_progress = "show_progress" in inspect.signature(cls).parameters

    def make(config: Any, progress: bool) -> Any:
        options = config.model_dump(exclude=set(_RERANK_COMMON))
        return cls(**options, show_progress=progress) if accepts_progress else cls(**options)

    register_section("rerank", kind, section)
    RERANKERS[kind] = make
    return section


def unregister_reranker(kind: str) -> None:
    """Undo :func:`register_reranker` (built-in kinds cannot be removed)."""
    if kind in _BUILT_IN_RERANKERS:
        raise RankwiseError(f"{kind!r} is a built-in reranker kind")
    register_section("rerank", kind, None)
    RERANKERS.pop(kind, None)


def interpolation_weight(config: Any, log: Callable[[str], None] | None = None) -> tuple[float, str | None]:
    """The first-stage weight of a rerank section: its number, or for ``auto`` the weight ``rankwise train
    reranker`` (or ``rankrag train``) stored with the model (then also the window fold it was picked with; a
    different fold here is reported through ``log``)."""
    if config.interpolate != "auto":
        return config.interpolate or 0.0, None
    from rankwise.rerank.cross_encoder import trained_pick

    weight, picked_windows = trained_pick(str(config.model))  # config loading allows 'auto' for trained kinds only
    if picked_windows != getattr(config, "windows", "first") and log is not None:
        log(
            f"warning: that weight was picked with --windows {picked_windows}, this run uses --windows {config.windows}"
        )
    return weight, picked_windows


# ------------------------------------------------------------------------------------------------- rewriters


def build_rewriter(config: RewriteConfig, show_progress: bool = True) -> Any:
    """The query rewriter of ``config.strategy`` that a model does: ``llm`` (a local chat model, or the one an
    OpenAI-compatible ``endpoint`` serves); None for the strategies that need no model (``last_turn``,
    ``full_history``) or whose rewrites a data set ships (``human``)."""
    if config.strategy != "llm":
        return None
    from rankwise.retrieve.rewrite import LLMRewriter

    if config.endpoint is not None:
        from rankwise.generate.http import HTTPGenerator

        chat: Any = HTTPGenerator(config.endpoint, config.model, api_key=_api_key("rewrite", config.api_key_env))
    else:
        from rankwise.generate.local import LocalGenerator

        chat = LocalGenerator(config.model, threads=config.threads, show_progress=show_progress)
    return LLMRewriter(chat, max_new_tokens=config.max_new_tokens)


def _api_key(section: str, variable: str | None) -> str | None:
    """The API key in environment variable ``variable`` (None: no key); a variable that is not set is an error."""
    if variable is None:
        return None
    if variable not in os.environ:
        raise RankwiseError(f"{section}.api_key_env: environment variable {variable} is not set")
    return os.environ[variable]


# ------------------------------------------------------------------------------------------------ generators


def build_generator(config: Any, show_progress: bool = True) -> Any:
    """The generator of ``config.kind`` (local model, OpenAI-compatible HTTP server, or the RankRAG preset), in
    this process: a section's ``engine`` is where the generate stage runs its shards (``experiment/answers.py``)."""
    from rankwise.generate.prompts import load_template

    config = in_process(config)

    if isinstance(config, RankRAGGenerateConfig):  # the model's own prompt settings unless the config sets them
        from rankwise.rankrag.preset import load_rankrag

        options: dict[str, Any] = {"max_new_tokens": config.max_new_tokens, "batch_size": config.batch_size}
        if config.template != "default":
            options["template"] = config.template
        if config.max_passage_words is not None:
            options["max_passage_words"] = config.max_passage_words
        return load_rankrag(
            config.model, config.dtype, config.threads, config.device, show_progress=show_progress, **options
        ).generator
    template = load_template(config.template)
    if config.max_passage_words is not None:
        template = replace(template, max_passage_words=config.max_passage_words)
    common = {"template": template, "max_new_tokens": config.max_new_tokens}
    if isinstance(config, HTTPGenerateConfig):
        from rankwise.generate.http import HTTPGenerator

        return HTTPGenerator(
            config.base_url, config.model, api_key=_api_key("generate", config.api_key_env or None),
            temperature=config.temperature, timeout=config.timeout, concurrency=config.concurrency, **common,
        )  # fmt: skip
    if not isinstance(config, LocalGenerateConfig):
        raise RankwiseError(f"unknown generator kind {getattr(config, 'kind', config)!r}")
    from rankwise.generate.local import LocalGenerator

    return LocalGenerator(
        config.model, gguf_file=config.gguf_file, batch_size=config.batch_size,
        dtype=llm_dtype(config, "local generator"), device=config.device,
        threads=config.threads, max_input_tokens=config.max_input_tokens,
        trust_remote_code=config.trust_remote_code, show_progress=show_progress, **common,
    )  # fmt: skip
