"""``rankwise ask`` (one question → an answer with numbered sources) and ``rankwise rag`` (a whole data set →
``answers.jsonl`` + ``metrics.json``)."""

from __future__ import annotations

import json
import os
import time
from pathlib import Path
from typing import Annotated, Any

import typer

from rankwise.cli.flags import section as flag_section
from rankwise.errors import RankwiseError

RETRIEVERS = ("bm25", "dense", "hybrid")
RERANKERS = ("none", "cross-encoder", "llm")

GeneratorOpt = Annotated[
    str,
    typer.Option("--generator", help="smollm2 (bundled) | hub name | directory | .gguf | http(s)://host/v1 | none"),
]
GeneratorModelOpt = Annotated[
    str | None, typer.Option("--generator-model", help="Model name served by an http(s) --generator.")
]
ApiKeyOpt = Annotated[
    str | None, typer.Option("--api-key-env", help="Environment variable holding the HTTP generator's API key.")
]
RerankerOpt = Annotated[str, typer.Option("--reranker", help="none | cross-encoder | llm (P(True))")]
RerankerModelOpt = Annotated[
    str | None, typer.Option("--reranker-model", help="Reranker model name or path (llm default: smollm2).")
]
TemplateOpt = Annotated[
    str, typer.Option("--template", help="Prompt template: default | short | sentences | a YAML file.")
]
KOpt = Annotated[int, typer.Option("--k", min=1, help="Passages given to the generator.")]
MaxNewOpt = Annotated[int, typer.Option("--max-new-tokens", min=1, help="Answer length budget in tokens.")]
ThreadsOpt = Annotated[
    int | None,
    typer.Option("--threads", min=1, help="torch intra-op threads for a local model (1 is fastest on a busy CPU)."),
]
RankRAGOpt = Annotated[
    Path | None,
    typer.Option(
        "--rankrag",
        help="RankRAG preset: this one model (rankwise rankrag train's model/) reranks by P(True) and answers.",
    ),
]
PassageWordsOpt = Annotated[
    int | None, typer.Option("--max-passage-words", min=1, help="Cut each passage to this many words in the prompt.")
]


def register(app: typer.Typer) -> None:
    app.command("ask")(ask)
    app.command("rag")(rag)


def generator_flags(
    spec: str,
    model: str | None,
    api_key_env: str | None,
    template: str,
    max_new_tokens: int,
    max_passage_words: int | None,
    threads: int | None,
    batch_size: int = 4,
    **extra: Any,
) -> Any:
    """The generate section ``--generator SPEC`` and its flags describe (None for ``none``); ``extra``: more
    settings of the section (``top_k``, ``checkpoint_every``)."""
    from rankwise.build import generator_section

    if spec.lower() == "none":
        return None
    if api_key_env and api_key_env not in os.environ:
        raise RankwiseError(f"--api-key-env {api_key_env}: that environment variable is not set")
    settings: dict[str, Any] = {"model": model, "template": template, "max_new_tokens": max_new_tokens, **extra}
    if max_passage_words is not None:
        settings["max_passage_words"] = max_passage_words
    if spec.startswith(("http://", "https://")):
        settings["api_key_env"] = api_key_env
    else:
        settings.update(threads=threads, batch_size=batch_size)
    return generator_section(spec, **settings)


def build_generator(
    spec: str,
    model: str | None,
    api_key_env: str | None,
    template: str,
    max_new_tokens: int,
    max_passage_words: int | None,
    threads: int | None,
    batch_size: int = 4,
) -> Any:
    """The generator ``--generator SPEC`` and its flags describe, built through :mod:`rankwise.build`."""
    from rankwise.build import build_generator as build

    section = generator_flags(
        spec, model, api_key_env, template, max_new_tokens, max_passage_words, threads, batch_size
    )
    if section is None:
        return None
    generator = build(section, show_progress=True)
    if hasattr(generator, "model_and_tokenizer"):
        # Load now, so the time per question reported later is generation, not the one-off model load.
        started = time.perf_counter()
        generator.model_and_tokenizer()
        typer.echo(f"loaded {spec} in {time.perf_counter() - started:.1f} s", err=True)
    return generator


def reranker_section(kind: str, model: str | None) -> Any:
    """The rerank section ``--reranker KIND --reranker-model M`` describe (None for ``none``)."""
    from rankwise.config.sections import CrossEncoderConfig, LLMRerankConfig

    if kind not in RERANKERS:
        raise RankwiseError(f"--reranker must be one of {', '.join(RERANKERS)}, not '{kind}'")
    if kind == "none":
        if model is not None:
            raise RankwiseError("--reranker-model needs a --reranker")
        return None
    if kind == "llm":
        return LLMRerankConfig(model=model or "smollm2")
    if model is None:
        raise RankwiseError("--reranker cross-encoder needs --reranker-model (a trained cross-encoder path or name)")
    return CrossEncoderConfig(model=model)


def build_reranker(kind: str, model: str | None, generator: Any) -> Any:
    """A reranker; ``llm`` on the same local model as the generator shares its weights (RankRAG style)."""
    from rankwise.build import build_reranker as build

    config = reranker_section(kind, model)
    return None if config is None else build(config, show_progress=True, share_with=generator)


def rankrag_sections(
    rankrag: Path, reranker: str, generator: str, threads: int | None, **answer: Any
) -> tuple[Any, Any]:
    """``(generate, rerank)`` sections of ``--rankrag DIR``: one model is both (``--template default`` = the
    template it was trained with), so ``--reranker``/``--generator`` are refused."""
    from rankwise.config.sections import RankRAGGenerateConfig, RankRAGRerankConfig

    if reranker != "none" or generator != "smollm2":
        raise RankwiseError("--rankrag MODEL_DIR is both the reranker and the generator: drop --reranker/--generator")
    model = str(rankrag)
    # both sections name the same model and dtype: build.py loads it once (rankwise.rankrag.preset.shared_model)
    return RankRAGGenerateConfig(model=model, threads=threads, **answer), RankRAGRerankConfig(
        model=model, threads=threads
    )


def build_parts(
    rankrag: Path | None,
    reranker: str,
    reranker_model: str | None,
    generator: str,
    generator_model: str | None,
    api_key_env: str | None,
    template: str,
    max_new_tokens: int,
    max_passage_words: int | None,
    threads: int | None,
    batch_size: int,
) -> tuple[Any, Any]:
    """``(generator, reranker)`` of ``ask``: see :func:`rankrag_sections` for ``--rankrag``."""
    if rankrag is None:
        gen = build_generator(
            generator, generator_model, api_key_env, template, max_new_tokens, max_passage_words, threads, batch_size
        )
        return gen, build_reranker(reranker, reranker_model, gen)
    from rankwise.build import build_generator as build_gen
    from rankwise.build import build_reranker as build_rank

    answer, rank = rankrag_sections(
        rankrag, reranker, generator, threads, batch_size=batch_size, max_new_tokens=max_new_tokens,
        template=template, max_passage_words=max_passage_words,
    )  # fmt: skip
    return build_gen(answer), build_rank(rank)


def retrieve_sections(kind: str, dense_model: str | None, candidates: int) -> tuple[dict[str, Any], Any]:
    """``(retrieve sections, fuse section or None)`` of ``--retriever KIND``: ``hybrid`` is RRF of BM25 and dense."""
    from rankwise.config.sections import BM25Config, DenseConfig, FuseConfig

    if kind not in RETRIEVERS:
        raise RankwiseError(f"--retriever must be one of {', '.join(RETRIEVERS)}, not '{kind}'")
    sections: dict[str, Any] = {}
    if kind in ("bm25", "hybrid"):
        sections["bm25"] = BM25Config(k=candidates)
    if kind in ("dense", "hybrid"):
        sections["dense"] = DenseConfig(k=candidates, **({"model": dense_model} if dense_model else {}))
    return sections, FuseConfig(method="rrf", k=60, depth=candidates) if kind == "hybrid" else None


def _load_corpus(path: Path, format: str | None) -> dict[str, Any]:
    from rankwise.data import load_dataset
    from rankwise.data.beir import read_corpus

    if path.is_file() and path.suffix.lower() == ".jsonl" and format is None:
        corpus, warnings = read_corpus(path)
    else:
        dataset = load_dataset(path, format=format)
        corpus, warnings = dataset.corpus, dataset.warnings
    for warning in warnings:
        typer.echo(f"warning: {warning}", err=True)
    return corpus


def ask(
    question: Annotated[str, typer.Argument(help="The question to answer.")],
    index_dirs: Annotated[list[Path], typer.Option("--index", help="Index directory; twice or more = RRF hybrid.")],
    corpus: Annotated[Path, typer.Option("--corpus", help="The indexed data set (directory/file) or corpus.jsonl.")],
    format: Annotated[str | None, typer.Option("--format", help="beir | smart | hotpotqa (default: detect).")] = None,
    history: Annotated[
        list[str] | None, typer.Option("--history", help="An earlier turn, 'user: ...' or 'agent: ...' (repeat).")
    ] = None,
    reranker: RerankerOpt = "none",
    reranker_model: RerankerModelOpt = None,
    generator: GeneratorOpt = "smollm2",
    generator_model: GeneratorModelOpt = None,
    api_key_env: ApiKeyOpt = None,
    k: KOpt = 5,
    candidates: Annotated[int, typer.Option("--candidates", help="Documents retrieved (and reranked).")] = 50,
    template: TemplateOpt = "default",
    max_new_tokens: MaxNewOpt = 96,
    max_passage_words: PassageWordsOpt = None,
    threads: ThreadsOpt = None,
    rankrag: RankRAGOpt = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print the result as JSON.")] = False,
) -> None:
    """Answer one question from an index: the answer with its numbered sources, and time per stage."""
    from rankwise.build import load_index
    from rankwise.experiment.pipeline import FusedRetriever, Pipeline
    from rankwise.retrieve.store import check_corpus
    from rankwise.types import Query

    if generator.lower() == "none":
        raise RankwiseError("rankwise ask needs a generator (use `rankwise search` to rank only)")
    if not question.strip():
        raise RankwiseError("QUESTION is empty: give the question to answer")
    if k < 1 or candidates < 1:
        raise RankwiseError(f"--k and --candidates must be at least 1 (got --k {k}, --candidates {candidates})")
    if k > candidates:
        raise RankwiseError(f"--k {k} passages cannot come from --candidates {candidates}: raise --candidates")
    docs = _load_corpus(corpus, format)
    retrievers = [load_index(d, show_progress=False) for d in index_dirs]
    for directory, loaded in zip(index_dirs, retrievers, strict=True):
        check_corpus(directory, loaded.fingerprint, docs, corpus)
    retriever = retrievers[0] if len(retrievers) == 1 else FusedRetriever(retrievers)
    gen, rerank = build_parts(
        rankrag, reranker, reranker_model, generator, generator_model, api_key_env, template, max_new_tokens,
        max_passage_words, threads, 1,
    )  # fmt: skip
    pipeline = Pipeline(retriever, docs, generator=gen, reranker=rerank, k=k, candidates=candidates)
    result = pipeline.ask(Query("q", question, tuple(history or ())))
    cited = set(result.answer.cited_ids)
    if as_json:
        payload = {
            "question": question,
            "answer": result.answer.to_dict(),
            "sources": [
                {"number": i, "doc_id": d.id, "title": d.title, "cited": d.id in cited}
                for i, d in enumerate(result.passages, start=1)
            ],
            "latency_s": result.latency,
        }
        typer.echo(json.dumps(payload, indent=2, ensure_ascii=False))
        return
    typer.echo(result.answer.text or "(empty answer)")
    if result.answer.abstained:
        typer.echo("(the model abstained: the passages did not support an answer)")
    typer.echo("\nSources:")
    for i, doc in enumerate(result.passages, start=1):
        mark = "*" if doc.id in cited else " "
        label = f"{doc.title} ({doc.id})" if doc.title and doc.title != doc.id else doc.id
        typer.echo(f" {mark}[{i}] {label}")
    if result.answer.dropped_citations:
        typer.echo(f"({result.answer.dropped_citations} citation(s) named no source and were dropped)")
    times = ", ".join(f"{name[:-2]} {value:.2f} s" for name, value in result.latency.items())
    typer.echo(f"\n* = cited. Time: {times}")


def rag(
    dataset: Annotated[str, typer.Option("--dataset", help="hotpotqa | mtrag")],
    path: Annotated[Path, typer.Argument(help="HotpotQA JSON file/directory, or the MT-RAG directory.")],
    out: Annotated[Path, typer.Option("--out", help="Output directory: one experiment folder per data set under it.")],
    retriever: Annotated[str, typer.Option("--retriever", help="bm25 | dense | hybrid (RRF of both)")] = "bm25",
    dense_model: Annotated[str | None, typer.Option("--dense-model", help="Dense encoder name or path.")] = None,
    reranker: RerankerOpt = "none",
    reranker_model: RerankerModelOpt = None,
    generator: GeneratorOpt = "smollm2",
    generator_model: GeneratorModelOpt = None,
    api_key_env: ApiKeyOpt = None,
    k: KOpt = 5,
    candidates: Annotated[int, typer.Option("--candidates", min=1, help="Documents retrieved and reranked.")] = 100,
    setting: Annotated[str, typer.Option("--setting", help="hotpotqa: distractor | open")] = "distractor",
    rewrite: Annotated[
        str, typer.Option("--rewrite", help="mtrag: last_turn | full_history | llm | human (with --subset human)")
    ] = "last_turn",
    rewriter_model: Annotated[
        str | None, typer.Option("--rewriter-model", help="mtrag --rewrite llm: model (default: the generator's).")
    ] = None,
    rewrite_cache: Annotated[
        Path | None, typer.Option("--rewrite-cache", help="mtrag --rewrite llm: JSONL of rewrites to reuse/extend.")
    ] = None,
    subset: Annotated[str, typer.Option("--subset", help="mtrag: un (MT-RAG-UN tasks) | human (original)")] = "un",
    domain: Annotated[list[str] | None, typer.Option("--domain", help="mtrag: clapnq|cloud|fiqa|govt (repeat)")] = None,
    passages: Annotated[str, typer.Option("--passages", help="mtrag: retrieved | reference")] = "retrieved",
    answerability: Annotated[
        str | None,
        typer.Option("--answerability", help="mtrag: comma-separated labels to answer, e.g. ANSWERABLE,UNANSWERABLE"),
    ] = None,
    limit: Annotated[int | None, typer.Option("--limit", min=1, help="First N questions (mtrag: per domain).")] = None,
    per_label_limit: Annotated[
        int | None, typer.Option("--per-label-limit", min=1, help="mtrag: answer at most N tasks per label per domain.")
    ] = None,
    template: TemplateOpt = "default",
    max_new_tokens: MaxNewOpt = 64,
    max_passage_words: PassageWordsOpt = None,
    batch_size: Annotated[int, typer.Option("--batch-size", min=1, help="Prompts per generation batch.")] = 4,
    threads: ThreadsOpt = None,
    rankrag: RankRAGOpt = None,
    chunk_size: Annotated[
        int, typer.Option("--chunk-size", min=1, help="Questions per saved chunk (resume unit).")
    ] = 16,
) -> None:
    """Run a data set end to end (retrieve → rerank → answer with citations) and score it: the flags become an
    experiment config run by the experiment runner into OUT/<dataset>/ (OUT/../.indexes caches the indexes; a
    rerun of the same command resumes, reusing what is done)."""
    from rich.console import Console

    from rankwise.data.mtrag import POOLED_NOTE
    from rankwise.experiment.rag import hotpotqa_experiment, mtrag_experiment, run_rag

    if dataset not in ("hotpotqa", "mtrag"):
        raise RankwiseError(f"--dataset must be hotpotqa or mtrag, not '{dataset}'")
    if passages not in ("retrieved", "reference"):
        raise RankwiseError(f"--passages must be 'retrieved' or 'reference', not '{passages}'")
    console = Console(stderr=True)
    answer = {"top_k": k, "checkpoint_every": chunk_size}
    if dataset == "mtrag" and passages == "reference":
        answer["passages"] = "reference"
    if rankrag is None:
        generate = generator_flags(
            generator, generator_model, api_key_env, template, max_new_tokens, max_passage_words, threads, batch_size,
            **answer,
        )  # fmt: skip
        rerank = reranker_section(reranker, reranker_model)
    else:
        generate, rerank = rankrag_sections(
            rankrag, reranker, generator, threads, batch_size=batch_size, max_new_tokens=max_new_tokens,
            template=template, max_passage_words=max_passage_words, **answer,
        )  # fmt: skip
    retrieve, fuse = retrieve_sections(retriever, dense_model, candidates)
    stages = {"retrieve": retrieve, "fuse": fuse, "generate": generate}
    stages["rerank"] = None if rerank is None else rerank.model_copy(update={"top_n": candidates})
    out = out.resolve()
    if dataset == "hotpotqa":
        config, sources = hotpotqa_experiment(path, out.name, stages, setting, limit)
    else:
        stages["rewrite"] = _rewrite_section(rewrite, rewriter_model, rewrite_cache, generate, threads)
        config, sources = mtrag_experiment(
            path, out.name, stages, domain, subset, answerability.split(",") if answerability else None,
            per_label_limit, limit,
        )  # fmt: skip
    summary, folders = run_rag(dataset, config, sources, out.parent, log=console.log)
    if dataset == "hotpotqa":
        shown = {**summary["retrieval"], **summary.get("qa", {})}
    else:
        console.print(f"[bold]{POOLED_NOTE}[/bold]")
        shown = {
            f"{d} {m}": v
            for d, values in summary["retrieval"].items()
            for m, v in values.items()
            if m in ("nDCG@10", "R@5")
        }
        shown.update({m: v for m, v in summary.get("generation", {}).items() if isinstance(v, float)})
    shown.update({f"{s} per question": v for s, v in summary["latency_per_question_s"].items()})
    for name, value in shown.items():
        console.print(f"{name:>45}  {value:.4f}" if isinstance(value, float) else f"{name:>45}  {value}")
    console.print(f"experiment output (config.yaml, runs/, metrics.json, ...): {', '.join(map(str, folders))}")


def _rewrite_section(strategy: str, model: str | None, cache: Path | None, generate: Any, threads: int | None) -> Any:
    """The rewrite section of ``rag --dataset mtrag``; ``llm`` rewrites with ``--rewriter-model``, else with the
    local generator's model (an HTTP generator cannot rewrite: name a local --rewriter-model)."""
    from rankwise.config.sections import HTTPGenerateConfig, RewriteConfig

    if strategy != "llm":
        if model is not None or cache is not None:
            raise RankwiseError("--rewriter-model and --rewrite-cache apply to --rewrite llm only")
        return flag_section(RewriteConfig, {"strategy": "--rewrite"}, strategy=strategy)
    if model is None and isinstance(generate, HTTPGenerateConfig):
        raise RankwiseError(
            "--rewrite llm rewrites with a local model: give --rewriter-model with an http(s) --generator"
        )
    chosen = model or (generate.model if generate is not None else "smollm2")
    return RewriteConfig(strategy="llm", model=chosen, threads=threads, cache=str(cache) if cache else None)
