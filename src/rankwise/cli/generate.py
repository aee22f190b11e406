"""``rankwise ask`` (one question → an answer with numbered sources) and ``rankwise rag`` (a whole data set →
``answers.jsonl`` + ``metrics.json``)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Any

import typer

from rankwise.cli.retrieval import ActorsOpt, RayAddressOpt
from rankwise.config.flags import engine_section
from rankwise.config.flags import section as flag_section
from rankwise.errors import RankwiseError

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
PrecisionOpt = Annotated[
    str | None,
    typer.Option(
        "--precision",
        help="auto | fp32 | bf16 (| int8 for a cross-encoder) for the reranker and a local generator; "
        "auto = bf16 where this machine runs it natively. Default: each model's own setting (fp32).",
    ),
]
DeviceOpt = Annotated[
    str | None,
    typer.Option("--device", help="cpu | cuda | cuda:N for the local LLMs; default: the GPU where there is one."),
]
PassageWordsOpt = Annotated[
    int | None, typer.Option("--max-passage-words", min=1, help="Cut each passage to this many words in the prompt.")
]


def _stderr(message: str) -> None:
    typer.echo(message, err=True)


def register(app: typer.Typer) -> None:
    app.command("ask")(ask)
    app.command("rag")(rag)


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
    candidates: Annotated[int, typer.Option("--candidates", min=1, help="Documents retrieved (and reranked).")] = 50,
    template: TemplateOpt = "default",
    max_new_tokens: MaxNewOpt = 96,
    max_passage_words: PassageWordsOpt = None,
    threads: ThreadsOpt = None,
    rankrag: RankRAGOpt = None,
    precision: PrecisionOpt = None,
    device: DeviceOpt = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print the result as JSON.")] = False,
) -> None:
    """Answer one question from an index: the answer with its numbered sources, and time per stage."""
    from rankwise.experiment.ask_parts import add_models, open_indexes
    from rankwise.experiment.pipeline import Pipeline
    from rankwise.types import Query

    if generator.lower() == "none":
        raise RankwiseError("rankwise ask needs a generator (use `rankwise search` to rank only)")
    if not question.strip():
        raise RankwiseError("QUESTION is empty: give the question to answer")
    if k > candidates:
        raise RankwiseError(f"--k {k} passages cannot come from --candidates {candidates}: raise --candidates")
    parts = open_indexes(index_dirs, corpus, format, log=_stderr)
    add_models(
        parts, _stderr, rankrag=rankrag, reranker=reranker, reranker_model=reranker_model, generator=generator,
        model=generator_model, api_key_env=api_key_env, template=template, max_new_tokens=max_new_tokens,
        max_passage_words=max_passage_words, threads=threads, batch_size=1, precision=precision, device=device,
    )  # fmt: skip
    pipeline = Pipeline(
        parts.retriever, parts.docs, generator=parts.generator, reranker=parts.reranker, k=k, candidates=candidates
    )
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
    dataset: Annotated[str, typer.Option("--dataset", help="hotpotqa | mtrag | open-qa")],
    path: Annotated[
        Path,
        typer.Argument(help="HotpotQA JSON file/directory, the MT-RAG directory, or an open-domain QA question file."),
    ],
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
    corpus: Annotated[
        Path | None, typer.Option("--corpus", help="open-qa: corpus.jsonl or psgs_w100.tsv (default: beside PATH).")
    ] = None,
    rewrite: Annotated[
        str, typer.Option("--rewrite", help="mtrag: last_turn | full_history | llm | human (with --subset human)")
    ] = "last_turn",
    rewriter_model: Annotated[
        str | None, typer.Option("--rewriter-model", help="mtrag --rewrite llm: model (default: the generator's).")
    ] = None,
    rewriter_endpoint: Annotated[
        str | None,
        typer.Option(
            "--rewriter-endpoint",
            help="mtrag --rewrite llm: an OpenAI-compatible server (http(s)://host/v1) serving --rewriter-model, "
            "its own (not the generator's); key from --rewriter-api-key-env.",
        ),
    ] = None,
    rewriter_api_key_env: Annotated[
        str | None, typer.Option("--rewriter-api-key-env", help="Environment variable holding that server's key.")
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
        int, typer.Option("--chunk-size", min=1, help="Questions per saved chunk (resume unit, engine shard).")
    ] = 16,
    engine: Annotated[
        str | None,
        typer.Option("--engine", help="Where a local generator answers: local (this process) | ray (one per actor)."),
    ] = None,
    ray_address: RayAddressOpt = None,
    actors: ActorsOpt = None,
) -> None:
    """Run a data set end to end (retrieve → rerank → answer with citations) and score it: the flags become an
    experiment config run by the experiment runner into OUT/<dataset>/ (OUT/../.indexes caches the indexes; a
    rerun of the same command resumes, reusing what is done)."""
    from rich.console import Console

    from rankwise.data.mtrag import POOLED_NOTE
    from rankwise.experiment.ask_parts import generator_flags, rankrag_sections, reranker_section, retrieve_sections
    from rankwise.experiment.rag import hotpotqa_experiment, mtrag_experiment, open_qa_experiment, run_rag

    if dataset not in ("hotpotqa", "mtrag", "open-qa"):
        raise RankwiseError(f"--dataset must be hotpotqa, mtrag or open-qa, not '{dataset}'")
    if corpus is not None and dataset != "open-qa":
        raise RankwiseError("--corpus applies to --dataset open-qa")
    if passages not in ("retrieved", "reference"):
        raise RankwiseError(f"--passages must be 'retrieved' or 'reference', not '{passages}'")
    console = Console(stderr=True)
    answer: dict[str, Any] = {"top_k": k, "checkpoint_every": chunk_size}
    if engine is not None or ray_address is not None or actors is not None:
        if rankrag is None and (generator.lower() == "none" or generator.startswith(("http://", "https://"))):
            raise RankwiseError("--engine applies to a local --generator (an HTTP server spreads its own load)")
        answer["engine"] = engine_section(engine, ray_address, actors)
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
    elif dataset == "open-qa":
        config, sources = open_qa_experiment(path, out.name, stages, corpus, limit)
    else:
        stages["rewrite"] = _rewrite_section(
            rewrite, rewriter_model, rewrite_cache, generate, threads, rewriter_endpoint, rewriter_api_key_env
        )
        config, sources = mtrag_experiment(
            path, out.name, stages, domain, subset, answerability.split(",") if answerability else None,
            per_label_limit, limit,
        )  # fmt: skip
    summary, folders = run_rag(dataset, config, sources, out.parent, log=console.log)
    if dataset in ("hotpotqa", "open-qa"):
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


def _rewrite_section(
    strategy: str,
    model: str | None,
    cache: Path | None,
    generate: Any,
    threads: int | None,
    endpoint: str | None = None,
    api_key_env: str | None = None,
) -> Any:
    """The rewrite section of ``rag --dataset mtrag``; ``llm`` rewrites with ``--rewriter-model`` (served at
    ``--rewriter-endpoint`` when given), else with the local generator's model."""
    from rankwise.config.sections import HTTPGenerateConfig, RewriteConfig

    flags = {"strategy": "--rewrite", "endpoint": "--rewriter-endpoint", "api_key_env": "--rewriter-api-key-env"}
    if strategy != "llm":
        if model is not None or cache is not None or endpoint is not None or api_key_env is not None:
            raise RankwiseError(
                "--rewriter-model/-endpoint/-api-key-env and --rewrite-cache apply to --rewrite llm only"
            )
        return flag_section(RewriteConfig, flags, strategy=strategy)
    if model is not None and model.startswith(("http://", "https://")):
        raise RankwiseError(
            f"--rewriter-model {model}: give the server as --rewriter-endpoint, the model it serves as --rewriter-model"
        )
    if endpoint is not None and model is None:
        raise RankwiseError("--rewriter-endpoint needs --rewriter-model: the name of the model that server serves")
    if model is None and isinstance(generate, HTTPGenerateConfig):
        raise RankwiseError(
            "--rewrite llm with an http(s) --generator: name the rewriting model, --rewriter-model NAME (local, or "
            "served at --rewriter-endpoint URL)"
        )
    chosen = model or (generate.model if generate is not None else "smollm2")
    settings = {"endpoint": endpoint, "api_key_env": api_key_env, "threads": None if endpoint else threads}
    return flag_section(
        RewriteConfig, flags, strategy="llm", model=chosen, cache=str(cache) if cache else None, **settings
    )
