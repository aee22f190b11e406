"""Batch answering on the Ray engine against the local one (issue 23): same answers, and the throughput ratio.

Runs the HotpotQA experiment (distractor setting, BM25 over each question's paragraphs, the bundled SmolLM2
answering greedily from the top ``--k``) on the first ``--questions`` questions twice per round, alternating:
``generate.engine: local`` (this process, torch on ``--threads`` threads) and ``engine: {kind: ray}`` (a local Ray
instance, ``--actors`` actors with ``cpus_per_actor`` = threads / actors each), for ``--rounds`` rounds. Each run
starts clean (no reused chunks), so both pay their model loads. Prints whether every answer is identical, the
questions/s of each and the ratio ray/local per round and overall, the CPU flags, and a final JSON line.

    RANKWISE_DATA=../shared/datasets .venv/bin/python benchmarks/ray_answers.py --questions 16 --rounds 2
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import tempfile
import time
from pathlib import Path
from typing import Any


def run_once(kind: str, args: argparse.Namespace, root: Path) -> tuple[float, dict[str, str]]:
    from rankwise.config.sections import BM25Config, EngineConfig, LocalGenerateConfig
    from rankwise.experiment.rag import hotpotqa_experiment, run_rag

    threads = args.threads
    if kind == "ray":
        per_actor = threads / args.actors
        engine = EngineConfig(kind="ray", actors=args.actors, cpus_per_actor=per_actor)
        generator_threads = max(1, int(per_actor))
    else:
        engine, generator_threads = EngineConfig(), threads
    generate = LocalGenerateConfig(
        model="smollm2", top_k=args.k, max_new_tokens=args.max_new_tokens, batch_size=args.batch_size,
        dtype=args.dtype, threads=generator_threads, checkpoint_every=args.chunk, engine=engine,
    )  # fmt: skip
    stages = {"retrieve": {"bm25": BM25Config()}, "generate": generate}
    data = Path(os.environ["RANKWISE_DATA"]) / "hotpotqa-train100" / "hotpotqa_train.json"
    config, sources = hotpotqa_experiment(data, f"answers-{kind}", stages, limit=args.questions)
    out = root / kind
    shutil.rmtree(out, ignore_errors=True)
    started = time.perf_counter()
    _, [folder] = run_rag("hotpotqa", config, sources, out, log=lambda _: None, show_progress=False)
    seconds = time.perf_counter() - started
    answers = {}
    for line in (folder / "answers.jsonl").read_text(encoding="utf-8").splitlines():
        row = json.loads(line)
        answers[row["id"]] = row["text"]
    return seconds, answers


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--questions", type=int, default=16)
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--threads", type=int, default=len(os.sched_getaffinity(0)))
    parser.add_argument("--actors", type=int, default=None, help="default: one per thread")
    parser.add_argument("--k", type=int, default=5)
    parser.add_argument("--max-new-tokens", type=int, default=32)
    parser.add_argument("--batch-size", type=int, default=4)
    parser.add_argument("--chunk", type=int, default=4, help="questions per shard (checkpoint_every)")
    parser.add_argument("--dtype", default="float32")
    args = parser.parse_args()
    args.actors = args.actors or args.threads

    from rankwise.config.precision import cpu_flags

    rounds: list[dict[str, Any]] = []
    same = True
    with tempfile.TemporaryDirectory(prefix="ray-answers-") as tmp:
        for index in range(args.rounds):
            order = ("local", "ray") if index % 2 == 0 else ("ray", "local")
            timings, answers = {}, {}
            for kind in order:
                timings[kind], answers[kind] = run_once(kind, args, Path(tmp))
            identical = answers["local"] == answers["ray"]
            same = same and identical
            row = {
                "local_q_per_s": args.questions / timings["local"],
                "ray_q_per_s": args.questions / timings["ray"],
                "ratio": timings["local"] / timings["ray"],
                "identical_answers": identical,
            }
            rounds.append(row)
            print(f"round {index + 1}: local {row['local_q_per_s']:.3f} q/s, ray {row['ray_q_per_s']:.3f} q/s, "
                  f"ray/local {row['ratio']:.2f}, answers identical: {identical}", flush=True)  # fmt: skip
    total_local = sum(args.questions / r["local_q_per_s"] for r in rounds)
    total_ray = sum(args.questions / r["ray_q_per_s"] for r in rounds)
    result = {
        "questions": args.questions,
        "threads": args.threads,
        "actors": args.actors,
        "rounds": rounds,
        "ratio": total_local / total_ray,
        "identical_answers": same,
        "cpu_flags": list(cpu_flags()),
    }
    print(f"overall ray/local {result['ratio']:.2f} ({args.actors} actors vs {args.threads} threads)")
    print(json.dumps(result))


if __name__ == "__main__":
    main()
