"""``rankwise rerank`` (rescore a run's top-N) and ``rankwise mine-negatives`` (training examples from a run)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import typer

from rankwise.errors import RankwiseError


def register(app: typer.Typer) -> None:
    app.command("rerank")(rerank)
    app.command("mine-negatives")(mine_negatives)


def rerank(
    run: Annotated[Path, typer.Option("--run", help="First-stage TREC run to rerank.")],
    corpus: Annotated[Path, typer.Option("--corpus", help="Data set directory/file, or a corpus.jsonl.")],
    out: Annotated[Path, typer.Option("--out", help="TREC run file to write (atomically).")],
    queries: Annotated[
        Path | None, typer.Option("--queries", help="Data set or queries file (default: the --corpus data set).")
    ] = None,
    split: Annotated[str, typer.Option("--split", help="Which judged queries of a data set.")] = "test",
    reranker: Annotated[
        str, typer.Option("--reranker", help="cross-encoder | llm | http | rankrag | a registered kind")
    ] = "cross-encoder",
    model: Annotated[
        str | None,
        typer.Option("--model", help="Model name or path (llm: 'smollm2' = bundled GGUF, or a .gguf path)."),
    ] = None,
    top_n: Annotated[int, typer.Option("--top-n", help="Documents reranked per query.")] = 100,
    limit_queries: Annotated[
        int | None, typer.Option("--limit-queries", help="Rerank only the first N queries of the run.")
    ] = None,
    max_length: Annotated[int | None, typer.Option("--max-length", help="cross-encoder: max tokens.")] = None,
    windows: Annotated[
        str | None,
        typer.Option(
            "--windows",
            help="cross-encoder: first (plain) | max | mean | top2 — also score the title before later "
            "stretches of each passage and fold the scores (costs a forward pass per window).",
        ),
    ] = None,
    window_words: Annotated[
        int | None, typer.Option("--window-words", help="cross-encoder: words per window (default 70).")
    ] = None,
    window_stride: Annotated[
        int | None, typer.Option("--window-stride", help="cross-encoder: words between window starts (default 60).")
    ] = None,
    batch_size: Annotated[int | None, typer.Option("--batch-size", help="Pairs per forward pass.")] = None,
    precision: Annotated[
        str | None,
        typer.Option(
            "--precision",
            help="cross-encoder: fp32 (default) | bf16 | int8 (onnxruntime) | auto; llm: fp32 | bf16 | auto. "
            "auto = bf16 where the hardware runs it natively, else fp32.",
        ),
    ] = None,
    max_passage_tokens: Annotated[
        int | None, typer.Option("--max-passage-tokens", help="llm: passage budget (default 256).")
    ] = None,
    gguf_file: Annotated[str | None, typer.Option("--gguf-file", help="llm: GGUF file inside --model.")] = None,
    url: Annotated[str | None, typer.Option("--url", help="http: the rerank endpoint.")] = None,
    api_key_env: Annotated[
        str | None, typer.Option("--api-key-env", help="http: environment variable holding the API key.")
    ] = None,
    interpolate_flag: Annotated[
        str | None,
        typer.Option(
            "--interpolate",
            help="Weight in [0,1] of the first-stage score (min-max fused); 0 = none; 'auto' = the weight "
            "`rankwise train reranker` (or `rankrag train`) picked on its dev split for --model.",
        ),
    ] = None,
    metrics: Annotated[
        str | None,
        typer.Option("--metrics", help="e.g. nDCG@10: also print input vs reranked metric on the --queries qrels."),
    ] = None,
    trust_remote_code: Annotated[bool, typer.Option("--trust-remote-code", help="Allow model code.")] = False,
    settings: Annotated[
        list[str] | None,
        typer.Option(
            "--set",
            help="KEY=VALUE of the rerank section (as in an experiment config's rerank:), e.g. --set max_tokens=4096;"
            " how a registered reranker kind takes its settings. Repeatable.",
        ),
    ] = None,
) -> None:
    """Rerank the top-N of a run with a cross-encoder, an LLM's P(True), a hosted rerank API, or any registered
    reranker kind (its settings with --set KEY=VALUE)."""
    from rankwise.build import build_reranker, interpolation_weight
    from rankwise.cli.allocator import keep_freed_memory
    from rankwise.data import load_corpus, load_queries, read_run, write_run
    from rankwise.rerank.base import interpolate
    from rankwise.types import top_k

    config = _section(
        reranker, model, top_n, interpolate_flag, max_length, batch_size, max_passage_tokens, gguf_file, url,
        api_key_env, trust_remote_code, windows, window_words, window_stride, settings or [], precision,
    )  # fmt: skip
    weight, _ = interpolation_weight(config, lambda line: typer.echo(line, err=True))
    if config.interpolate == "auto":
        typer.echo(f"first-stage weight {weight} (picked on the dev split by `rankwise train reranker`)")
    if limit_queries is not None and limit_queries < 1:
        raise RankwiseError(f"--limit-queries must be at least 1, not {limit_queries}")
    first_stage = read_run(run)
    if limit_queries is not None:
        first_stage = dict(list(first_stage.items())[:limit_queries])
    first_stage = top_k(first_stage, config.top_n)
    loaded_queries = load_queries(queries or corpus, split=split)
    docs, warnings = load_corpus(corpus)
    for warning in warnings:
        typer.echo(f"warning: {warning}", err=True)
    keep_freed_memory()
    built = build_reranker(config)
    if precision is not None and getattr(built, "precision_choice", None) is not None:
        typer.echo(built.precision_choice.describe(), err=True)
        if getattr(built, "runtime_line", None):
            typer.echo(built.runtime_line, err=True)
    reranked = built.rerank(loaded_queries, first_stage, docs, k=config.top_n)
    if weight:
        reranked = interpolate(first_stage, reranked, weight)
    write_run(reranked, out, tag=f"rankwise-{reranker}")
    typer.echo(f"reranked {len(reranked):,} queries (top {config.top_n}) -> {out}")
    if metrics:
        _report(metrics, queries or corpus, split, first_stage, reranked)


def _section(
    kind: str,
    model: str | None,
    top_n: int,
    interpolate: str | None,
    max_length: int | None,
    batch_size: int | None,
    max_passage_tokens: int | None,
    gguf_file: str | None,
    url: str | None,
    api_key_env: str | None,
    trust_remote_code: bool,
    windows: str | None,
    window_words: int | None,
    window_stride: int | None,
    settings: list[str],
    precision: str | None = None,
) -> Any:
    """The rerank section the flags describe (the one ``rerank:`` of an experiment config would give); a flag
    meant for another reranker kind is an error."""
    from rankwise.config.flags import section
    from rankwise.config.sections import RERANKER_CONFIGS
    from rankwise.config.yaml_keys import parse_overrides

    if kind not in RERANKER_CONFIGS:
        raise RankwiseError(f"--reranker must be one of {', '.join(RERANKER_CONFIGS)}, not '{kind}'")
    given = {
        "--max-length": max_length, "--gguf-file": gguf_file, "--url": url, "--api-key-env": api_key_env,
        "--max-passage-tokens": max_passage_tokens, "--windows": windows, "--window-words": window_words,
        "--window-stride": window_stride, "--trust-remote-code": trust_remote_code or None,
        "--precision": precision,
    }  # fmt: skip
    allowed = {
        "cross-encoder": {
            "--max-length",
            "--windows",
            "--window-words",
            "--window-stride",
            "--trust-remote-code",
            "--precision",
        },
        "llm": {"--gguf-file", "--max-passage-tokens", "--trust-remote-code", "--precision"},
        "http": {"--url", "--api-key-env"},
    }
    for flag, value in given.items():
        if value is not None and flag not in allowed.get(kind, set()):
            raise RankwiseError(f"{flag} does not apply to --reranker {kind}")
    if kind == "http" and url is None:
        raise RankwiseError("--reranker http needs --url")
    if top_n < 1:
        raise RankwiseError(f"--top-n must be at least 1, not {top_n}")
    weight: str | float | None = interpolate
    if interpolate is not None and interpolate.strip().lower() == "auto":
        if kind not in ("cross-encoder", "rankrag") or model is None:
            raise RankwiseError(
                "--interpolate auto needs --reranker cross-encoder or rankrag and a trained --model directory"
            )
        weight = "auto"
    elif interpolate is not None:
        try:
            weight = float(interpolate)
        except ValueError as exc:
            raise RankwiseError(f"--interpolate takes a number in [0, 1] or 'auto', not {interpolate!r}") from exc
        if not 0 <= weight <= 1:  # checked before the reranking, not after it
            raise RankwiseError(f"--interpolate must be in [0, 1], not {interpolate}")
    values = {
        "kind": kind, "model": model, "top_n": top_n, "interpolate": weight or None, "batch_size": batch_size,
        **{flag[2:].replace("-", "_"): value for flag, value in given.items() if value is not None},
        **parse_overrides(settings),
    }  # fmt: skip
    flags = {"interpolate": "--interpolate", "model": "--model", "top_n": "--top-n"}
    flags.update({key: f"--set {key}" for key in parse_overrides(settings)})
    return section(RERANKER_CONFIGS[kind], flags, **values)


def _report(metrics: str, source: Path, split: str, first_stage: dict, reranked: dict) -> None:
    from rankwise.data import load_qrels
    from rankwise.evaluate.retrieval import evaluate

    qrels = load_qrels(source, split=split)
    names = [name.strip() for name in metrics.split(",") if name.strip()]
    shared = {qid: first_stage[qid] for qid in reranked if qid in first_stage}
    before = evaluate(shared, qrels, names)
    after = evaluate(reranked, qrels, names)
    for name in names:
        typer.echo(f"{name}: first stage {before[name]:.4f} -> reranked {after[name]:.4f} ({len(reranked)} queries)")


def mine_negatives(
    run: Annotated[Path, typer.Option("--run", help="First-stage TREC run of the training queries.")],
    dataset: Annotated[Path, typer.Option("--dataset", help="Data set with corpus, queries and qrels.")],
    out: Annotated[Path, typer.Option("--out", help="JSON-lines file of examples to write.")],
    split: Annotated[str, typer.Option("--split", help="Which judgements (qrels/<split>.tsv).")] = "train",
    num_negatives: Annotated[int, typer.Option("--num-negatives", help="Negatives per positive (1:N).")] = 2,
    window: Annotated[str, typer.Option("--window", help="Ranks to sample from, 1-based inclusive.")] = "10-100",
    seed: Annotated[int, typer.Option("--seed")] = 0,
) -> None:
    """Mine (query, positive, negatives) examples: negatives sampled from a rank window, relevant docs skipped."""
    from rankwise.data import load_dataset, read_run
    from rankwise.train.negatives import mine_negatives as mine
    from rankwise.train.negatives import write_examples

    start, sep, end = window.partition("-")
    if not sep or not start.strip().isdigit() or not end.strip().isdigit():
        raise RankwiseError(f"--window must look like 10-100, not {window!r}")
    data = load_dataset(dataset, split=split)
    if not data.qrels:
        raise RankwiseError(f"{dataset}: no judgements for split '{split}'")
    mined = mine(
        data.queries,
        read_run(run),
        data.qrels,
        data.corpus,
        num_negatives=num_negatives,
        window=(int(start), int(end)),
        seed=seed,
    )
    for warning in [*data.warnings, *mined.warnings]:
        typer.echo(f"warning: {warning}", err=True)
    count = write_examples(mined.examples, out)
    typer.echo(f"wrote {count:,} examples ({num_negatives} negatives each, ranks {window}) -> {out}")
