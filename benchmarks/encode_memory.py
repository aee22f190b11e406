"""Peak memory of sharded encoding is flat in corpus size, and a ``kill -9``-ed run resumes to the same bytes.

A tiny randomly initialised BERT encoder (2 layers, 32-d, the MiniLM tokenizer; built from a config, nothing
downloaded) encodes synthetic passages streamed from a JSONL corpus file. Each measurement runs in a fresh child
process; its peak resident set size is read from ``wait4`` (what ``/usr/bin/time -v`` reports as "Maximum resident
set size").

1. ``rankwise.retrieve.encode.encode_corpus`` at each ``--sizes`` (default 100k and 400k passages): peak RSS and the
   ratio largest/smallest (target: within 15%). With ``--peer``, the same for sentence-transformers' own
   ``encode`` over the whole list (the peer: every text and every row in memory at once). With ``--ray N``, the
   same run on the Ray engine (a local Ray instance, ``N`` actors of one CPU): the driver's peak RSS, and each
   actor's, read from the kernel's high-water mark (``VmHWM`` in ``/proc/PID/status``, polled every 0.2 s while
   the actors live; Ray starts them outside the driver's process tree, so ``wait4`` does not see them).
2. Resume: a run over ``--kill-size`` passages is killed with SIGKILL once ``--kill-after`` shards are finished,
   then run again to completion; its shards are compared byte for byte with an uninterrupted run.

    .venv/bin/python benchmarks/encode_memory.py [--sizes 100000 400000] [--peer] [--work-dir /tmp/rw-encmem]
"""

from __future__ import annotations

import argparse
import functools
import hashlib
import itertools
import json
import os
import random
import shutil
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterable
from pathlib import Path
from typing import Any

WORDS = [
    "cell",
    "protein",
    "gene",
    "tumour",
    "virus",
    "immune",
    "drug",
    "trial",
    "brain",
    "blood",
    "receptor",
    "pathway",
    "mutation",
    "expression",
    "patient",
    "cancer",
    "therapy",
    "signal",
    "membrane",
    "enzyme",
    "dose",
    "response",
    "model",
    "mouse",
    "human",
    "tissue",
    "clinical",
    "risk",
    "factor",
    "study",
]


def write_corpus(path: Path, count: int, seed: int = 0) -> None:
    rng = random.Random(seed)
    with path.open("w", encoding="utf-8") as handle:
        for i in range(count):
            text = " ".join(rng.choice(WORDS) for _ in range(rng.randint(20, 60)))
            handle.write(json.dumps({"_id": f"p{i}", "title": f"passage {i}", "text": text}) + "\n")


def child(args: argparse.Namespace) -> None:
    """Encode the first ``--n`` passages (run in its own process so that its peak RSS is its own)."""
    import numpy as np
    import torch
    from sentence_transformers import SentenceTransformer

    from rankwise.retrieve.encode import encode_corpus, iter_corpus_jsonl

    torch.set_num_threads(1)
    items = itertools.islice(iter_corpus_jsonl(args.corpus), args.n)
    if args.mode == "ray":
        ray_child(args, items)
        return
    model = SentenceTransformer(str(args.model), device="cpu")
    if args.mode == "peer":
        texts = [text for _, text in items]
        rows = model.encode(texts, batch_size=64, normalize_embeddings=True, show_progress_bar=False)
        np.save(args.out / "peer.npy", rows)
        return
    encode_corpus(
        model, items, args.out, model_id="tiny-random", shard_size=args.shard_size, total=args.n, show_progress=False
    )


def load_encoder(path: str) -> Any:
    """The actors' model loader (a module-level function: Ray ships it by name, not the weights)."""
    import torch
    from sentence_transformers import SentenceTransformer

    torch.set_num_threads(1)
    return SentenceTransformer(path, device="cpu")


def actor_peaks(peaks: dict[int, float], stop: threading.Event) -> None:
    """Poll the Ray actors' kernel high-water marks (MiB) into ``peaks`` until ``stop``."""
    while not stop.is_set():
        for proc in Path("/proc").iterdir():
            if not proc.name.isdigit():
                continue
            try:
                if b"_ShardActor" not in (proc / "cmdline").read_bytes():
                    continue
                status = (proc / "status").read_text()
            except OSError:  # gone between the listing and the read
                continue
            for line in status.splitlines():
                if line.startswith("VmHWM:"):
                    peaks[int(proc.name)] = max(peaks.get(int(proc.name), 0.0), int(line.split()[1]) / 1024)
        stop.wait(0.2)


def ray_child(args: argparse.Namespace, items: Iterable[tuple[str, str]]) -> None:
    from rankwise.engine.ray_engine import RayEngine
    from rankwise.retrieve.encode import encode_corpus

    peaks: dict[int, float] = {}
    stop = threading.Event()
    watcher = threading.Thread(target=actor_peaks, args=(peaks, stop), daemon=True)
    watcher.start()
    with RayEngine(actors=args.ray) as engine:
        loader = functools.partial(load_encoder, str(args.model))
        encode_corpus(
            loader,
            items,
            args.out,
            model_id="tiny-random",
            shard_size=args.shard_size,
            total=args.n,
            engine=engine,
            show_progress=False,
        )
        stop.set()
        watcher.join()
    (args.out / "actor-peaks.json").write_text(json.dumps(sorted(peaks.values())))


def run_child(
    script: Path, common: list[str], n: int, out: Path, mode: str = "rankwise", actors: int = 0
) -> tuple[float, float]:
    """Run one child to completion; returns (peak RSS in MiB, seconds)."""
    out.mkdir(parents=True, exist_ok=True)
    command = [sys.executable, str(script), "--child", "--n", str(n), "--out", str(out), "--mode", mode, *common]
    if mode == "ray":
        command += ["--ray", str(actors)]
    start = time.perf_counter()
    process = subprocess.Popen(command)
    _, status, usage = os.wait4(process.pid, 0)
    if os.waitstatus_to_exitcode(status) != 0:
        raise SystemExit(f"child failed: {' '.join(command)}")
    return usage.ru_maxrss / 1024, time.perf_counter() - start


def digest(directory: Path) -> str:
    total = hashlib.sha256()
    for path in sorted(directory.glob("shard-*.npy")):
        total.update(path.read_bytes())
    return total.hexdigest()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sizes", type=int, nargs="+", default=[100_000, 400_000])
    parser.add_argument("--shard-size", type=int, default=10_000)
    parser.add_argument("--kill-size", type=int, default=50_000)
    parser.add_argument("--kill-after", type=int, default=2, help="shards finished before the SIGKILL")
    parser.add_argument("--peer", action="store_true", help="also measure sentence-transformers' encode")
    parser.add_argument("--ray", type=int, default=0, metavar="N", help="also measure the Ray engine, N actors")
    parser.add_argument("--work-dir", type=Path, default=Path("/tmp/rankwise-bench/encode-memory"))
    parser.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--n", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--out", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--mode", default="rankwise", help=argparse.SUPPRESS)
    parser.add_argument("--model", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--corpus", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        child(args)
        return

    from rankwise.config.models import minilm_path
    from rankwise.retrieve.encode import build_random_encoder

    work = args.work_dir
    shutil.rmtree(work, ignore_errors=True)
    work.mkdir(parents=True)
    model = build_random_encoder(work / "encoder", minilm_path(), hidden_size=32, layers=2)
    corpus = work / "corpus.jsonl"
    write_corpus(corpus, max([*args.sizes, args.kill_size]))
    common = ["--model", str(model), "--corpus", str(corpus), "--shard-size", str(args.shard_size)]
    script = Path(__file__).resolve()

    print(f"tiny random encoder (2 layers, 32-d), shards of {args.shard_size:,}, 1 torch thread")
    peaks = {}
    low, high = min(args.sizes), max(args.sizes)
    for mode in ["rankwise", *(["peer"] if args.peer else []), *(["ray"] if args.ray else [])]:
        for n in sorted(args.sizes):
            out = work / f"{mode}-{n}"
            rss, seconds = run_child(script, common, n, out, mode, args.ray)
            peaks[(mode, n)] = rss
            line = f"{mode:<9} {n:>9,} passages: peak RSS {rss:8.1f} MiB, {seconds:6.1f} s ({n / seconds:,.0f}/s)"
            if mode == "ray":
                actors = json.loads((out / "actor-peaks.json").read_text())
                peaks[("actor", n)] = max(actors, default=0.0)
                line += f" (the driver); actors: {', '.join(f'{a:.1f}' for a in actors)} MiB"
            print(line)
        ratio = peaks[(mode, high)] / peaks[(mode, low)]
        print(f"{mode:<9} peak RSS {high:,} / {low:,} = {ratio:.3f} (target for rankwise: <= 1.15)")
        if mode == "ray":
            ratio = peaks[("actor", high)] / peaks[("actor", low)]
            print(f"{'actor':<9} largest peak RSS {high:,} / {low:,} = {ratio:.3f} (target: <= 1.15)")

    killed, clean = work / "killed", work / "clean"
    killed.mkdir()
    command = [sys.executable, str(script), "--child", "--n", str(args.kill_size), "--out", str(killed), *common]
    process = subprocess.Popen(command)
    while len(list(killed.glob("shard-*.json"))) < args.kill_after and process.poll() is None:
        time.sleep(0.05)
    process.send_signal(signal.SIGKILL)
    process.wait()
    finished = len(list(killed.glob("shard-*.json")))
    print(f"killed with SIGKILL after {finished} finished shards (exit {process.returncode}); resuming")
    run_child(script, common, args.kill_size, killed)
    run_child(script, common, args.kill_size, clean)
    same = digest(killed) == digest(clean)
    info = json.loads((killed / "complete.json").read_text())
    print(
        f"resumed run: {info['shards']} shards, {info['rows']:,} rows; byte-identical to an uninterrupted run: {same}"
    )


if __name__ == "__main__":
    main()
