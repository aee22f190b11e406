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
    # actors at this process's priority, as the engine's own instances run them (Ray's default, niceness 15,
    # starves them whenever anything else is running)
    system = {"worker_niceness": os.nice(0)}
    ray.init(
        num_cpus=2, include_dashboard=False, logging_level=logging.WARNING, log_to_driver=False, _system_config=system
    )
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
    for kind in ("dense", "sparse"):
        assert main(["index", str(tmp_path), "--kind", kind, "--engine", "ray", "--out", str(tmp_path / "i")]) == 2
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
    assert main(["index", str(tmp_path), "--kind", "bm25", "--engine", "ray", "--out", out]) == 2
    assert "--engine applies to --kind dense and --kind sparse only" in capsys.readouterr().err

    # answering: a local (or RankRAG) generator's section; rankwise rag --engine
    path.write_text("name: a\nretrieve: {bm25: {}}\ngenerate: {kind: local, engine: {kind: ray, actors: 2}}\n")
    assert load_config(path).generate.engine == EngineConfig(kind="ray", actors=2)
    path.write_text(
        "name: a\nretrieve: {bm25: {}}\ngenerate: {kind: http, base_url: 'http://h', model: m, engine: {}}\n"
    )
    with pytest.raises(ConfigError, match=r"exp.yaml, line 3: .*engine"):
        load_config(path)
    rag = ["rag", "--dataset", "hotpotqa", str(tmp_path), "--out", out]
    assert main([*rag, "--generator", "http://h/v1", "--generator-model", "m", "--engine", "ray"]) == 2
    assert "--engine applies to a local --generator" in capsys.readouterr().err
    assert main([*rag, "--actors", "2"]) == 2
    assert "--ray-address and --actors apply to --engine ray only" in capsys.readouterr().err


# ------------------------------------------------------------------------------------ answering, SPLADE

CHAT_TEMPLATE = (
    "{% for m in messages %}<{{ m['role'] }}> {{ m['content'] }}\n{% endfor %}"
    "{% if add_generation_prompt %}<assistant>{% endif %}"
)


@pytest.fixture(scope="module")
def generator_dir(minilm_path: str, tmp_path_factory: pytest.TempPathFactory) -> str:
    """A 2-layer random Llama (hidden 32) with the MiniLM tokenizer and a chat template, saved like a hub model."""
    import torch
    from transformers import AutoTokenizer, LlamaConfig, LlamaForCausalLM

    out = tmp_path_factory.mktemp("tiny-generator")
    tokenizer = AutoTokenizer.from_pretrained(minilm_path)
    tokenizer.chat_template = CHAT_TEMPLATE
    config = LlamaConfig(
        vocab_size=len(tokenizer), hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=2,
        num_key_value_heads=2, max_position_embeddings=512, pad_token_id=tokenizer.pad_token_id,
        eos_token_id=tokenizer.sep_token_id,
    )  # fmt: skip
    torch.manual_seed(0)
    LlamaForCausalLM(config).save_pretrained(out)
    tokenizer.save_pretrained(out)
    return str(out)


def questions(n: int) -> tuple[dict[str, Query], dict[str, dict[str, float]], dict[str, Document]]:
    docs = {doc_id: Document(doc_id, "", text) for doc_id, text in corpus(20)}
    words = ["immune cell", "drug trial", "brain blood", "virus gene", "protein tumour", "cell virus", "gene drug"]
    queries = {f"q{i}": Query(f"q{i}", f"what about {words[i % len(words)]} {i}?") for i in range(n)}
    run = {qid: {f"d{(i * 3 + j) % 20}": 5.0 - j for j in range(4)} for i, qid in enumerate(queries)}
    return queries, run, docs


def test_answers_on_ray_equal_the_local_engines_and_resume_its_chunks(ray_session, generator_dir, tmp_path) -> None:
    """The generate stage: shards of questions (its saved chunks) answered by one generator per actor give the
    local engine's greedy answers; the stage key ignores the engine, and a Ray run resumes a local run's chunks."""
    from rankwise.config.sections import LocalGenerateConfig
    from rankwise.experiment import answers
    from rankwise.experiment.cache import Chunks

    queries, run, docs = questions(6)
    settings = {"model": generator_dir, "top_k": 2, "max_new_tokens": 6, "checkpoint_every": 2, "threads": 1}
    local = LocalGenerateConfig(**settings)
    ray = LocalGenerateConfig(**settings, engine={"kind": "ray", "actors": 2})
    assert answers.key_params(ray) == answers.key_params(local)  # where it runs is not part of what it computes
    batched = LocalGenerateConfig(**settings, engine={"batch_size": 2})  # but the batch the generator runs is
    assert (
        answers.key_params(batched)
        == answers.key_params(local.model_copy(update={"batch_size": 2}))
        != answers.key_params(local)
    )

    def answer(config: LocalGenerateConfig, folder: str) -> tuple[list[dict], dict]:
        return answers.generate(config, queries, run, docs, Chunks(tmp_path / folder, "generate", "k"), False, print)

    expected, _ = answer(local, "local")
    assert [r["id"] for r in expected] == list(queries) and any(r["raw"] for r in expected)
    # a local run killed after its first chunk leaves it saved: the Ray run answers the other two shards, one per
    # actor, and the records are the local run's
    Chunks(tmp_path / "ray", "generate", "k").save(0, expected[:2])
    records, info = answer(ray, "ray")
    assert records == expected and info["chunks_resumed"] == 1


class Failing:
    """A generator that raises on the question ``poison`` (answers the rest with a fixed text)."""

    def __init__(self, poison: str) -> None:
        self.poison = poison

    def generate_batch(self, requests):
        from rankwise.generate.answer import Answer

        if any(request.question == self.poison for request in requests):
            raise ValueError(f"cannot answer {self.poison!r}")
        return [Answer(text="x [1]", raw="x [1]") for _ in requests]


def test_a_failing_generator_names_its_answer_shard_and_a_rerun_resumes(ray_session, tmp_path, monkeypatch) -> None:
    from rankwise.config.sections import LocalGenerateConfig
    from rankwise.experiment import answers
    from rankwise.experiment.cache import Chunks

    queries, run, docs = questions(6)
    monkeypatch.setattr(answers, "build_generator", lambda config, progress: Failing(queries["q3"].text))
    config = LocalGenerateConfig(model="unused", checkpoint_every=2, engine={"kind": "ray", "actors": 1})
    chunks = Chunks(tmp_path, "generate", "k")
    with pytest.raises(EngineError) as caught:
        answers.generate(config, queries, run, docs, chunks, False, print)
    message = str(caught.value)
    assert message.startswith("answer shard 1 (questions q2..q3) failed on Ray worker (") and "\n" not in message
    assert message.endswith("ValueError: cannot answer 'what about virus gene 3?'")
    assert chunks.load(0) is not None and chunks.load(1) is None  # the shard finished before is kept

    monkeypatch.setattr(answers, "build_generator", lambda config, progress: Failing("no such question"))
    records, info = answers.generate(config, queries, run, docs, chunks, False, print)
    assert [r["id"] for r in records] == list(queries) and info["chunks_resumed"] == 1


def test_splade_encoding_on_ray_equals_local(ray_session) -> None:
    """Shards of chunk_size documents on two actors build the local engine's inverted index (a sparse section's
    engine, e.g. ``rankwise index --kind sparse --engine ray``, gives the retriever its Ray engine)."""
    import torch

    from rankwise.config.sections import SparseConfig
    from rankwise.engine.ray_engine import RayEngine
    from rankwise.retrieve.sparse import SparseRetriever

    torch.set_num_threads(1)  # as each 1-CPU actor runs
    docs = {doc_id: Document(doc_id, "", text) for doc_id, text in corpus(60)}
    options = {"max_seq_length": 32, "chunk_size": 16, "show_progress": False}
    local = SparseRetriever(**options)
    local.index(docs)
    remote = SparseRetriever(**options, engine=RayEngine(actors=2))  # four shards over two actors
    remote.index(docs)
    assert (remote.doc_ids, remote.fingerprint, remote.vocab_size) == (local.doc_ids, local.fingerprint, 30522)
    np.testing.assert_array_equal(remote._offsets, local._offsets)
    np.testing.assert_array_equal(remote._docs, local._docs)
    np.testing.assert_allclose(remote._weights, local._weights, rtol=0, atol=1e-6)

    built = build_retriever(SparseConfig(engine={"kind": "ray", "actors": 2}), show_progress=False)
    assert isinstance(built.engine, RayEngine) and built.engine.actors == 2
