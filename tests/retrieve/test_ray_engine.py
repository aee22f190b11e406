"""The Ray engine runs the same shards as the local engine: equal embeddings, resume after a killed worker, a
worker's failure named with its shard, and a clear error without ray. One local Ray instance (2 CPUs) for the
module; a tiny random encoder (2 layers, 32-d) so that every actor loads it in a second."""

from __future__ import annotations

import logging
import os
import sys
from functools import partial
from pathlib import Path

import numpy as np
import pytest

from rankwise.build import build_engine, build_retriever
from rankwise.cli import main
from rankwise.config.sections import DenseConfig, EngineConfig
from rankwise.engine import LocalEngine
from rankwise.errors import ConfigError, EngineError, MissingExtraError
from rankwise.retrieve.encode import build_random_encoder, encode_corpus, load_embeddings
from rankwise.retrieve.encoders import load_sentence_encoder
from rankwise.types import Document, Query

OPTIONS = {"model_id": "tiny", "shard_size": 40, "batch_size": 8, "chunk_size": 20, "show_progress": False}


@pytest.fixture(scope="module")
def ray_session():
    import ray
    from ray import cloudpickle

    cloudpickle.register_pickle_by_value(sys.modules[__name__])  # actors import rankwise, not this test file
    ray.init(num_cpus=2, include_dashboard=False, logging_level=logging.WARNING, log_to_driver=False)
    yield ray
    ray.shutdown()


@pytest.fixture(scope="module")
def encoder_dir(minilm_path: str, tmp_path_factory: pytest.TempPathFactory) -> str:
    import torch

    torch.set_num_threads(1)  # as each 1-CPU actor runs: the same kernels, so the same rows
    return str(build_random_encoder(tmp_path_factory.mktemp("tiny") / "encoder", minilm_path, hidden_size=32))


def corpus(n: int) -> list[tuple[str, str]]:
    """Distinct texts (the trailing number), so that a poisoned text sits in one shard only."""
    words = ["cell", "protein", "gene", "tumour", "virus", "immune", "drug", "trial", "brain", "blood"]
    return [
        (f"d{i}", " ".join(words[(i * 7 + j * 3) % len(words)] for j in range(3 + i % 9)) + f" {i}") for i in range(n)
    ]


class Dying:
    """A model loader whose model kills its own process (as the OOM killer or a lost node would) on the text of
    ``poison``; with a ``marker`` file it dies only the first time, so a restarted actor gets through."""

    def __init__(self, path: str, poison: str, marker: Path | None = None, error: bool = False) -> None:
        self.path, self.poison, self.marker, self.error = path, poison, marker, error

    def __call__(self) -> Dying.Model:
        return Dying.Model(self, load_sentence_encoder(self.path, "fp32"))

    class Model:
        def __init__(self, loader: Dying, model) -> None:
            self.loader, self.model = loader, model

        def encode(self, texts, **options):
            poison, marker = self.loader.poison, self.loader.marker
            if poison in texts and (marker is None or not marker.exists()):
                if self.loader.error:
                    raise ValueError("a bad passage")
                if marker is not None:
                    marker.touch()
                os._exit(1)
            return self.model.encode(texts, **options)


def test_ray_engine_built_from_config_writes_the_local_engines_embeddings(ray_session, encoder_dir, tmp_path):
    """Through the one builder: a dense section with ``engine: {kind: ray}`` indexes to the same vectors, split
    over two actors, and ranks like the local engine."""
    docs = {doc_id: Document(doc_id, "", text) for doc_id, text in corpus(200)}
    queries = {"q1": Query("q1", "immune cell"), "q2": Query("q2", "drug trial brain")}
    runs, rows = [], []
    for name, engine in (("local", {"kind": "local"}), ("ray", {"kind": "ray", "actors": 2})):
        config = DenseConfig(model=encoder_dir, shard_size=40, batch_size=8, engine=engine)
        retriever = build_retriever(config, show_progress=False)
        retriever.index(docs, work_dir=tmp_path / name)
        runs.append(retriever.search(queries, k=10))
        rows.append(load_embeddings(tmp_path / name))
    assert rows[0][0] == rows[1][0] == list(docs)
    np.testing.assert_allclose(rows[1][1], rows[0][1], atol=1e-5, rtol=0)
    for qid in queries:
        assert list(runs[0][qid]) == list(runs[1][qid])
        np.testing.assert_allclose(list(runs[0][qid].values()), list(runs[1][qid].values()), atol=1e-5)


def test_a_killed_worker_names_its_shard_then_a_rerun_resumes_and_survives_a_kill(ray_session, encoder_dir, tmp_path):
    from rankwise.engine.ray_engine import RayEngine

    items = corpus(200)
    poison = items[130][1]  # shard 3 holds documents d120..d159
    encoding = tmp_path / "enc"
    with pytest.raises(EngineError, match=r"shard 3 \(documents d120\.\.d159\) failed: its Ray worker .* died"):
        encode_corpus(Dying(encoder_dir, poison), items, encoding, engine=RayEngine(actors=2, retries=0), **OPTIONS)
    assert not (encoding / "complete.json").exists() and not (encoding / "shard-00003.json").exists()
    finished = len(list(encoding.glob("shard-*.json")))

    # the rerun resumes from the finished shards; its worker is killed once more, restarted, and finishes
    dying = Dying(encoder_dir, poison, marker=tmp_path / "died-once")
    result = encode_corpus(dying, items, encoding, engine=RayEngine(actors=1, retries=1), **OPTIONS)
    assert (tmp_path / "died-once").exists() and (result.reused_shards, result.rows) == (finished, 200)

    local = tmp_path / "local"
    encode_corpus(load_sentence_encoder(encoder_dir, "fp32"), items, local, engine=LocalEngine(), **OPTIONS)
    ids, rows = load_embeddings(encoding)
    assert ids == load_embeddings(local)[0]
    np.testing.assert_allclose(rows, load_embeddings(local)[1], atol=1e-5, rtol=0)


def test_a_worker_error_is_one_line_naming_shard_worker_and_cause(ray_session, encoder_dir, tmp_path) -> None:
    from rankwise.engine.ray_engine import RayEngine

    items = corpus(80)
    failing = Dying(encoder_dir, items[0][1], error=True)
    with pytest.raises(EngineError) as caught:
        encode_corpus(failing, items, tmp_path, engine=RayEngine(actors=1), **OPTIONS)
    message = str(caught.value)
    assert message.startswith("shard 0 (documents d0..d39) failed on Ray worker (")
    assert message.endswith("ValueError: a bad passage") and "\n" not in message
    with pytest.raises(EngineError, match=r"shard 0 .* failed on Ray worker \(.*\): cannot load model '/no/such/m"):
        encode_corpus(
            partial(load_sentence_encoder, "/no/such/model", "fp32"),
            items,
            tmp_path / "m",
            engine=RayEngine(actors=1),
            **OPTIONS,
        )


def test_cross_encoder_reranking_on_ray_equals_local(ray_session, tiny_cross_encoder_dir) -> None:
    """Shards of queries on two actors (kept for the next call), through the builder, rank like the local run."""
    from rankwise.build import build_reranker
    from rankwise.config.sections import CrossEncoderConfig

    docs = {doc_id: Document(doc_id, "", text) for doc_id, text in corpus(30)}
    words = ["immune cell", "drug trial", "brain blood", "virus gene", "protein tumour"]
    queries = {f"q{i}": Query(f"q{i}", words[i]) for i in range(5)}
    run = {qid: {f"d{(i * 5 + j) % 30}": 10.0 - j for j in range(12)} for i, qid in enumerate(queries)}
    local = build_reranker(CrossEncoderConfig(model=str(tiny_cross_encoder_dir)), show_progress=False)
    expected = local.rerank(queries, run, docs, k=10)
    config = CrossEncoderConfig(model=str(tiny_cross_encoder_dir), engine={"kind": "ray", "actors": 2})
    remote = build_reranker(config, show_progress=False)
    remote.queries_per_shard = 2  # three shards over two actors
    for _ in range(2):  # the second call reuses the actors (and their models)
        reranked = remote.rerank(queries, run, docs, k=10)
        assert list(reranked) == list(expected)
        for qid in expected:
            assert list(reranked[qid]) == list(expected[qid])
            np.testing.assert_allclose(list(reranked[qid].values()), list(expected[qid].values()), atol=1e-5)
        assert len(remote.engine._pool.actors) == 2
    remote.close()
    with pytest.raises(Exception, match="which is not in the corpus"):
        remote.rerank(queries, {"q0": {"nope": 1.0}}, docs, k=10)


def test_without_ray_the_error_names_the_extra(monkeypatch, tmp_path, capsys) -> None:
    monkeypatch.setitem(sys.modules, "ray", None)  # `import ray` now raises ImportError, as when it is absent
    with pytest.raises(MissingExtraError, match=r"pip install 'rankwise\[ray\]'"):
        build_engine(EngineConfig(kind="ray"))
    from rankwise.build import build_reranker
    from rankwise.config.sections import CrossEncoderConfig

    with pytest.raises(MissingExtraError, match=r"rankwise\[ray\]"):
        build_reranker(CrossEncoderConfig(model="unused", engine={"kind": "ray"}))
    assert main(["index", str(tmp_path), "--kind", "dense", "--engine", "ray", "--out", str(tmp_path / "i")]) == 2
    assert "pip install 'rankwise[ray]'" in capsys.readouterr().err
    assert not (tmp_path / "i").exists()


def test_engine_settings_and_the_removed_pool_give_clear_errors(tmp_path, capsys) -> None:
    from rankwise.config.experiment import load_config

    path = tmp_path / "exp.yaml"
    path.write_text("retrieve:\n  dense:\n    kind: dense\n    engine: {kind: local, actors: 4}\n")
    with pytest.raises(ConfigError, match=r"exp.yaml, line 4: .*actors apply to kind: ray only"):
        load_config(path)
    path.write_text("retrieve:\n  dense:\n    kind: dense\n    devices: [cpu, cpu]\n")
    with pytest.raises(ConfigError, match=r"line 4: .*replaced by the Ray engine: engine: \{kind: ray, actors: N\}"):
        load_config(path)
    assert (
        EngineConfig(kind="ray", address="auto", actors=3)
        == DenseConfig(engine={"kind": "ray", "address": "auto", "actors": 3}).engine
    )
    out = str(tmp_path / "i")
    assert main(["index", str(tmp_path), "--kind", "dense", "--devices", "cpu,cpu", "--out", out]) == 2
    assert "--devices (a multi-process pool) was replaced by --engine ray --actors N" in capsys.readouterr().err
    assert main(["index", str(tmp_path), "--kind", "dense", "--actors", "2", "--out", out]) == 2
    assert "--ray-address and --actors apply to --engine ray only" in capsys.readouterr().err
    assert main(["index", str(tmp_path), "--kind", "dense", "--engine", "spark", "--out", out]) == 2
    assert "--engine: Input should be 'local' or 'ray'" in capsys.readouterr().err
