"""``rankwise serve`` (the HTTP API, the MCP mount and the page) and ``rankwise mcp`` (the MCP tools on stdio).

Both serve one pipeline, given by an experiment config (``--config x.yaml [-d DATASET] [-o key=value]``) or by the
flags of ``rankwise ask`` (``--index … --corpus … [--reranker … --reranker-model … --candidates …]
[--generator …]``); see :mod:`rankwise.serve`. Needs the ``serve`` extra (fastapi, uvicorn, mcp).
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import typer

from rankwise.cli.generate import DeviceOpt, PrecisionOpt
from rankwise.errors import MissingExtraError, RankwiseError

ConfigOpt = Annotated[Path | None, typer.Option("--config", "-c", help="Experiment config (YAML) to serve.")]
DatasetOpt = Annotated[str | None, typer.Option("--dataset", "-d", help="With --config: the data set to serve.")]
OverrideOpt = Annotated[
    list[str] | None,
    typer.Option("--set", help="With --config: override a config key, --set rerank.top_n=20 (YAML value); repeatable."),
]
OutOpt = Annotated[Path, typer.Option("--out", help="With --config: the output root of its index/model caches.")]
IndexOpt = Annotated[list[Path] | None, typer.Option("--index", help="Index directory; twice or more = RRF hybrid.")]
CorpusOpt = Annotated[Path | None, typer.Option("--corpus", help="The indexed data set or corpus.jsonl.")]
FormatOpt = Annotated[str | None, typer.Option("--format", help="beir | smart | hotpotqa (default: detect).")]
RerankerOpt = Annotated[str, typer.Option("--reranker", help="none | cross-encoder | llm (P(True))")]
RerankerModelOpt = Annotated[str | None, typer.Option("--reranker-model", help="Reranker model name or path.")]
CandidatesOpt = Annotated[int, typer.Option("--candidates", min=1, help="Documents retrieved (and reranked).")]
GeneratorOpt = Annotated[
    str, typer.Option("--generator", help="none | smollm2 (bundled) | hub name | directory | .gguf | http(s)://…/v1")
]
GeneratorModelOpt = Annotated[
    str | None, typer.Option("--generator-model", help="Model name served by an http(s) --generator.")
]
GeneratorKeyOpt = Annotated[
    str | None,
    typer.Option("--generator-api-key-env", help="Environment variable holding the HTTP generator's API key."),
]
KOpt = Annotated[
    int, typer.Option("--k", min=1, help="Passages given to the generator (a request may ask for others).")
]
TemplateOpt = Annotated[str, typer.Option("--template", help="Prompt template: default | short | sentences | YAML.")]
MaxNewOpt = Annotated[int, typer.Option("--max-new-tokens", min=1, help="Answer length budget in tokens.")]
PassageWordsOpt = Annotated[
    int | None, typer.Option("--max-passage-words", min=1, help="Cut each passage to this many words in the prompt.")
]
RankRAGOpt = Annotated[
    Path | None,
    typer.Option(
        "--rankrag", help="RankRAG preset: this one model (rankrag train's model/) reranks by P(True) and answers."
    ),
]
ThreadsOpt = Annotated[int | None, typer.Option("--threads", min=1, help="torch intra-op threads for a local model.")]
WaitOpt = Annotated[float, typer.Option("--batch-wait-ms", min=0, help="How long a batch waits for company.")]
TokensOpt = Annotated[
    int,
    typer.Option("--batch-tokens", min=1, help="Approximate tokens per rerank call (at most 4 forward passes' worth)."),
]
MaxBatchOpt = Annotated[
    int, typer.Option("--max-batch", min=1, help="Requests per model call (a generator: at most its own batch).")
]
QueueOpt = Annotated[int, typer.Option("--max-queue", min=1, help="Requests waiting per stage before 503s.")]


def register(app: typer.Typer) -> None:
    app.command("serve")(serve)
    app.command("mcp")(mcp)


# the pipeline flags' defaults (as in the signatures of serve and mcp below); None for the others
FLAG_DEFAULTS: dict[str, Any] = {
    "reranker": "none", "candidates": 50, "generator": "none", "k": 5, "template": "default", "max_new_tokens": 96,
}  # fmt: skip


def _served(
    config: Path | None, dataset: str | None, overrides: list[str] | None, out: Path,
    index: list[Path] | None, corpus: Path | None, **flags: Any,
) -> Any:  # fmt: skip
    from rankwise.serve.parts import from_config, from_flags

    def log(message: str) -> None:
        typer.echo(message, err=True)  # never stdout: `rankwise mcp` speaks the protocol there

    if config is not None:
        if index or corpus is not None:
            raise RankwiseError("give either --config or --index/--corpus, not both")
        given = sorted(name for name, value in flags.items() if value != FLAG_DEFAULTS.get(name))
        if given:  # the config describes the pipeline; a flag beside it would be silently ignored
            flag = "--" + given[0].replace("_", "-")
            raise RankwiseError(f"{flag} goes with --index/--corpus; with --config set it in the config (or --set)")
        return from_config(config, dataset, overrides or [], out, log=log)
    if dataset is not None or overrides:
        raise RankwiseError("-d and --set go with --config")
    if not index or corpus is None:
        raise RankwiseError("serve a pipeline: --config x.yaml [-d DATASET], or --index DIR --corpus PATH")
    return from_flags(index, corpus, log=log, **flags)


def _settings(batch_wait_ms: float, batch_tokens: int, max_batch: int, max_queue: int) -> Any:
    from rankwise.serve.service import ServeSettings

    if batch_wait_ms < 0 or min(batch_tokens, max_batch, max_queue) < 1:
        raise RankwiseError("--batch-wait-ms must be >= 0; --batch-tokens, --max-batch and --max-queue positive")
    return ServeSettings(batch_wait_ms, batch_tokens, max_batch, max_queue)


def serve(
    config: ConfigOpt = None,
    dataset: DatasetOpt = None,
    overrides: OverrideOpt = None,
    out: OutOpt = Path("outputs"),
    index: IndexOpt = None,
    corpus: CorpusOpt = None,
    format: FormatOpt = None,
    reranker: RerankerOpt = "none",
    reranker_model: RerankerModelOpt = None,
    candidates: CandidatesOpt = 50,
    generator: GeneratorOpt = "none",
    generator_model: GeneratorModelOpt = None,
    generator_api_key_env: GeneratorKeyOpt = None,
    rankrag: RankRAGOpt = None,
    k: KOpt = 5,
    template: TemplateOpt = "default",
    max_new_tokens: MaxNewOpt = 96,
    max_passage_words: PassageWordsOpt = None,
    threads: ThreadsOpt = None,
    precision: PrecisionOpt = None,
    device: DeviceOpt = None,
    host: Annotated[str, typer.Option("--host", help="Address to bind (127.0.0.1: this machine only).")] = "127.0.0.1",
    port: Annotated[int, typer.Option("--port", help="Port to listen on.")] = 8000,
    api_key_env: Annotated[
        str | None, typer.Option("--api-key-env", help="Environment variable holding the bearer token clients send.")
    ] = None,
    batch_wait_ms: WaitOpt = 5.0,
    batch_tokens: TokensOpt = 32768,
    max_batch: MaxBatchOpt = 64,
    max_queue: QueueOpt = 64,
    max_body_bytes: Annotated[int, typer.Option("--max-body-bytes", min=1, help="Largest request body accepted.")] = 1
    << 20,
    mcp_mount: Annotated[bool, typer.Option("--mcp/--no-mcp", help="Mount the MCP tools at /mcp.")] = True,
    graceful_timeout: Annotated[
        float, typer.Option("--graceful-timeout", help="Seconds SIGTERM waits for requests in flight.")
    ] = 60.0,
) -> None:
    """Serve a pipeline over HTTP: /v1/search, /v1/rerank, /v1/ask, /healthz, /metrics, MCP at /mcp, a page at /."""
    import os

    try:
        import mcp.server  # noqa: F401 - the /mcp mount
        import uvicorn

        from rankwise.serve.app import create_app
    except ImportError as exc:
        raise MissingExtraError(exc.name or "fastapi", "serve") from exc
    from rankwise.serve.service import Service

    api_key = None
    if api_key_env is not None:
        api_key = os.environ.get(api_key_env)
        if not api_key:
            raise RankwiseError(f"--api-key-env {api_key_env}: that environment variable is not set or empty")
    settings = _settings(batch_wait_ms, batch_tokens, max_batch, max_queue)
    served = _served(
        config, dataset, overrides, out, index, corpus, format=format, reranker=reranker,
        reranker_model=reranker_model, candidates=candidates, generator=generator, generator_model=generator_model,
        generator_api_key_env=generator_api_key_env, rankrag=rankrag, k=k, template=template,
        max_new_tokens=max_new_tokens, max_passage_words=max_passage_words, threads=threads, precision=precision,
        device=device,
    )  # fmt: skip
    app = create_app(Service(served, settings), api_key, max_body_bytes, mcp=mcp_mount, host=host)
    stages = " → ".join(served.info["stages"])
    typer.echo(f"serving {stages} on http://{host}:{port} (page /, API /v1, MCP /mcp)", err=True)
    uvicorn.run(app, host=host, port=port, timeout_graceful_shutdown=graceful_timeout, log_level="warning")


def mcp(
    config: ConfigOpt = None,
    dataset: DatasetOpt = None,
    overrides: OverrideOpt = None,
    out: OutOpt = Path("outputs"),
    index: IndexOpt = None,
    corpus: CorpusOpt = None,
    format: FormatOpt = None,
    reranker: RerankerOpt = "none",
    reranker_model: RerankerModelOpt = None,
    candidates: CandidatesOpt = 50,
    generator: GeneratorOpt = "none",
    generator_model: GeneratorModelOpt = None,
    generator_api_key_env: GeneratorKeyOpt = None,
    rankrag: RankRAGOpt = None,
    k: KOpt = 5,
    template: TemplateOpt = "default",
    max_new_tokens: MaxNewOpt = 96,
    max_passage_words: PassageWordsOpt = None,
    threads: ThreadsOpt = None,
    precision: PrecisionOpt = None,
    device: DeviceOpt = None,
) -> None:
    """Serve the pipeline's `search` and `ask` tools to an MCP client over stdin/stdout."""
    import asyncio

    try:
        import mcp.server  # noqa: F401

        from rankwise.serve.mcp_tools import run_stdio
    except ImportError as exc:
        raise MissingExtraError(exc.name or "mcp", "serve") from exc
    from rankwise.serve.service import Service

    served = _served(
        config, dataset, overrides, out, index, corpus, format=format, reranker=reranker,
        reranker_model=reranker_model, candidates=candidates, generator=generator, generator_model=generator_model,
        generator_api_key_env=generator_api_key_env, rankrag=rankrag, k=k, template=template,
        max_new_tokens=max_new_tokens, max_passage_words=max_passage_words, threads=threads, precision=precision,
        device=device,
    )  # fmt: skip
    asyncio.run(run_stdio(Service(served)))
