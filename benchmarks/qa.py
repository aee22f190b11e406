"""Reproduce the generation / multi-turn numbers of issue 4 with the ``rankwise rag`` CLI, and tabulate them.

    python benchmarks/qa.py hotpot-retrieval  --out outputs/qa      # BM25 / dense / hybrid, both gold in top 2/5
    python benchmarks/qa.py hotpot-full       --out outputs/qa      # SmolLM2 on all 100 questions (~10 min CPU)
    python benchmarks/qa.py mtrag-retrieval   --out outputs/qa      # pooled nDCG@10 / R@5, rewrites x retrievers
    python benchmarks/qa.py mtrag-generation  --out outputs/qa      # abstention: UNANSWERABLE vs ANSWERABLE
    python benchmarks/qa.py table             --out outputs/qa      # print every table from the metrics.json files

Each step runs ``rankwise rag`` (through ``rankwise.cli.main``) into ``<out>/<name>`` and prints the exact
command. Runs resume, and a finished run (metrics.json present) is not repeated. Data come from
``$RANKWISE_DATA`` (default ``../shared/datasets``). MT-RAG numbers are POOLED evaluation (see
``rankwise.data.mtrag``). The LLM rewrites are cached in ``<out>/mtrag-llm-rewrites.jsonl`` and shared by the
BM25 and dense runs.
"""

from __future__ import annotations

import argparse
import json
import os
import shlex
import sys
from pathlib import Path

HOTPOT_RETRIEVERS = ("bm25", "dense", "hybrid")
MT_RETRIEVERS = ("bm25", "dense")
MT_REWRITES = ("last_turn", "full_history", "llm")
HUMAN_REWRITES = ("last_turn", "full_history", "human", "llm")
SMOLLM2 = ["--generator", "smollm2", "--threads", "1", "--batch-size", "4"]


def data_root() -> Path:
    return Path(os.environ.get("RANKWISE_DATA", Path(__file__).resolve().parents[2] / "shared" / "datasets"))


def rag(out: Path, name: str, args: list[str]) -> None:
    from rankwise.cli import main

    target = out / name
    if (target / "metrics.json").exists():
        print(f"# {name}: done already ({target / 'metrics.json'})")
        return
    argv = ["rag", *args, "--out", str(target)]
    print("rankwise " + " ".join(shlex.quote(a) for a in argv), flush=True)
    code = main(argv)
    if code != 0:
        raise SystemExit(code)


def hotpot_retrieval(out: Path) -> None:
    path = str(data_root() / "hotpotqa-train100" / "hotpotqa_train.json")
    for retriever in HOTPOT_RETRIEVERS:
        args = ["--dataset", "hotpotqa", path, "--retriever", retriever, "--generator", "none"]
        rag(out, f"hotpot-{retriever}", args)


def hotpot_full(out: Path) -> None:
    path = str(data_root() / "hotpotqa-train100" / "hotpotqa_train.json")
    rag(
        out,
        "hotpot-full-dense-smollm2",
        [
            "--dataset",
            "hotpotqa",
            path,
            "--retriever",
            "dense",
            *SMOLLM2,
            "--template",
            "short",
            "--k",
            "5",
            "--max-passage-words",
            "80",
            "--max-new-tokens",
            "32",
        ],
    )


def mtrag_retrieval(out: Path) -> None:
    path = str(data_root() / "mtrag")
    cache = str(out / "mtrag-llm-rewrites.jsonl")
    for retriever in MT_RETRIEVERS:
        for rewrite in MT_REWRITES:
            extra = [*SMOLLM2[2:], "--rewrite-cache", cache] if rewrite == "llm" else []
            rag(
                out,
                f"mtrag-{retriever}-{rewrite}",
                [
                    "--dataset",
                    "mtrag",
                    path,
                    "--retriever",
                    retriever,
                    "--generator",
                    "none",
                    "--rewrite",
                    rewrite,
                    *extra,
                ],
            )
        for rewrite in HUMAN_REWRITES:
            extra = [*SMOLLM2[2:], "--rewrite-cache", cache] if rewrite == "llm" else []
            rag(
                out,
                f"mtrag-human-{retriever}-{rewrite}",
                [
                    "--dataset",
                    "mtrag",
                    path,
                    "--subset",
                    "human",
                    "--retriever",
                    retriever,
                    "--generator",
                    "none",
                    "--rewrite",
                    rewrite,
                    *extra,
                ],
            )


def mtrag_generation(out: Path) -> None:
    path = str(data_root() / "mtrag")
    rag(
        out,
        "mtrag-generation-smollm2",
        [
            "--dataset",
            "mtrag",
            path,
            "--retriever",
            "bm25",
            "--rewrite",
            "full_history",
            *SMOLLM2,
            "--answerability",
            "ANSWERABLE,UNANSWERABLE",
            "--k",
            "5",
            "--max-passage-words",
            "80",
            "--max-new-tokens",
            "64",
        ],
    )


def table(out: Path) -> None:
    for metrics_file in sorted(out.glob("*/metrics.json")):
        metrics = json.loads(metrics_file.read_text())
        name = metrics_file.parent.name
        if metrics["dataset"] == "hotpotqa":
            r = metrics["retrieval"]
            line = f"both gold top-2 {r['both_gold@2']:.2f}  top-5 {r['both_gold@5']:.2f}"
            qa = metrics.get("qa")
            if qa:
                line += (
                    f"  EM {qa['em']:.3f}  F1 {qa['f1']:.3f}  SP-F1(par) {qa['sp_paragraph_f1']:.3f}  "
                    f"cit.prec {qa['citation_precision'] or 0:.3f} (n={qa.get('citation_precision_n', 100)})  "
                    f"abstain {qa['abstention_rate']:.2f}  "
                    f"{metrics['latency_per_question_s'].get('total_s', 0):.1f} s/q"
                )
            print(f"{name:40} {line}")
        else:
            cells = "  ".join(f"{d} {v['nDCG@10']:.3f}/{v['R@5']:.3f}" for d, v in metrics["retrieval"].items())
            print(f"{name:40} nDCG@10/R@5  {cells}")
            gen = metrics.get("generation")
            if gen:
                print(
                    f"{'':40} abstention ANSWERABLE {gen['abstention_rate_ANSWERABLE']:.3f}  "
                    f"UNANSWERABLE {gen['abstention_rate_UNANSWERABLE']:.3f}  (pooled)"
                )


STEPS = {
    "hotpot-retrieval": hotpot_retrieval,
    "hotpot-full": hotpot_full,
    "mtrag-retrieval": mtrag_retrieval,
    "mtrag-generation": mtrag_generation,
    "table": table,
}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("step", choices=[*STEPS, "all"])
    parser.add_argument("--out", type=Path, default=Path("outputs/qa"))
    args = parser.parse_args(argv)
    for name, step in STEPS.items():
        if args.step in (name, "all") and not (args.step == "all" and name == "table"):
            step(args.out)
    if args.step == "all":
        table(args.out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
