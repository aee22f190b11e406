"""Issue 20: a failing re-run keeps the last good results, two data sets of one folder name are refused,
reranker ties keep the first-stage order, and the shipped DDP command (no ``device`` key) really runs DDP."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

# ------------------------------------------------------------------------------------------------ 4. DDP


@pytest.fixture(scope="module")
def tiny_encoder(minilm_path: str, tmp_path_factory: pytest.TempPathFactory) -> str:
    from rankwise.retrieve.encode import build_random_encoder

    return str(build_random_encoder(tmp_path_factory.mktemp("tiny") / "encoder", minilm_path, hidden_size=32))


def test_ddp_without_a_device_key_and_with_a_dev_set_runs_one_distributed_training(
    tiny_encoder: str, tmp_path: Path
) -> None:
    # As the shipped configs/train/retriever-scifact.yaml: no `device` key, a held-out dev set. On a machine
    # without CUDA this trained two separate copies (parallel_mode != DISTRIBUTED) and rank 1 crashed on
    # KeyError 'eval_dev_ndcg@10'.
    triples = tmp_path / "triples.tsv"
    topics = ["cells", "genes", "viruses", "drugs", "brains", "blood", "tumours", "trials"]
    triples.write_text(
        "".join(
            f"about {t} {i}\t{t} text number {i}\t{topics[(k + 3) % 8]} other {i}\n"
            for k, t in enumerate(topics)
            for i in range(4)
        )
    )
    out = tmp_path / "out"
    settings = {"output_dir": str(out), "triples": str(triples), "model": tiny_encoder, "dev_queries": 4}
    settings |= {"num_negatives": 1, "batch_size": 4, "max_steps": 2, "eval_steps": 2, "lr_head": 0.01}
    settings |= {"max_seq_length": 64, "threads": 1, "diagnostics_sample": 16, "logging_steps": 1}
    assert "device" not in settings
    config = tmp_path / "c.yaml"
    config.write_text(yaml.safe_dump(settings))
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    command = [sys.executable, "-m", "torch.distributed.run", "--nproc-per-node", "2", "--master-addr", "127.0.0.1"]
    command += ["--master-port", str(port), "-m", "rankwise.train.retriever", "--config", str(config)]
    env = {**os.environ, "OMP_NUM_THREADS": "1", "CUDA_VISIBLE_DEVICES": ""}  # CPU processes, as on this machine
    done = subprocess.run(command, capture_output=True, text=True, timeout=300, env=env)
    assert done.returncode == 0, done.stderr[-6000:]
    assert "parallel_mode != ParallelMode.DISTRIBUTED" not in done.stderr
    summary = json.loads((out / "summary.json").read_text())
    assert summary["world_size"] == 2 and summary["global_batch_size"] == 8 and summary["steps"] == 2
    assert summary["replicas_identical"] is True
    assert summary["dev_queries"] == 4 and summary["best_checkpoint"] is not None
    logged = [json.loads(line) for line in (out / "log.jsonl").read_text().splitlines()]
    assert [row["step"] for row in logged if "eval_dev_ndcg@10" in row] == [2]
