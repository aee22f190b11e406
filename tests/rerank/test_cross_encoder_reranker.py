"""CrossEncoderReranker: same scores as CrossEncoder.predict whatever the batching; orders by those scores."""

from __future__ import annotations

import numpy as np
import pytest

from rankwise.errors import RankwiseError
from rankwise.rerank.cross_encoder import CrossEncoderReranker, load_cross_encoder

PAIRS = [
    ("why do cats purr", "Cats purr when content, and sometimes when hurt."),
    ("why do cats purr", "Dogs bark."),
    ("which animals fly", "Birds fly south in winter; bats fly at night and insects fly too, " * 3),
    ("a", "b"),
    ("long query " * 20, "short"),
]


@pytest.fixture(scope="module")
def tiny_model(tiny_cross_encoder_dir):
    return load_cross_encoder(str(tiny_cross_encoder_dir), max_length=64)


@pytest.mark.parametrize(("batch_size", "max_tokens"), [(1, 10_000), (2, 10_000), (128, 50), (128, 16384)])
def test_scores_match_predict(tiny_model, batch_size, max_tokens):
    expected = tiny_model.predict(PAIRS, batch_size=3)
    reranker = CrossEncoderReranker(tiny_model, batch_size=batch_size, max_tokens=max_tokens, show_progress=False)
    scores = reranker.score(PAIRS)
    np.testing.assert_allclose(scores, expected, atol=1e-5)
    assert len(set(np.round(scores, 6))) > 1  # a constant scorer would pass the comparison above


def test_max_length_truncates_like_predict(tiny_cross_encoder_dir):
    short = load_cross_encoder(str(tiny_cross_encoder_dir), max_length=8)
    reranker = CrossEncoderReranker(short, show_progress=False)
    assert reranker.max_length == 8
    np.testing.assert_allclose(reranker.score(PAIRS), short.predict(PAIRS), atol=1e-5)
    # Truncation really happens: a pair differing only after token 8 scores the same.
    a, b = reranker.score([("q", "same start " * 5 + "tail one"), ("q", "same start " * 5 + "other end")])
    assert a == pytest.approx(b, abs=1e-6)


def test_rerank_orders_by_cross_encoder_score(tiny_model, toy_corpus, toy_queries, capsys):
    reranker = CrossEncoderReranker(tiny_model, show_progress=True)
    run = {"q1": {"d1": 4.0, "d2": 3.0, "d3": 2.0, "d4": 1.0}, "q2": {"d4": 2.0, "d1": 1.0}}
    out = reranker.rerank(toy_queries, run, toy_corpus, k=3)
    # stderr is not a terminal here: progress comes as a plain line (a log file gets it too)
    assert "reranking: 5/5 pairs" in capsys.readouterr().err
    assert set(out["q1"]) == {"d1", "d2", "d3"}
    pairs = [(toy_queries["q1"].text, toy_corpus[d].contents) for d in ("d1", "d2", "d3")]
    expected = dict(zip(("d1", "d2", "d3"), tiny_model.predict(pairs).tolist(), strict=True))
    assert list(out["q1"]) == sorted(expected, key=lambda d: (-expected[d], d))
    for doc_id, score in out["q1"].items():
        assert score == pytest.approx(expected[doc_id], abs=1e-5)


def test_loads_by_path_and_validates(tiny_cross_encoder_dir):
    reranker = CrossEncoderReranker(str(tiny_cross_encoder_dir), max_length=32, show_progress=False)
    assert reranker.score([]) == []
    assert len(reranker.score(PAIRS[:2])) == 2
    with pytest.raises(RankwiseError, match="positive"):
        CrossEncoderReranker(reranker.model, batch_size=0)
    with pytest.raises(RankwiseError, match="cannot load cross-encoder"):
        CrossEncoderReranker(str(tiny_cross_encoder_dir / "missing"))


def test_token_budget_defaults_by_device_and_bounds_every_batch(tiny_model, monkeypatch):
    from rankwise.rerank import cross_encoder

    assert CrossEncoderReranker(tiny_model, show_progress=False).max_tokens == cross_encoder.CPU_TOKEN_BUDGET
    assert CrossEncoderReranker(tiny_model, max_tokens=777, show_progress=False).max_tokens == 777
    with pytest.raises(RankwiseError, match="positive"):
        CrossEncoderReranker(tiny_model, max_tokens=0)
    # The budget is what splits the work: record the padded size of every forward pass.
    monkeypatch.setattr(cross_encoder, "CPU_TOKEN_BUDGET", 40)
    reranker = CrossEncoderReranker(tiny_model, show_progress=False)
    shapes: list[tuple[int, int]] = []
    hook = tiny_model.model.register_forward_hook(
        lambda _m, _a, kw, _o: shapes.append(tuple(kw["input_ids"].shape)), with_kwargs=True
    )
    try:
        reranker.score(PAIRS)
    finally:
        hook.remove()
    assert len(shapes) > 1 and sum(rows for rows, _ in shapes) == len(PAIRS)
    assert all(rows == 1 or rows * width <= 40 for rows, width in shapes)


def test_training_mode_is_restored(tiny_model):
    tiny_model.model.train()
    CrossEncoderReranker(tiny_model, show_progress=False).score(PAIRS[:1])
    assert tiny_model.model.training
    tiny_model.model.eval()


def test_plain_progress_reports_count_rate_and_time_left_when_not_on_a_terminal(capsys):
    from rankwise.rerank.base import progress

    with progress(10, enabled=True, description="reranking", every=0) as advance:
        advance(4)
        advance(6)
    lines = capsys.readouterr().err.strip().splitlines()
    assert lines[0].startswith("reranking: 4/10 pairs, ") and "min left" in lines[0]
    assert lines[-1].startswith("reranking: 10/10 pairs, ") and "left" not in lines[-1]
    with progress(10, enabled=False) as advance:
        advance(10)
    assert capsys.readouterr().err == ""
