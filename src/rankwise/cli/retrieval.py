"""``rankwise index``, ``rankwise search`` and ``rankwise quickstart``."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Any

import typer

from rankwise.config.precision import PRECISIONS
from rankwise.errors import RankwiseError

_FORMAT_HELP = "beir | smart | hotpotqa (recognised from the files when left out)"
KINDS = ("bm25", "dense", "sparse")
FAISS_KINDS = ("exact", "hnsw", "ivf")
DTYPES = ("float32", "float16")
FUSERS = ("rrf", "weighted")
RayAddressOpt = Annotated[
    str | None,
    typer.Option("--ray-address", help="--engine ray: 'auto' joins a running cluster (default: a local one)."),
]
ActorsOpt = Annotated[int | None, typer.Option("--actors", help="--engine ray: model copies (default: one per CPU).")]


def register(app: typer.Typer) -> None:
    app.command("index")(index)
    app.command("search")(search)
    app.command("quickstart")(quickstart)


def index(
    dataset: Annotated[Path, typer.Argument(help="Data set directory or file (BEIR, SMART, HotpotQA).")],
    out: Annotated[Path, typer.Option("--out", help="Directory to write the index to (replaced atomically).")],
    kind: Annotated[str, typer.Option("--kind", help="bm25 | dense | sparse (SPLADE)")] = "bm25",
    model: Annotated[
        str | None,
        typer.Option(
            "--model",
            help="Encoder name or path: dense default all-MiniLM-L6-v2, sparse default splade-tiny (bundled).",
        ),
    ] = None,
    format: Annotated[str | None, typer.Option("--format", help=_FORMAT_HELP)] = None,
    batch_size: Annotated[int, typer.Option("--batch-size", help="Encoding batch size.")] = 64,
    faiss_kind: Annotated[str, typer.Option("--faiss", help="Dense FAISS index: exact | hnsw | ivf.")] = "exact",
    work_dir: Annotated[
        Path | None,
        typer.Option(
            "--work-dir", help="Dense/sparse: keep encoded shards here; a rerun resumes from the finished ones."
        ),
    ] = None,
    shard_size: Annotated[int, typer.Option("--shard-size", help="Dense: documents per shard.")] = 10_000,
    dtype: Annotated[str, typer.Option("--dtype", help="Dense: shard dtype, float32 | float16.")] = "float32",
    precision: Annotated[
        str | None,
        typer.Option(
            "--precision",
            help="Dense: how the encoder runs: fp32 (default) | bf16 | int8 (onnxruntime) | auto (bf16 where the "
            "hardware runs it natively, else fp32). Recorded in the manifest; searches encode queries the same way.",
        ),
    ] = None,
    runtime: Annotated[
        str | None,
        typer.Option(
            "--runtime",
            help="Dense: what runs the encoder: auto (default: OpenVINO for bf16 on a CPU where it is installed, "
            "else torch) | torch | openvino (CPU; fp32 or bf16). Recorded in the manifest.",
        ),
    ] = None,
    engine: Annotated[
        str | None,
        typer.Option(
            "--engine", help="Dense, sparse: where encoding runs: local (this process) | ray (a model per actor)."
        ),
    ] = None,
    ray_address: RayAddressOpt = None,
    actors: ActorsOpt = None,
    devices: Annotated[str | None, typer.Option("--devices", hidden=True)] = None,
    hnsw_m: Annotated[int, typer.Option("--hnsw-m", help="HNSW links per node.")] = 16,
    ef_search: Annotated[int, typer.Option("--ef-search", help="HNSW candidate list size at search.")] = 64,
    hnsw_storage: Annotated[
        str, typer.Option("--hnsw-storage", help="HNSW vector storage: float16 (half the memory) | float32.")
    ] = "float16",
    nlist: Annotated[int | None, typer.Option("--nlist", help="IVF cells (default ~4*sqrt(N)).")] = None,
    nprobe: Annotated[int, typer.Option("--nprobe", help="IVF cells searched.")] = 16,
    max_seq_length: Annotated[
        int | None, typer.Option("--max-seq-length", help="Sparse: truncate texts to this many tokens.")
    ] = None,
) -> None:
    """Index a data set's corpus with BM25 (bm25s), a dense encoder (sentence-transformers + FAISS) or SPLADE.

    With an approximate FAISS index (hnsw, ivf) the data set's queries also measure its recall@10 against exact
    search, printed and stored in the index manifest.
    """
    from rankwise.build import build_retriever
    from rankwise.config.flags import engine_section, section
    from rankwise.config.sections import RETRIEVER_CONFIGS
    from rankwise.data import load_dataset

    if kind not in KINDS:
        raise RankwiseError(f"--kind must be one of {', '.join(KINDS)}, not '{kind}'")
    if model is not None and kind == "bm25":
        raise RankwiseError("--model applies to --kind dense and --kind sparse only")
    if faiss_kind not in FAISS_KINDS:
        raise RankwiseError(f"--faiss must be one of {', '.join(FAISS_KINDS)}, not '{faiss_kind}'")
    if dtype not in DTYPES:
        raise RankwiseError(f"--dtype must be one of {', '.join(DTYPES)}, not '{dtype}'")
    if devices is not None:
        raise RankwiseError("--devices (a multi-process pool) was replaced by --engine ray --actors N")
    if kind != "dense" and faiss_kind != "exact":
        raise RankwiseError("--faiss applies to --kind dense only")
    if kind == "bm25" and work_dir is not None:
        raise RankwiseError("--work-dir applies to --kind dense and --kind sparse only")
    engine_config = engine_section(engine, ray_address, actors)
    if kind == "bm25" and engine is not None:
        raise RankwiseError("--engine applies to --kind dense and --kind sparse only")
    if kind != "dense" and precision is not None:
        raise RankwiseError("--precision applies to --kind dense only")
    if kind != "dense" and runtime is not None:
        raise RankwiseError("--runtime applies to --kind dense only")
    if kind != "sparse" and max_seq_length is not None:
        raise RankwiseError("--max-seq-length applies to --kind sparse only")
    settings: dict[str, Any] = {}
    if kind != "bm25":
        settings = {"model": model, "batch_size": batch_size, "engine": engine_config}
    if kind == "sparse":
        settings["max_seq_length"] = max_seq_length
    elif kind == "dense":
        settings.update(
            index_kind=faiss_kind, hnsw_m=hnsw_m, ef_search=ef_search, hnsw_storage=hnsw_storage, nlist=nlist,
            nprobe=nprobe, shard_size=shard_size, dtype=dtype, precision=precision, runtime=runtime,
        )  # fmt: skip
    flags = {"index_kind": "--faiss", "batch_size": "--batch-size", "model": "--model", "runtime": "--runtime"}
    config = section(RETRIEVER_CONFIGS[kind], flags, kind=kind, **settings)
    retriever = build_retriever(config)  # before reading the corpus: a missing extra fails at once
    loaded = load_dataset(dataset, format=format)
    for warning in loaded.warnings:
        typer.echo(f"warning: {warning}", err=True)
    if kind == "dense":
        if precision is not None or runtime is not None:
            typer.echo(retriever.precision_choice.describe(), err=True)
            typer.echo(retriever.runtime_line, err=True)
        retriever.index(loaded.corpus, work_dir=work_dir)
        if faiss_kind != "exact" and loaded.queries:
            queries = dict(list(loaded.queries.items())[:1000])
            recall = retriever.recall_vs_exact(queries, k=10)
            typer.echo(f"{faiss_kind} recall@10 vs exact search over {len(queries):,} queries: {recall:.4f}")
    elif kind == "sparse":
        retriever.index(loaded.corpus, work_dir=work_dir)
    else:
        retriever.index(loaded.corpus)
    retriever.save(out)
    label = f"{kind}, {faiss_kind}, {retriever.precision}" if kind == "dense" else kind
    typer.echo(f"indexed {len(loaded.corpus):,} documents ({label}) -> {out}")


def search(
    index_dirs: Annotated[list[Path], typer.Option("--index", help="Index directory; give it twice or more to fuse.")],
    queries: Annotated[Path, typer.Option("--queries", help="Data set (its judged queries) or a queries file.")],
    out: Annotated[Path, typer.Option("--out", help="TREC run file to write.")],
    split: Annotated[str, typer.Option("--split", help="Which queries: those judged in this split.")] = "test",
    k: Annotated[int, typer.Option("--k", help="Documents per query.")] = 100,
    fuse: Annotated[str, typer.Option("--fuse", help="rrf | weighted (with two or more --index).")] = "rrf",
    weights: Annotated[
        str | None, typer.Option("--weights", help="Comma-separated weight per --index for fusion.")
    ] = None,
    rrf_k: Annotated[int, typer.Option("--rrf-k", help="RRF constant k.")] = 60,
) -> None:
    """Search one index, or several fused with RRF or weighted score fusion, and write a TREC run."""
    from rankwise.build import load_index
    from rankwise.data import load_dataset, load_queries, write_run
    from rankwise.retrieve.fusion import fuse as fuse_runs
    from rankwise.retrieve.store import check_corpus

    if k < 1:
        raise RankwiseError(f"--k must be at least 1, not {k}")
    if fuse not in FUSERS:
        raise RankwiseError(f"--fuse must be one of {', '.join(FUSERS)}, not '{fuse}'")
    parsed_weights = _parse_weights(weights, len(index_dirs))
    retrievers = [load_index(directory) for directory in index_dirs]
    if _is_queries_file(queries):
        loaded_queries = load_queries(queries, split=split)
    else:  # a data set: its corpus must be the one every index was built from
        dataset = load_dataset(queries, split=split)
        for directory, retriever in zip(index_dirs, retrievers, strict=True):
            check_corpus(directory, retriever.fingerprint, dataset.corpus, queries)
        loaded_queries = dataset.judged_queries() if dataset.qrels else dataset.queries  # as load_queries does
    runs = [retriever.search(loaded_queries, k=k) for retriever in retrievers]
    if len(runs) == 1:
        run = runs[0]
    else:
        options: dict[str, object] = {"weights": parsed_weights, "depth": k}
        if fuse == "rrf":
            options["k"] = rrf_k
        run = fuse_runs(runs, method=fuse, **options)
    write_run(run, out, tag="rankwise" if len(runs) == 1 else f"rankwise-{fuse}")
    typer.echo(f"searched {len(loaded_queries):,} queries -> {out}")


def _is_queries_file(path: Path) -> bool:
    """A BEIR queries ``.jsonl`` or a ``qid<TAB>text`` ``.tsv`` file, which ``load_queries`` reads without a corpus."""
    suffix = path.suffix.lower()
    return path.is_file() and (suffix == ".tsv" or (suffix == ".jsonl" and path.name != "corpus.jsonl"))


def _parse_weights(text: str | None, count: int) -> list[float] | None:
    if text is None:
        return None
    try:
        values = [float(part) for part in text.split(",")]
    except ValueError:
        raise RankwiseError(f"--weights must be comma-separated numbers, not '{text}'") from None
    if len(values) != count:
        raise RankwiseError(f"--weights gives {len(values)} weights for {count} --index directories")
    return values


def quickstart(
    data: Annotated[
        Path | None,
        typer.Option("--data", help="SciFact directory (default: $RANKWISE_DATA/scifact, else download BEIR's)."),
    ] = None,
    out: Annotated[
        Path, typer.Option("--out", help="Output root: writes OUT/quickstart/<dataset>/ (as rankwise run does).")
    ] = Path("outputs"),
    model: Annotated[
        str | None, typer.Option("--model", help="Dense encoder name or path (default: all-MiniLM-L6-v2).")
    ] = None,
    precision: Annotated[
        str | None,
        typer.Option(
            "--precision",
            help="Dense encoder precision: fp32 (default; the README's figures) | bf16 | int8 | auto (the fastest "
            "this machine runs natively: bf16 on OpenVINO on an AVX512-BF16 CPU, about half the fp32 index time).",
        ),
    ] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print the table's figures as JSON.")] = False,
) -> None:
    """BM25, dense and RRF hybrid on SciFact test: the shipped quickstart experiment (configs/quickstart.yaml) run
    by the experiment runner, then a table of nDCG@10 / RR@10 / R@100 and time per stage."""
    from rich.console import Console
    from rich.table import Table

    from rankwise.experiment.quickstart import METRICS, resolve_scifact, run_quickstart

    console = Console(stderr=True)
    if precision is not None and precision not in PRECISIONS:
        raise RankwiseError(f"--precision must be one of {', '.join(PRECISIONS)}, not '{precision}'")
    source = resolve_scifact(data)

    def log(message: str) -> None:
        console.print(message, markup=False, highlight=False, soft_wrap=True)

    out_dir, rows = run_quickstart(source, out, dense_model=model, log=log, precision=precision)
    if as_json:
        typer.echo(json.dumps(rows, indent=2))
        return
    table = Table(title="rankwise quickstart — SciFact test")
    table.add_column("system")
    for name in METRICS:
        table.add_column(name, justify="right")
    table.add_column("index s", justify="right")
    table.add_column("search s", justify="right")
    for system, values in rows.items():
        index = f"{values['index_s']:.1f} ({values['index']})" if system != "hybrid" else "-"
        table.add_row(system, *(f"{values[name]:.4f}" for name in METRICS), index, f"{values['search_s']:.2f}")
    Console().print(table)
    console.print(f"runs and metrics.json written to {out_dir}")
