"""The pipeline parts that ``rankwise ask``, ``rankwise rag`` and ``rankwise serve`` describe with the same flags
(``--retriever``, ``--reranker``/``--reranker-model``, ``--generator``/``--generator-model``, ``--rankrag``, ...):
each flag set becomes the typed config section a YAML experiment would hold, and :mod:`rankwise.build` builds it.
One home, so the commands cannot drift apart; errors name the flag.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from rankwise.build import build_generator, build_reranker, load_index
from rankwise.config.flags import section
from rankwise.config.sections import (
    BM25Config,
    CrossEncoderConfig,
    DenseConfig,
    FuseConfig,
    HTTPGenerateConfig,
    LLMRerankConfig,
    LocalGenerateConfig,
    RankRAGGenerateConfig,
    RankRAGRerankConfig,
)
from rankwise.data import load_corpus
from rankwise.errors import RankwiseError
from rankwise.experiment.pipeline import FusedRetriever
from rankwise.retrieve.store import check_corpus
from rankwise.types import Document

Log = Callable[[str], None]
RETRIEVERS = ("bm25", "dense", "hybrid")
RANKRAG_DTYPES = {"auto": "auto", "fp32": "float32", "bf16": "bfloat16"}  # --precision as a RankRAG model's dtype
RERANKERS = ("none", "cross-encoder", "llm")
# section field -> the flag that sets it (for errors)
FLAGS = {"top_n": "--candidates", "top_k": "--k", "model": "--reranker-model/--generator-model"}


def generator_flags(
    spec: str,
    model: str | None,
    api_key_env: str | None,
    template: str,
    max_new_tokens: int,
    max_passage_words: int | None,
    threads: int | None,
    batch_size: int | None = 4,
    key_flag: str = "--api-key-env",
    precision: str | None = None,
    device: str | None = None,
    **extra: Any,
) -> Any:
    """The generate section ``--generator SPEC`` and its flags describe (None for ``none``); ``extra``: more
    settings of the section (``top_k``, ``checkpoint_every``). ``precision``/``device`` reach a local model only."""
    if spec.lower() == "none":
        return None
    settings: dict[str, Any] = {"model": model, "template": template, "max_new_tokens": max_new_tokens, **extra}
    settings["max_passage_words"] = max_passage_words
    if spec.startswith(("http://", "https://")):
        if api_key_env and api_key_env not in os.environ:
            raise RankwiseError(f"{key_flag} {api_key_env}: that environment variable is not set")
        settings["api_key_env"] = api_key_env
    elif api_key_env is not None:
        raise RankwiseError(f"{key_flag} applies to an http(s) --generator only")
    else:
        settings.update(threads=threads, batch_size=batch_size, precision=precision, device=device)
    return section(generator_section, FLAGS, spec, **settings)


def generator_section(spec: str, **settings: Any) -> Any:
    """The generate section a ``--generator SPEC`` flag means: ``http(s)://...`` an HTTP server (``model`` names
    the served model), anything else a local model (``smollm2``, a hub name, a directory or a ``.gguf`` file)."""
    if spec.startswith(("http://", "https://")):
        if not settings.get("model"):
            raise RankwiseError(f"{spec}: an HTTP generator needs the served model's name (--generator-model)")
        return HTTPGenerateConfig(base_url=spec, **settings)
    if settings.pop("model", None) is not None:
        raise RankwiseError("--generator-model applies to an http(s) --generator only")
    return LocalGenerateConfig(model=spec, **settings)


def reranker_section(
    kind: str, model: str | None, top_n: int | None = None, precision: str | None = None, device: str | None = None
) -> Any:
    """The rerank section ``--reranker KIND --reranker-model M`` describe (None for ``none``); ``--precision``
    reaches both kinds, ``--device`` the LLM one (a cross-encoder goes where sentence-transformers puts it)."""
    if kind not in RERANKERS:
        raise RankwiseError(f"--reranker must be one of {', '.join(RERANKERS)}, not '{kind}'")
    if kind == "none":
        if model is not None:
            raise RankwiseError("--reranker-model needs a --reranker")
        return None
    if kind == "llm":
        llm = {"precision": precision, "device": device}
        return section(LLMRerankConfig, FLAGS, model=model or "smollm2", top_n=top_n, **llm)
    if model is None:
        raise RankwiseError("--reranker cross-encoder needs --reranker-model (a trained cross-encoder path or name)")
    return section(CrossEncoderConfig, FLAGS, model=model, top_n=top_n, precision=precision)


def rankrag_sections(
    rankrag: Path, reranker: str, generator: str, threads: int | None, **answer: Any
) -> tuple[Any, Any]:
    """``(generate, rerank)`` sections of ``--rankrag DIR``: one model is both (``--template default`` = the
    template it was trained with), so ``--reranker``/``--generator`` are refused."""
    if reranker != "none" or generator != "smollm2":
        raise RankwiseError("--rankrag MODEL_DIR is both the reranker and the generator: drop --reranker/--generator")
    model = str(rankrag)
    top_n = answer.pop("top_n", None)
    # both sections name the same model, dtype and device: build.py loads it once (rankwise.rankrag.preset.shared_model)
    generate = section(RankRAGGenerateConfig, FLAGS, model=model, threads=threads, **answer)
    shared = {"model": model, "threads": threads, "dtype": answer.get("dtype"), "device": answer.get("device")}
    return generate, section(RankRAGRerankConfig, FLAGS, top_n=top_n, **shared)


def _check_taken(precision: str | None, device: str | None, answer: Any, rerank: Any) -> None:
    """Refuse ``--precision``/``--device`` when no stage built here takes them (nothing silently dropped)."""
    fields = [set(type(part).model_fields) for part in (answer, rerank) if part is not None]
    for flag, value, key in (("--precision", precision, "precision"), ("--device", device, "device")):
        if value is not None and not any(key in names or (key == "precision" and "dtype" in names) for names in fields):
            raise RankwiseError(f"{flag} applies to a local model: --reranker, a local --generator or --rankrag")


def retrieve_sections(kind: str, dense_model: str | None, candidates: int) -> tuple[dict[str, Any], Any]:
    """``(retrieve sections, fuse section or None)`` of ``--retriever KIND``: ``hybrid`` is RRF of BM25 and dense."""
    if kind not in RETRIEVERS:
        raise RankwiseError(f"--retriever must be one of {', '.join(RETRIEVERS)}, not '{kind}'")
    sections: dict[str, Any] = {}
    if kind in ("bm25", "hybrid"):
        sections["bm25"] = BM25Config(k=candidates)
    if kind in ("dense", "hybrid"):
        sections["dense"] = DenseConfig(k=candidates, **({"model": dense_model} if dense_model else {}))
    return sections, FuseConfig(method="rrf", k=60, depth=candidates) if kind == "hybrid" else None


@dataclass
class AskParts:
    """What the flags of ``ask``/``serve`` build: the first stage over the corpus, the reranker and the generator,
    with the sections they came from (for ``/healthz`` and its config hash)."""

    retriever: Any
    docs: dict[str, Document]
    generator: Any = None
    reranker: Any = None
    sections: dict[str, Any] = field(default_factory=dict)


def open_indexes(index_dirs: Sequence[Path], corpus: Path, format: str | None, log: Log) -> AskParts:
    """The saved indexes over ``corpus`` (checked to be of that corpus); twice or more = an RRF hybrid."""
    if not index_dirs:
        raise RankwiseError("--index: give at least one index directory")
    docs, warnings = load_corpus(corpus, format)
    for warning in warnings:
        log(f"warning: {warning}")
    retrievers = [load_index(d, show_progress=False) for d in index_dirs]
    for directory, loaded in zip(index_dirs, retrievers, strict=True):
        check_corpus(directory, loaded.fingerprint, docs, corpus)
    retriever = retrievers[0] if len(retrievers) == 1 else FusedRetriever(retrievers)
    return AskParts(retriever, docs, sections={"index": [str(d) for d in index_dirs]})


def preload(generator: Any, log: Log) -> Any:
    """Load a local generator's weights now, so the time per question reported later is generation, not the
    one-off model load."""
    if generator is not None and hasattr(generator, "model_and_tokenizer"):
        started = time.perf_counter()
        generator.model_and_tokenizer()
        log(f"loaded the generator in {time.perf_counter() - started:.1f} s")
    return generator


def add_models(
    parts: AskParts,
    log: Log,
    *,
    rankrag: Path | None = None,
    reranker: str = "none",
    reranker_model: str | None = None,
    top_n: int | None = None,
    generator: str = "none",
    **generate: Any,
) -> AskParts:
    """``parts`` with the generator (``--generator`` and its flags in ``generate``, see :func:`generator_flags`)
    and the reranker built; ``llm`` on the same local model as the generator shares its weights (RankRAG style),
    as does ``--rankrag DIR`` (one model for both)."""
    precision, device = generate.pop("precision", None), generate.pop("device", None)
    if rankrag is None:
        answer = generator_flags(generator, precision=precision, device=device, **generate)
        rerank = reranker_section(reranker, reranker_model, top_n, precision, device)
    else:
        if generate.pop("model", None) is not None or generate.pop("api_key_env", None) is not None:
            raise RankwiseError("--rankrag MODEL_DIR is the generator: drop --generator-model and the API key flag")
        generate.pop("key_flag", None)
        threads = generate.pop("threads", None)
        if precision == "int8":
            raise RankwiseError("--precision int8 applies to a cross-encoder; --rankrag takes auto, fp32 or bf16")
        generate.update(dtype=RANKRAG_DTYPES.get(precision), device=device)
        answer, rerank = rankrag_sections(rankrag, reranker, generator, threads, top_n=top_n, **generate)
    _check_taken(precision, device, answer, rerank)
    if answer is not None:
        parts.generator = preload(build_generator(answer, show_progress=False), log)
        parts.sections["generate"] = answer
    if rerank is not None:
        parts.reranker = build_reranker(rerank, show_progress=False, share_with=parts.generator)
        parts.sections["rerank"] = rerank
    return parts
