"""Two Ray nodes on one machine, one killed mid-run: the encoding finishes on the survivor and equals a local run.

A head and a worker node (``ray.cluster_utils.Cluster``: separate raylet processes, one CPU each) run two 1-CPU
actors, so each node holds one. Once ``--kill-after`` shards are written, the worker node is removed without
warning (its raylet and actor killed). The shards the lost actor held run again on the head's actor; the result is
compared with the local engine's encoding of the same SciFact abstracts.

    RANKWISE_DATA=../shared/datasets .venv/bin/python benchmarks/ray_two_nodes.py [--docs 300] [--shard-size 20]
"""

from __future__ import annotations

import argparse
import os
import shutil
import threading
import time
from functools import partial
from pathlib import Path

import numpy as np


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", type=Path, default=Path(os.environ.get("RANKWISE_DATA", "../shared/datasets")))
    parser.add_argument("--work-dir", type=Path, default=Path("/tmp/rankwise-bench/two-nodes"))
    parser.add_argument("--docs", type=int, default=300)
    parser.add_argument("--shard-size", type=int, default=20)
    parser.add_argument("--kill-after", type=int, default=3, help="finished shards before the worker node goes")
    args = parser.parse_args()

    import ray
    import torch
    from ray.cluster_utils import Cluster

    from rankwise.config.models import minilm_path
    from rankwise.engine import LocalEngine
    from rankwise.engine.ray_engine import RayEngine
    from rankwise.retrieve.encode import encode_corpus, iter_corpus_jsonl, load_embeddings
    from rankwise.retrieve.encoders import load_sentence_encoder

    torch.set_num_threads(1)
    docs = list(iter_corpus_jsonl(args.data / "scifact" / "corpus.jsonl"))[: args.docs]
    options = {"model_id": "minilm", "shard_size": args.shard_size, "show_progress": False}
    shutil.rmtree(args.work_dir, ignore_errors=True)
    model = minilm_path()
    start = time.perf_counter()
    encode_corpus(load_sentence_encoder(model, "fp32"), docs, args.work_dir / "local", engine=LocalEngine(), **options)
    print(f"local engine: {time.perf_counter() - start:.1f} s", flush=True)

    # the nodes' actors at our priority, not Ray's niceness 15 (Ray reads this exact, case-sensitive name)
    os.environ["RAY_worker_niceness"] = str(os.nice(0))  # noqa: SIM112
    cluster = Cluster(initialize_head=True, head_node_args={"num_cpus": 1, "include_dashboard": False})
    worker = cluster.add_node(num_cpus=1)
    cluster.wait_for_nodes()
    ray.init(address=cluster.address)
    print(f"cluster: {len(ray.nodes())} nodes, {ray.cluster_resources()['CPU']:.0f} CPUs", flush=True)
    target = args.work_dir / "ray"
    killed: list[float] = []

    def kill_worker_node() -> None:
        while len(list(target.glob("shard-*.json"))) < args.kill_after:
            time.sleep(0.2)
        cluster.remove_node(worker, allow_graceful=False)
        killed.append(time.perf_counter())
        print(f"worker node removed after {len(list(target.glob('shard-*.json')))} shards", flush=True)

    threading.Thread(target=kill_worker_node, daemon=True).start()
    start = time.perf_counter()
    engine = RayEngine(actors=2, retries=2)
    result = encode_corpus(partial(load_sentence_encoder, model, "fp32"), docs, target, engine=engine, **options)
    seconds = time.perf_counter() - start
    alive = sum(1 for node in ray.nodes() if node["Alive"])
    ray.shutdown()
    cluster.shutdown()
    ids_local, local = load_embeddings(args.work_dir / "local")
    ids_ray, remote = load_embeddings(target)
    print(
        f"ray, worker node killed mid-run: {seconds:.1f} s, {result.shards} shards, nodes alive at the end: "
        f"{alive}, killed: {bool(killed)}; ids equal: {ids_local == ids_ray}, "
        f"max |delta| vs local: {float(np.abs(local - remote).max()):.2e}",
        flush=True,
    )


if __name__ == "__main__":
    main()
