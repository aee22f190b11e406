"""Sharded encoding: same rows as one encode call, resume after a crash, repair, refusal of a changed plan (the
Ray engine's equality with this, the local engine, is in test_ray_engine.py)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from rankwise.errors import IndexStoreError
from rankwise.retrieve.encode import (
    build_random_encoder,
    encode_corpus,
    iter_corpus_jsonl,
    iter_shards,
    load_embeddings,
    read_complete,
)


@pytest.fixture(scope="module")
def tiny_model(minilm_path: str, tmp_path_factory: pytest.TempPathFactory):
    import torch
    from sentence_transformers import SentenceTransformer

    torch.set_num_threads(1)  # a shared 2-core machine: one thread is faster and bit-stable
    path = build_random_encoder(tmp_path_factory.mktemp("tiny") / "encoder", minilm_path, hidden_size=32)
    return SentenceTransformer(str(path), device="cpu")


def corpus(n: int, offset: int = 0) -> list[tuple[str, str]]:
    words = ["cell", "protein", "gene", "tumour", "virus", "immune", "drug", "trial", "brain", "blood"]
    return [
        (f"d{i}", " ".join(words[(i * 7 + j * 3) % len(words)] for j in range(3 + i % 9)))
        for i in range(offset, offset + n)
    ]


class CrashingEncoder:
    """Wraps a model; the ``fail_at``-th encode call raises, like a process killed in the middle of a shard."""

    def __init__(self, model, fail_at: int) -> None:
        self.model, self.calls, self.fail_at = model, 0, fail_at

    def encode(self, texts, **kwargs):
        self.calls += 1
        if self.calls == self.fail_at:
            raise KeyboardInterrupt("simulated kill")
        return self.model.encode(texts, **kwargs)


def test_shards_hold_the_rows_of_a_plain_encode_in_input_order(tiny_model, tmp_path: Path) -> None:
    items = corpus(250)
    result = encode_corpus(
        tiny_model, items, tmp_path, model_id="tiny", shard_size=100, batch_size=16, chunk_size=50, show_progress=False
    )
    assert (result.shards, result.rows, result.dim, result.reused_shards) == (3, 250, 32, 0)
    shards = list(iter_shards(tmp_path))
    assert [len(ids) for ids, _ in shards] == [100, 100, 50]
    ids, rows = load_embeddings(tmp_path)
    assert ids == [doc_id for doc_id, _ in items]
    expected = tiny_model.encode([t for _, t in items], batch_size=16, normalize_embeddings=True)
    np.testing.assert_allclose(rows, expected, atol=1e-5)
    np.testing.assert_allclose(np.linalg.norm(rows, axis=1), 1.0, atol=1e-5)
    assert read_complete(tmp_path) == {"shards": 3, "rows": 250, "dim": 32, "dtype": "float32"}


def test_resume_after_a_crash_skips_finished_shards_and_matches_byte_for_byte(tiny_model, tmp_path: Path) -> None:
    items = corpus(500)
    options = {"model_id": "tiny", "shard_size": 100, "batch_size": 16, "chunk_size": 50, "show_progress": False}
    encode_corpus(tiny_model, items, tmp_path / "clean", **options)

    crashing = CrashingEncoder(tiny_model, fail_at=6)  # 2 chunks per shard: dies inside the third shard
    with pytest.raises(KeyboardInterrupt):
        encode_corpus(crashing, items, tmp_path / "resumed", **options)
    assert not (tmp_path / "resumed" / "complete.json").exists()
    with pytest.raises(IndexStoreError, match="not complete"):
        load_embeddings(tmp_path / "resumed")
    # a half-written shard file without its .json marker, as a kill during np.save could leave
    (tmp_path / "resumed" / "shard-00002.npy").write_bytes(b"\x93NUMPY garbage")

    counter = CrashingEncoder(tiny_model, fail_at=-1)
    result = encode_corpus(counter, items, tmp_path / "resumed", **options)
    assert result.reused_shards == 2 and counter.calls == 6  # shards 2, 3, 4 encoded again, 2 chunks each
    for index in range(5):
        name = f"shard-{index:05d}.npy"
        assert (tmp_path / "resumed" / name).read_bytes() == (tmp_path / "clean" / name).read_bytes()
    assert not [p for p in (tmp_path / "resumed").iterdir() if p.name.startswith(".")]  # no temp files left


def test_a_corrupted_or_changed_shard_is_encoded_again(tiny_model, tmp_path: Path) -> None:
    items = corpus(300)
    options = {"model_id": "tiny", "shard_size": 100, "batch_size": 16, "show_progress": False}
    encode_corpus(tiny_model, items, tmp_path, **options)
    clean = (tmp_path / "shard-00001.npy").read_bytes()
    (tmp_path / "shard-00001.npy").write_bytes(clean[:-8] + b"\x00" * 8)
    with pytest.raises(IndexStoreError, match="checksum mismatch"):
        list(iter_shards(tmp_path))
    changed = [*items[:250], ("d250", "a different text"), *items[251:]]
    result = encode_corpus(tiny_model, changed, tmp_path, **options)
    assert result.reused_shards == 0 + 1  # shard 0 reused; 1 corrupted, 2 changed
    assert (tmp_path / "shard-00001.npy").read_bytes() == clean
    meta = json.loads((tmp_path / "shard-00002.json").read_text())
    assert meta["ids"][50] == "d250"
    # a shorter corpus drops the shards past its end
    result = encode_corpus(tiny_model, changed[:150], tmp_path, **options)
    assert result.shards == 2 and not (tmp_path / "shard-00002.npy").exists()


def test_changed_settings_are_refused_and_float16_halves_the_bytes(tiny_model, tmp_path: Path) -> None:
    items = corpus(120)
    encode_corpus(tiny_model, items, tmp_path / "a", model_id="tiny", shard_size=60, show_progress=False)
    with pytest.raises(IndexStoreError, match="dtype='float32', not 'float16'"):
        encode_corpus(tiny_model, items, tmp_path / "a", model_id="tiny", shard_size=60, dtype="float16")
    encode_corpus(tiny_model, items, tmp_path / "b", model_id="tiny", shard_size=60, dtype="float16")
    full = np.load(tmp_path / "a" / "shard-00000.npy")
    half = np.load(tmp_path / "b" / "shard-00000.npy")
    assert half.dtype == np.float16 and half.nbytes * 2 == full.nbytes
    np.testing.assert_allclose(half.astype(np.float32), full, atol=2e-3)


def test_corpus_jsonl_is_streamed_with_title_and_text(tmp_path: Path) -> None:
    path = tmp_path / "corpus.jsonl"
    path.write_text('{"_id": "a", "title": "T", "text": "body"}\n\n{"_id": "b", "text": "only"}\n{"x": 1}\n')
    stream = iter_corpus_jsonl(path)
    assert next(stream) == ("a", "T body") and next(stream) == ("b", "only")
    with pytest.raises(Exception, match=r"corpus.jsonl, line 4: expected an object with a string '_id'"):
        next(stream)
