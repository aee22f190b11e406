"""The GPU figures: per-item costs for docs/scaling.md, precision speed-ups, the cross-encoder's bf16 quality and
the latency of one question, all on one CUDA device, every model a local directory (nothing is downloaded).

    python benchmarks/gpu.py --data DIR/scifact --ce CE_DIR --minilm MINILM_DIR --llm LLM_DIR \\
        --run bm25-top100.trec --out gpu.json

``--minilm`` and ``--llm`` may be *shape* directories: a model's config and tokenizer files without weights. Then a
model of that shape is built with random weights (seed 0): how fast a model runs does not depend on its weight
values, so the speed figures hold for the trained model of that shape; quality figures need real weights and are
taken only with ``--ce`` (a trained cross-encoder). With random weights a generator rarely stops early, so its
answers run to the token budget: the ask latency is then the worst case of that budget.

Sections (each prints one JSON line; all of them go to ``--out``):
1. ``encode``: SciFact abstracts cut to 60 words (about an MS MARCO passage) and 100 (a DPR Wikipedia passage),
   documents per second: rankwise's encoder at ``auto`` (bf16 on a GPU) and fp32, against
   ``SentenceTransformer.encode`` at its defaults (fp32, batch 32). Best of ``--rounds``, alternating.
2. ``rerank``: cross-encoder pairs per second at 256 tokens (``--ce``'s shape), rankwise's ``CrossEncoderReranker``
   at auto and fp32 against ``CrossEncoder.predict`` at its defaults.
3. ``llm``: P(True) pairs per second, rankwise's ``LLMReranker`` in bf16 and fp32 against the plain fp32
   transformers loop (one prompt per forward pass).
4. ``generate``: answer tokens per second of rankwise's local generator (greedy, 96 new tokens at most).
5. ``ce_quality`` (with ``--run``): ``rankwise rerank`` of a first-stage run's top 100 with ``--ce`` at 128 tokens,
   ``--windows max``, fp32 and bf16: SciFact test nDCG@10 of each and seconds per query (model load included).
6. ``ask``: ``Pipeline.ask`` (what ``rankwise ask`` and the server run) over a BM25 index: BM25 top 50, the
   cross-encoder, the generator; per-stage seconds for ``--questions`` questions, models loaded once.
"""

from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from _timing import best_of

QUESTIONS = (
    "What does BRCA1 repair?",
    "Does vitamin D supplementation reduce the risk of fractures?",
    "Which cells produce antibodies?",
    "Is obesity associated with a higher risk of type 2 diabetes?",
    "How does aspirin affect platelet aggregation?",
)


def synchronised(fn: Any) -> Any:
    import torch

    def run() -> None:
        fn()
        if torch.cuda.is_available():
            torch.cuda.synchronize()

    return run


def materialise(directory: Path, work: Path, causal: bool) -> str:
    """``directory`` itself when it holds weights, else a copy with random weights of its config's shape."""
    if any(directory.glob("*.safetensors")) or any(directory.glob("*.bin")):
        return str(directory)
    import torch
    from transformers import AutoConfig, AutoModel, AutoModelForCausalLM

    target = work / f"random-{directory.name}"
    if any(target.glob("*.safetensors")):
        return str(target)  # built earlier in this work directory
    shutil.rmtree(target, ignore_errors=True)
    shutil.copytree(directory, target)
    torch.manual_seed(0)
    config = AutoConfig.from_pretrained(target)
    model = AutoModelForCausalLM.from_config(config) if causal else AutoModel.from_config(config)
    model.save_pretrained(target)
    return str(target)


def row(unit: str, items: int, times: list[float]) -> dict[str, Any]:
    """Rates (items per second) of the peer, rankwise at auto and rankwise at fp32, from their best times."""
    peer, auto, fp32 = (items / seconds for seconds in times)
    return {unit: items, "peer_fp32": peer, "rankwise_auto": auto, "rankwise_fp32": fp32, "auto_over_peer": auto / peer}


def cut(texts: list[str], words: int) -> list[str]:
    return [" ".join(text.split()[:words]) for text in texts]


def encode(args: argparse.Namespace, texts: list[str], minilm: str) -> dict[str, Any]:
    from sentence_transformers import SentenceTransformer

    from rankwise.config.precision import choose_precision
    from rankwise.retrieve.encoders import load_sentence_encoder

    choice = choose_precision("auto", "dense", args.device)
    peer = SentenceTransformer(minilm, device=args.device)
    ours = load_sentence_encoder(minilm, choice.precision, device=args.device)
    fp32 = load_sentence_encoder(minilm, "fp32", device=args.device)
    out: dict[str, Any] = {"auto": choice.describe()}
    for words in (60, 100):
        batch = cut(texts, words)
        peer.encode(batch[:256])
        times = best_of(
            args.rounds,
            synchronised(lambda b=batch: peer.encode(b)),
            synchronised(lambda b=batch: ours.encode(b, batch_size=args.encode_batch)),
            synchronised(lambda b=batch: fp32.encode(b, batch_size=args.encode_batch)),
        )
        out[f"{words}w"] = row("docs", len(batch), times)
    return out


def rerank(args: argparse.Namespace, pairs: list[tuple[str, str]], ce: str) -> dict[str, Any]:
    from sentence_transformers import CrossEncoder

    from rankwise.rerank.cross_encoder import CrossEncoderReranker

    peer = CrossEncoder(ce, max_length=256, device=args.device)
    ours = CrossEncoderReranker(ce, max_length=256, precision="auto", device=args.device, show_progress=False)
    fp32 = CrossEncoderReranker(ce, max_length=256, precision="fp32", device=args.device, show_progress=False)
    out: dict[str, Any] = {"auto": ours.precision_choice.describe()}
    for words in (60, 100):
        batch = list(zip([q for q, _ in pairs], cut([t for _, t in pairs], words), strict=True))
        peer.predict(batch[:64])
        times = best_of(
            args.rounds,
            synchronised(lambda b=batch: peer.predict(b, show_progress_bar=False)),
            synchronised(lambda b=batch: ours.score(b)),
            synchronised(lambda b=batch: fp32.score(b)),
        )
        out[f"{words}w"] = row("pairs", len(batch), times)
    return out


def llm(args: argparse.Namespace, pairs: list[tuple[str, str]], model_dir: str) -> dict[str, Any]:
    from rankwise.rerank.llm import LLMReranker

    bf16 = LLMReranker(model_dir, dtype="bfloat16", device=args.device, batch_size=32, show_progress=False)
    fp32 = LLMReranker(model_dir, dtype="float32", device=args.device, batch_size=32, show_progress=False)
    batch = pairs[: args.llm_pairs]
    passages = fp32.truncate([p for _, p in batch])
    prompts = [fp32.prompt(q, p) for (q, _), p in zip(batch, passages, strict=True)]

    def peer() -> None:  # benchmarks/_speed_llm.py's plain loop, its inputs moved to the device
        import torch

        model, tokenizer = fp32.model, fp32.tokenizer
        with torch.no_grad():
            for prompt in prompts:
                inputs = tokenizer(prompt, return_tensors="pt", add_special_tokens=False).to(args.device)
                model(**inputs).logits[0, -1].float().cpu()

    fp32.score(batch[:8])
    times = best_of(
        args.rounds,
        synchronised(peer),
        synchronised(lambda: bf16.score(batch)),
        synchronised(lambda: fp32.score(batch)),
    )
    rates = [len(batch) / seconds for seconds in times]
    return {
        "pairs": len(batch),
        "peer_fp32_loop": rates[0],
        "rankwise_bf16": rates[1],
        "rankwise_fp32": rates[2],
        "bf16_over_peer": rates[1] / rates[0],
    }


def generate(args: argparse.Namespace, passages: list[str], model_dir: str) -> dict[str, Any]:
    from rankwise.generate.local import LocalGenerator
    from rankwise.types import Document

    out: dict[str, Any] = {}
    for dtype in ("bfloat16", "float32"):
        generator = LocalGenerator(model_dir, dtype=dtype, max_new_tokens=96, batch_size=1, show_progress=False)
        _, tokenizer = generator.model_and_tokenizer()
        docs = [Document(f"d{i}", "", text) for i, text in enumerate(passages[:5])]
        generator.generate(QUESTIONS[0], docs)
        tokens, start = 0, time.perf_counter()
        questions = QUESTIONS[: args.questions]
        for question in questions:
            answer = generator.generate(question, docs)
            tokens += len(tokenizer.encode(answer.text, add_special_tokens=False))
        seconds = time.perf_counter() - start
        out[dtype] = {"answers": len(questions), "seconds_per_answer": seconds / len(questions), "tokens": tokens}
        out[dtype]["tokens_per_second"] = tokens / seconds
    return out


def ce_quality(args: argparse.Namespace, ce: str) -> dict[str, Any]:
    from rankwise.data import load_dataset, read_run
    from rankwise.evaluate.retrieval import evaluate

    qrels = load_dataset(args.data).qrels
    out: dict[str, Any] = {}
    for precision in ("fp32", "bf16"):
        target = args.work / f"ce-{precision}.trec"
        command = [sys.executable, "-m", "rankwise", "rerank", "--run", str(args.run), "--corpus", str(args.data)]
        command += ["--queries", str(args.data), "--model", ce, "--max-length", "128", "--top-n", "100"]
        command += ["--windows", "max", "--interpolate", "auto", "--precision", precision, "--out", str(target)]
        start = time.perf_counter()
        subprocess.run(command, check=True)
        seconds = time.perf_counter() - start
        run = read_run(target)
        out[precision] = {"ndcg@10": evaluate(run, qrels, ["nDCG@10"])["nDCG@10"], "seconds": seconds}
        out[precision]["seconds_per_query"] = seconds / len(run)
    out["bf16_minus_fp32"] = out["bf16"]["ndcg@10"] - out["fp32"]["ndcg@10"]
    return out


def ask(args: argparse.Namespace, ce: str, model_dir: str) -> dict[str, Any]:
    from rankwise.experiment.ask_parts import add_models, open_indexes
    from rankwise.experiment.pipeline import Pipeline
    from rankwise.types import Query

    index = args.work / "scifact-bm25"
    if not index.is_dir():
        subprocess.run([sys.executable, "-m", "rankwise", "index", str(args.data), "--out", str(index)], check=True)
    parts = open_indexes([index], args.data, None, log=print)
    add_models(
        parts, print, reranker="cross-encoder", reranker_model=ce, generator=model_dir, model=None,
        api_key_env=None, template="default", max_new_tokens=96, max_passage_words=None, threads=None, batch_size=1,
    )  # fmt: skip
    pipeline = Pipeline(parts.retriever, parts.docs, generator=parts.generator, reranker=parts.reranker, k=5)
    pipeline.ask(Query("warm", QUESTIONS[0]))
    latencies = []
    for i, question in enumerate(QUESTIONS[: args.questions]):
        start = time.perf_counter()
        result = pipeline.ask(Query(f"q{i}", question))
        latencies.append({"total_s": time.perf_counter() - start, **result.latency})
    return {"questions": len(latencies), "latency": latencies, "max_total_s": max(x["total_s"] for x in latencies)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", type=Path, required=True, help="the SciFact directory (BEIR layout)")
    parser.add_argument("--ce", type=Path, required=True, help="cross-encoder directory (weights or shape)")
    parser.add_argument("--minilm", type=Path, required=True, help="all-MiniLM-L6-v2 directory (weights or shape)")
    parser.add_argument("--llm", type=Path, required=True, help="SmolLM2-135M directory (weights or shape)")
    parser.add_argument("--run", type=Path, help="first-stage run (TREC) for the ce_quality section")
    parser.add_argument("--work", type=Path, default=Path("/tmp/rankwise-gpu"))
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--encode-batch", type=int, default=64, help="rankwise's batch (the index default: 64)")
    parser.add_argument("--llm-pairs", type=int, default=400)
    parser.add_argument("--questions", type=int, default=5)
    parser.add_argument("--docs", type=int, help="only the first N abstracts (a dry run on the CPU)")
    parser.add_argument("--device", default="cuda", help="cuda; cpu for a dry run of the code paths")
    parser.add_argument("--sections", default="encode,rerank,llm,generate,ce_quality,ask")
    parser.add_argument("--out", type=Path)
    args = parser.parse_args()

    import torch

    from rankwise.data import load_dataset

    if args.device.startswith("cuda") and not torch.cuda.is_available():
        raise SystemExit("benchmarks/gpu.py needs a CUDA device (--device cpu: a dry run of the code paths)")
    args.work.mkdir(parents=True, exist_ok=True)
    dataset = load_dataset(args.data)
    texts = [doc.text for doc in dataset.corpus.values()][: args.docs]
    queries = list(dataset.queries.values())
    pairs = [(queries[i % len(queries)].text, text) for i, text in enumerate(texts[:6000])]
    name = torch.cuda.get_device_name(0) if args.device.startswith("cuda") else "cpu"
    figures: dict[str, Any] = {"device": name, "torch": torch.__version__}
    ce = materialise(args.ce, args.work, causal=False)
    sections = {
        "encode": lambda: encode(args, texts, materialise(args.minilm, args.work, causal=False)),
        "rerank": lambda: rerank(args, pairs, ce),
        "llm": lambda: llm(args, pairs, materialise(args.llm, args.work, causal=True)),
        "generate": lambda: generate(args, texts, materialise(args.llm, args.work, causal=True)),
        "ce_quality": lambda: ce_quality(args, ce) if args.run else {"skipped": "no --run"},
        "ask": lambda: ask(args, ce, materialise(args.llm, args.work, causal=True)),
    }
    for name in args.sections.split(","):
        start = time.perf_counter()
        try:
            figures[name] = sections[name]()
        except Exception as error:  # one failing section must not lose the others' figures
            figures[name] = {"error": f"{type(error).__name__}: {error}"}
        figures[name]["section_seconds"] = time.perf_counter() - start
        print(json.dumps({name: figures[name]}), flush=True)
        if args.out:
            args.out.write_text(json.dumps(figures, indent=1))


if __name__ == "__main__":
    main()
