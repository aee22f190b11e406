"""The measured inputs of docs/scaling.md: the Ray engine against the local one on SciFact, and per-item costs.

1. Engine: the first ``--docs`` SciFact abstracts encoded with the bundled all-MiniLM-L6-v2 by the local engine
   (this process, torch on every core) and by the Ray engine (a local Ray instance, one 1-CPU actor per core),
   alternating ``--repeats`` times. Prints max |Δ| between the two encodings, whether ``search`` over both gives
   the same run on the SciFact test queries, and the throughput ratio ray/local (end to end, each with its own
   start-up: model load for local, Ray start + actor model loads for ray; and encoding alone).
2. Per-item costs, single-threaded, counted in CPU seconds of this process (``time.process_time``), so that other
   jobs sharing the machine slow the wall clock but not the figure:
   - encode docs per CPU-second, on SciFact abstracts cut to 60 words (about an MS MARCO passage) and to 100 words
     (a DPR Wikipedia passage);
   - bytes per vector of the FAISS indexes rankwise builds (exact ``IndexFlatIP``, HNSW over float16 with the
     config default M=32), over SciFact vectors tiled with noise to ``--scale`` rows, and HNSW build CPU-seconds
     per vector; IVF-PQ (which rankwise does not build) straight from FAISS, labelled as such;
   - BM25 (bm25s, as ``BM25Retriever`` saves it) bytes per document at 60 and 100 words;
   - cross-encoder pairs per CPU-second (MiniLM-L6 body, 256 tokens max) at 60 and 100 words.

    RANKWISE_DATA=../shared/datasets .venv/bin/python benchmarks/scaling.py [--docs 1000] [--scale 100000]
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import time
from functools import partial
from pathlib import Path
from typing import Any

import numpy as np


def cores() -> int:
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1


def engine_comparison(args: argparse.Namespace, docs: list[tuple[str, str]], model_path: str) -> dict[str, Any]:
    import torch

    from rankwise.data import load_dataset
    from rankwise.engine import LocalEngine
    from rankwise.engine.ray_engine import RayEngine
    from rankwise.retrieve.dense import DenseRetriever
    from rankwise.retrieve.encode import encode_corpus, load_embeddings
    from rankwise.retrieve.encoders import load_sentence_encoder

    torch.set_num_threads(cores())
    shard_size = max(1, -(-len(docs) // (4 * cores())))  # 4 shards per core: every actor stays busy
    options = {"model_id": "minilm", "shard_size": shard_size, "batch_size": 64, "show_progress": False}
    work = args.work_dir / "engine"
    times: dict[str, list[float]] = {"local": [], "local_encode": [], "ray": [], "ray_encode": [], "ray_start": []}
    ray_engine = RayEngine()
    for repeat in range(args.repeats):
        for name in ("local", "ray"):
            directory = work / f"{name}-{repeat}"
            shutil.rmtree(directory, ignore_errors=True)
            start = time.perf_counter()
            if name == "local":
                model = load_sentence_encoder(model_path, "fp32")
                begin = time.perf_counter()
                encode_corpus(model, docs, directory, engine=LocalEngine(), **options)
            else:
                ray_engine._connect()
                begin = time.perf_counter()
                times["ray_start"].append(begin - start)
                encode_corpus(
                    partial(load_sentence_encoder, model_path, "fp32"), docs, directory, engine=ray_engine, **options
                )
            end = time.perf_counter()
            times[name].append(end - start)
            times[f"{name}_encode"].append(end - begin)
            print(f"  {name} #{repeat}: {end - start:.1f} s end to end, {end - begin:.1f} s encoding", flush=True)
    ray_engine.close()
    ids_local, local = load_embeddings(work / "local-0")
    ids_ray, remote = load_embeddings(work / "ray-0")
    queries = load_dataset(args.data / "scifact", split="test").judged_queries()
    runs = []
    for name in ("local-0", "ray-0"):
        retriever = DenseRetriever(model=model_path, show_progress=False)
        retriever.index_encoded(work / name)
        runs.append(retriever.search(queries, k=100))
    same_ranking = all(list(runs[0][q]) == list(runs[1][q]) for q in queries)
    max_score_delta = max(
        abs(a - b) for q in queries for a, b in zip(runs[0][q].values(), runs[1][q].values(), strict=True)
    )
    best = {key: min(values) for key, values in times.items()}
    return {
        "docs": len(docs),
        "cores": cores(),
        "shard_size": shard_size,
        "ids_equal": ids_local == ids_ray,
        "max_abs_delta": float(np.abs(local - remote).max()),
        "search_same_ranking": same_ranking,
        "search_max_score_delta": max_score_delta,
        "seconds": times,
        "best_seconds": best,
        "ray_over_local_end_to_end": best["local"] / best["ray"],
        "ray_over_local_encoding": best["local_encode"] / best["ray_encode"],
    }


def cut(docs: list[tuple[str, str]], words: int) -> list[tuple[str, str]]:
    return [(doc_id, " ".join(text.split()[:words])) for doc_id, text in docs]


def cpu_rate(fn: Any, items: int) -> float:
    start = time.process_time()
    fn()
    return items / (time.process_time() - start)


def encode_costs(docs: list[tuple[str, str]], model_path: str) -> dict[str, float]:
    from rankwise.retrieve.encoders import load_sentence_encoder

    model = load_sentence_encoder(model_path, "fp32")
    model.encode(["warm up"] * 8)
    out = {}
    for words in (60, 100):
        texts = [text for _, text in cut(docs[:400], words)]
        out[f"docs_per_cpu_second_{words}w"] = cpu_rate(lambda t=texts: model.encode(t, batch_size=64), len(texts))
    return out


def index_costs(vectors: np.ndarray, scale: int, work: Path) -> dict[str, float]:
    import faiss

    from rankwise.retrieve.dense import DenseRetriever

    rng = np.random.default_rng(0)
    reps = -(-scale // len(vectors))
    tiled = np.concatenate([vectors + rng.normal(0, 0.05, vectors.shape).astype(np.float32) for _ in range(reps)])
    tiled = np.ascontiguousarray(tiled[:scale] / np.linalg.norm(tiled[:scale], axis=1, keepdims=True))
    ids = [f"d{i}" for i in range(scale)]
    out: dict[str, float] = {"rows": scale, "dim": int(tiled.shape[1])}
    for kind, params in (("exact", {}), ("hnsw", {"hnsw_m": 32, "hnsw_storage": "float16"})):
        retriever = DenseRetriever(index_kind=kind, show_progress=False, **params)
        start = time.process_time()
        retriever._build(lambda: iter([(ids, tiled)]), tiled.shape[1], scale)
        build = time.process_time() - start
        retriever.save(work / kind)
        size = (work / kind / "index.faiss").stat().st_size
        out[f"{kind}_bytes_per_vector"] = size / scale
        out[f"{kind}_build_cpu_seconds_per_vector"] = build / scale
    nlist = int(4 * np.sqrt(scale))
    ivfpq = faiss.IndexIVFPQ(
        faiss.IndexFlatIP(tiled.shape[1]), tiled.shape[1], nlist, 48, 8, faiss.METRIC_INNER_PRODUCT
    )
    ivfpq.train(tiled[rng.choice(scale, min(scale, 64 * nlist), replace=False)])
    ivfpq.add(tiled)
    faiss.write_index(ivfpq, str(work / "ivfpq.faiss"))
    out["ivfpq48_faiss_direct_bytes_per_vector"] = (work / "ivfpq.faiss").stat().st_size / scale
    out["ivfpq48_faiss_direct_nlist"] = nlist
    return out


def bm25_costs(docs: list[tuple[str, str]], work: Path) -> dict[str, float]:
    from rankwise.retrieve.bm25 import BM25Retriever
    from rankwise.types import Document

    out = {}
    for words in (60, 100):
        corpus = {doc_id: Document(doc_id, "", text) for doc_id, text in cut(docs, words)}
        retriever = BM25Retriever(show_progress=False)
        retriever.index(corpus)
        retriever.save(work / f"bm25-{words}")
        files = [p for p in (work / f"bm25-{words}").iterdir() if p.name not in ("doc_ids.json", "manifest.json")]
        out[f"bm25_bytes_per_doc_{words}w"] = sum(p.stat().st_size for p in files) / len(corpus)
        out[f"bm25_doc_ids_bytes_per_doc_{words}w"] = (work / f"bm25-{words}" / "doc_ids.json").stat().st_size / len(
            corpus
        )
    return out


def rerank_costs(docs: list[tuple[str, str]]) -> dict[str, float]:
    from rankwise.rerank.cross_encoder import CrossEncoderReranker, load_cross_encoder

    model = load_cross_encoder("minilm", max_length=256, num_labels=1)
    reranker = CrossEncoderReranker(model, show_progress=False)
    out = {}
    for words in (60, 100):
        pairs = [("what causes the immune response to a virus", text) for _, text in cut(docs[:300], words)]
        out[f"rerank_pairs_per_cpu_second_{words}w"] = cpu_rate(lambda p=pairs: reranker.score(p), len(pairs))
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", type=Path, default=Path(os.environ.get("RANKWISE_DATA", "../shared/datasets")))
    parser.add_argument("--work-dir", type=Path, default=Path("/tmp/rankwise-bench/scaling"))
    parser.add_argument("--docs", type=int, default=1000, help="SciFact abstracts for the engine comparison")
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--scale", type=int, default=100_000, help="vectors for the index-size measurement")
    parser.add_argument("--skip-engine", action="store_true")
    parser.add_argument("--skip-costs", action="store_true", help="only the engine comparison")
    parser.add_argument("--out", type=Path, help="write the figures as JSON here too")
    args = parser.parse_args()

    import torch

    from rankwise.config.models import minilm_path
    from rankwise.retrieve.encode import iter_corpus_jsonl, load_embeddings

    args.work_dir.mkdir(parents=True, exist_ok=True)
    docs = list(iter_corpus_jsonl(args.data / "scifact" / "corpus.jsonl"))
    model = minilm_path()
    figures: dict[str, Any] = {}
    if not args.skip_engine:
        print(f"engine comparison on {args.docs:,} SciFact abstracts, {cores()} cores", flush=True)
        figures["engine"] = engine_comparison(args, docs[: args.docs], model)
        print(json.dumps({k: v for k, v in figures["engine"].items() if k != "seconds"}, indent=1), flush=True)
    if args.skip_costs:
        if args.out:
            args.out.write_text(json.dumps(figures, indent=1))
        return
    torch.set_num_threads(1)
    print("per-item costs (1 thread, CPU seconds)", flush=True)
    figures["encode"] = encode_costs(docs, model)
    print(json.dumps(figures["encode"]), flush=True)
    figures["rerank"] = rerank_costs(docs)
    print(json.dumps(figures["rerank"]), flush=True)
    figures["bm25"] = bm25_costs(docs, args.work_dir)
    print(json.dumps(figures["bm25"]), flush=True)
    engine_dir = args.work_dir / "engine" / "local-0"
    vectors = load_embeddings(engine_dir)[1] if engine_dir.is_dir() else None
    if vectors is None:
        from rankwise.retrieve.encoders import load_sentence_encoder

        vectors = load_sentence_encoder(model, "fp32").encode([t for _, t in docs[:1000]], normalize_embeddings=True)
    figures["index"] = index_costs(np.asarray(vectors, dtype=np.float32), args.scale, args.work_dir)
    print(json.dumps(figures["index"]), flush=True)
    if args.out:
        args.out.write_text(json.dumps(figures, indent=1))


if __name__ == "__main__":
    main()
