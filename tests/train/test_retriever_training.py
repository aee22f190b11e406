"""Dense-encoder training on a tiny random BERT: the head learns while a frozen base stays put, resume, a held-out
metric that moves, the cached loss computing the same gradients, pair builders, config errors, and DDP with two
CPU processes on gloo (torchrun)."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import yaml

from rankwise.config.train_retriever import load_config
from rankwise.errors import DataError
from rankwise.retrieve.encode import build_random_encoder
from rankwise.train.pairs import pseudo_query_pairs, read_passages, read_triples, split_sentences
from rankwise.types import Document


@pytest.fixture(scope="module")
def tiny(minilm_path: str, tmp_path_factory: pytest.TempPathFactory) -> str:
    import torch

    torch.set_num_threads(1)
    return str(build_random_encoder(tmp_path_factory.mktemp("tiny") / "encoder", minilm_path, hidden_size=32))


@pytest.fixture(scope="module")
def passages(scifact_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """300 SciFact abstracts as raw passages (JSONL) for inverse-cloze pseudo queries."""
    path = tmp_path_factory.mktemp("passages") / "passages.jsonl"
    with (scifact_dir / "corpus.jsonl").open() as source, path.open("w") as out:
        for _, line in zip(range(300), source, strict=False):
            record = json.loads(line)
            out.write(json.dumps({"_id": record["_id"], "title": record["title"], "text": record["text"]}) + "\n")
    return path


def write_config(path: Path, **settings: object) -> Path:
    base = {"max_seq_length": 64, "threads": 1, "device": "cpu", "diagnostics_sample": 64, "logging_steps": 1}
    path.write_text(yaml.safe_dump({**base, **settings}))
    return path


def test_isotropy_stats_match_hand_computed_values() -> None:
    from rankwise.train.retriever_losses import isotropy_stats

    e1, e2 = [1.0, 0.0], [0.0, 1.0]
    # pairs: (e1,-e1) = (e2,-e2) = -1, four orthogonal pairs = 0 -> mean -2/6; covariance 2/3 * I -> rank 2
    spread = isotropy_stats(np.array([e1, [-1.0, 0.0], e2, [0.0, -1.0]]))
    assert spread["mean_pairwise_cosine"] == pytest.approx(-1 / 3)
    assert spread["effective_rank"] == pytest.approx(2.0)
    # three equal vectors and one orthogonal: cosines 1,1,1,0,0,0 -> 0.5; centred rows all on one line -> rank 1
    cone = isotropy_stats(np.array([e1, e1, e1, e2]) * 3.0)  # scale does not matter: rows are normalised
    assert cone["mean_pairwise_cosine"] == pytest.approx(0.5)
    assert cone["effective_rank"] == pytest.approx(1.0)


def test_frozen_base_trains_the_head_only_and_resumes(tiny: str, passages: Path, tmp_path: Path) -> None:
    import torch
    from sentence_transformers import SentenceTransformer

    from rankwise.retrieve.dense import DenseRetriever
    from rankwise.train.retriever import train_retriever

    settings = {"output_dir": str(tmp_path / "out"), "passages": str(passages), "model": tiny, "freeze_base": True}
    settings |= {"head_dim": 16, "head_init": "orthogonal", "num_negatives": 1, "negative_window": [2, 30]}
    settings |= {"dev_queries": 20, "batch_size": 8, "max_steps": 2, "eval_steps": 2, "lr_head": 0.01}
    config = load_config(write_config(tmp_path / "c.yaml", **settings))
    summary = train_retriever(config, show_progress=False)
    assert summary["steps"] == 2 and summary["world_size"] == 1 and summary["resumed_from"] is None
    assert summary["cached_frozen_base"] is True  # the base embedded each text once, the head trained on that
    assert summary["head_sha256"]["initial"] != summary["head_sha256"]["final"]
    assert summary["train_pairs"] > 200 and summary["dev_queries"] == 20
    trained = SentenceTransformer(summary["model_dir"], device="cpu")
    base = SentenceTransformer(tiny, device="cpu")
    for name, tensor in base[0].state_dict().items():  # the transformer body is bit-identical
        assert torch.equal(tensor, trained[0].state_dict()[name]), name
    assert trained.get_embedding_dimension() == 16
    assert trained.max_seq_length == base.max_seq_length == 128  # trained at 64 tokens, saved with the base's limit
    dense = DenseRetriever(model=summary["model_dir"], show_progress=False)
    np.testing.assert_allclose(np.linalg.norm(dense.encode(["a claim"]), axis=1), 1.0, atol=1e-5)
    logged = [json.loads(line) for line in (tmp_path / "out" / "log.jsonl").read_text().splitlines()]
    assert any("eval_dev_ndcg@10" in entry for entry in logged) and any("loss" in entry for entry in logged)

    again = train_retriever(load_config(tmp_path / "c.yaml", {"max_steps": 3}), show_progress=False)
    assert again["resumed_from"].endswith("checkpoint-2") and again["steps"] == 3
    with pytest.raises(Exception, match="different settings \\(lr_head\\)"):
        train_retriever(load_config(tmp_path / "c.yaml", {"lr_head": 0.5}), show_progress=False)


def test_full_fine_tuning_moves_the_held_out_metric(tiny: str, passages: Path, tmp_path: Path) -> None:
    from rankwise.train.retriever import train_retriever

    settings = {"output_dir": str(tmp_path / "out"), "passages": str(passages), "model": tiny, "num_negatives": 0}
    settings |= {"dev_queries": 40, "dev_corpus_size": 0, "batch_size": 16, "max_steps": 40, "eval_steps": 40}
    settings |= {"lr_base": 1e-3, "lr_head": 1e-3, "isotropy_weight": 0.1}
    summary = train_retriever(load_config(write_config(tmp_path / "c.yaml", **settings)), show_progress=False)
    before, after = summary["before"], summary["after"]
    assert after["dev_ndcg@10"] > before["dev_ndcg@10"] + 0.03  # 0.22 -> 0.28 here
    # the random encoder starts as a narrow cone; contrastive training + the regulariser spreads it
    assert after["isotropy"]["mean_pairwise_cosine"] < before["isotropy"]["mean_pairwise_cosine"] - 0.2


def test_cached_loss_gives_the_same_loss_and_gradients(tiny: str, tmp_path: Path) -> None:
    import torch

    from rankwise.train.retriever import build_model
    from rankwise.train.retriever_losses import build_loss

    config = load_config(write_config(tmp_path / "c.yaml", output_dir=str(tmp_path), data="x", model=tiny))
    model, _, _ = build_model(config)
    model.eval()  # no dropout: both passes see the same network
    columns = [[f"query {i} about cells" for i in range(6)], [f"passage {i} on cells and genes" for i in range(6)]]
    features = [model.preprocess(texts) for texts in columns]
    grads = []
    for name in ("mnrl", "cached_mnrl"):
        loss_fn = build_loss(model, config.model_copy(update={"loss": name, "isotropy_weight": 0.5}))
        if name == "cached_mnrl":
            loss_fn.mini_batch_size = 2
        model.zero_grad()
        value = loss_fn([dict(f) for f in features], torch.zeros(6))
        total = torch.stack(list(value.values())).sum() if isinstance(value, dict) else value
        total.backward()
        grads.append((total.item(), model[2].linear.weight.grad.clone()))
    assert grads[0][0] == pytest.approx(grads[1][0], rel=1e-5)
    torch.testing.assert_close(grads[0][1], grads[1][1], rtol=1e-4, atol=1e-6)
    assert grads[0][1].abs().sum() > 0


def test_triples_and_pseudo_queries(tmp_path: Path) -> None:
    tsv = tmp_path / "triples.tsv"
    tsv.write_text("what is p53\tp53 is a tumour suppressor\tbananas are yellow\nq2\tpos2\tneg2\n")
    pairs = read_triples(tsv)
    assert next((p.query, p.positive, p.negatives) for p in pairs.pairs) == (
        "what is p53",
        "p53 is a tumour suppressor",
        ("bananas are yellow",),
    )
    assert len(pairs.corpus) == 4 and pairs.qrels()[pairs.pairs[1].query_id] == {pairs.pairs[1].positive_id: 1}
    jsonl = tmp_path / "triples.jsonl"
    jsonl.write_text('{"query": "q", "pos": ["a", "b"], "neg": "c"}\n{"query": "q"}\n')
    with pytest.raises(DataError, match=r"triples.jsonl, line 2: needs one 'query' string and at least one"):
        read_triples(jsonl)
    assert len(read_triples(jsonl, limit=2).pairs) == 2  # one line, two positives
    bad = tmp_path / "bad.tsv"
    bad.write_text("only one column\n")
    with pytest.raises(DataError, match=r"bad.tsv, line 1: expected query<TAB>positive"):
        read_triples(bad)

    text = "Cells divide often. The p53 gene stops damaged cells from dividing. Tumours lack it."
    assert split_sentences(text) == [
        "Cells divide often.",
        "The p53 gene stops damaged cells from dividing.",
        "Tumours lack it.",
    ]
    doc = Document("d1", "Cell cycle", text)
    first = pseudo_query_pairs([doc], seed=1, keep_sentence=0.0).pairs[0]
    assert first.query in split_sentences(text) and len(first.query.split()) >= 4
    assert first.query not in first.positive and first.positive.startswith("Cell cycle ")
    assert pseudo_query_pairs([doc], seed=1, keep_sentence=0.0).pairs == [first]  # seeded
    titled = pseudo_query_pairs([doc, Document("d2", "", "No title here.")], mode="title")
    assert [(p.query, p.positive) for p in titled.pairs] == [("Cell cycle", text)] and titled.warnings
    plain = tmp_path / "wiki.txt"
    plain.write_text("First passage. It has two sentences.\n\n  \nSecond   passage\nwraps lines.\n")
    assert [d.text for d in read_passages(plain)] == [
        "First passage. It has two sentences.",
        "Second passage wraps lines.",
    ]


def test_shipped_config_validates() -> None:
    path = Path(__file__).resolve().parents[2] / "configs" / "train" / "retriever-scifact.yaml"
    config = load_config(path)
    assert config.data == "$RANKWISE_DATA/scifact" and config.model == "minilm" and not config.freeze_base


def test_config_errors_name_the_key_and_file(tmp_path: Path) -> None:
    path = tmp_path / "c.yaml"
    path.write_text("output_dir: out\ndata: x\nlearning_rate: 0.1\n")
    with pytest.raises(DataError, match=r"c.yaml, line 3: 'learning_rate': unknown key \(known keys: output_dir"):
        load_config(path)
    path.write_text("output_dir: out\ndata: x\ntriples: y\n")
    with pytest.raises(DataError, match="give exactly one of data, triples, passages"):
        load_config(path)
    path.write_text("output_dir: out\ndata: $RANKWISE_TEST_ROOT/scifact\n")
    os.environ["RANKWISE_TEST_ROOT"] = "/data"
    try:
        assert load_config(path).path("data") == Path("/data/scifact")
    finally:
        del os.environ["RANKWISE_TEST_ROOT"]


def test_cli_command_registers_on_a_train_group(tmp_path: Path) -> None:
    import typer
    from typer.testing import CliRunner

    from rankwise.cli.train_retriever import register

    group = typer.Typer()
    register(group)
    group.command("other")(lambda: None)
    bad = tmp_path / "c.yaml"
    bad.write_text("output_dir: out\ndata: x\nbatch: 3\n")
    result = CliRunner().invoke(group, ["retriever", "--config", str(bad), "--set", "epochs=2"])
    assert isinstance(result.exception, DataError) and "'batch': unknown key" in str(result.exception)


def test_ddp_with_two_cpu_processes_on_gloo(tiny: str, tmp_path: Path) -> None:
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
    settings = {"output_dir": str(out), "triples": str(triples), "model": tiny, "dev_queries": 0, "num_negatives": 1}
    settings |= {"batch_size": 4, "max_steps": 2, "eval_steps": 2, "lr_head": 0.01, "lr_base": 1e-3}
    config = write_config(tmp_path / "c.yaml", **settings)
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    command = [sys.executable, "-m", "torch.distributed.run", "--nproc-per-node", "2", "--master-addr", "127.0.0.1"]
    command += ["--master-port", str(port), "-m", "rankwise.train.retriever", "--config", str(config)]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    done = subprocess.run(command, capture_output=True, text=True, timeout=400, env=env)
    assert done.returncode == 0, done.stderr[-3000:]
    summary = json.loads((out / "summary.json").read_text())
    assert summary["world_size"] == 2 and summary["global_batch_size"] == 8 and summary["steps"] == 2
    assert summary["replicas_identical"] is True
    assert summary["head_sha256"]["initial"] != summary["head_sha256"]["final"]
    assert (out / "model" / "model.safetensors").is_file()


def _tracked_run(tiny: str, passages: Path, tmp_path: Path, tracking: dict, **extra: object) -> dict:
    from rankwise.train.retriever import train_retriever

    settings = {"output_dir": str(tmp_path / "out"), "passages": str(passages), "model": tiny, "freeze_base": True}
    settings |= {"num_negatives": 0, "dev_queries": 20, "batch_size": 8, "max_steps": 4, "eval_steps": 2}
    settings |= {"lr_head": 0.01, "tracking": tracking, **extra}
    return train_retriever(load_config(write_config(tmp_path / "c.yaml", **settings)), show_progress=False)


def _wandb_records(path: Path) -> list:
    """The records of an offline run's ``.wandb`` file (wandb >= 0.19 ships no Python reader): a 7-byte header,
    then LevelDB-log framing (32 KiB blocks; per chunk a crc32c, a length and a FULL/FIRST/MIDDLE/LAST type) around
    protobuf ``Record`` messages."""
    import struct

    from wandb.proto import wandb_internal_pb2

    data, block, pos, chunks, out = path.read_bytes(), 32768, 7, b"", []
    assert data[:4] == b":W&B"
    while pos + 7 <= len(data):
        left = block - pos % block
        _, length, kind = struct.unpack("<IHB", data[pos : pos + 7])
        if left < 7 or (kind == 0 and length == 0):  # block trailer or zero padding
            pos += left
            continue
        chunks += data[pos + 7 : pos + 7 + length]
        pos += 7 + length
        if kind in (1, 4):  # FULL or LAST: a whole record
            record = wandb_internal_pb2.Record()
            record.ParseFromString(chunks)
            out.append(record)
            chunks = b""
    return out


def test_wandb_offline_run_holds_the_model_marked_best_and_latest(
    tiny: str, passages: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import wandb

    monkeypatch.setenv("WANDB_SILENT", "true")
    summary = _tracked_run(tiny, passages, tmp_path, {"backend": "wandb", "uri": str(tmp_path / "wb"), "project": "t"})
    [run_dir] = (tmp_path / "wb" / "wandb").glob("offline-run-*")
    [log] = run_dir.glob("run-*.wandb")
    wandb.teardown()  # the wandb-core service writes the run file after finish(); it is complete once it stops
    records = _wandb_records(log)
    kinds = [record.WhichOneof("record_type") for record in records]
    assert kinds[-1] == "exit" and records[-1].exit.exit_code == 0
    artifacts = [record.artifact for record in records if record.WhichOneof("record_type") == "artifact"]
    assert [(a.name, a.type, sorted(a.aliases)) for a in artifacts] == [
        ("retriever-model", "model", ["best", "latest"])
    ]
    assert any(entry.path == "model.safetensors" for entry in artifacts[0].manifest.contents)
    history = [record.history for record in records if record.WhichOneof("record_type") == "history"]
    losses = {h.step.num: json.loads(i.value_json) for h in history for i in h.item if "loss" in (i.key, *i.nested_key)}
    logged = [json.loads(line) for line in (tmp_path / "out" / "log.jsonl").read_text().splitlines()]
    assert losses == {row["step"]: row["loss"] for row in logged if "loss" in row}
    assert {1, 2, 3} <= set(losses) and summary["steps"] == 4  # one history row per logging step (logging_steps: 1)
    [run] = [record.run for record in records if record.WhichOneof("record_type") == "run"]
    config = {item.key: json.loads(item.value_json) for item in run.config.update}
    assert config["kind"] == "retriever" and config["lr_head"] == 0.01 and run.project == "t"


def test_mlflow_marks_a_best_checkpoint_apart_from_the_latest_model(tiny: str, passages: Path, tmp_path: Path) -> None:
    from mlflow.tracking import MlflowClient

    uri = (tmp_path / "mlruns").as_uri()
    summary = _tracked_run(tiny, passages, tmp_path, {"backend": "mlflow", "uri": uri}, load_best=False)
    client = MlflowClient(tracking_uri=uri)
    [run] = client.search_runs([client.get_experiment_by_name("rankwise").experiment_id])
    tags = run.data.tags
    assert tags["rankwise.latest"] == "model" and tags["rankwise.best"] == "best"
    assert tags["rankwise.best_checkpoint"] == summary["best_checkpoint"]
    assert {a.path for a in client.list_artifacts(run.info.run_id)} == {"model", "best"}
    best = {a.path for a in client.list_artifacts(run.info.run_id, "best")}
    assert "best/model.safetensors" in best or any(p.startswith("best/") for p in best)
    dev = client.get_metric_history(run.info.run_id, "eval_dev_ndcg_at_10")
    assert [m.step for m in dev] == [2, 4]
    assert run.data.metrics["after.dev_ndcg_at_10"] == pytest.approx(summary["after"]["dev_ndcg@10"])
    assert run.data.params["freeze_base"] == "True" and run.data.params["kind"] == "retriever"
