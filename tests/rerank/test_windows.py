"""Window scoring: which texts a document is scored as, how window scores fold, and the reranker using both."""

from __future__ import annotations

import pytest

from rankwise.errors import RankwiseError
from rankwise.rerank.cross_encoder import CrossEncoderReranker, load_cross_encoder
from rankwise.rerank.windows import MIN_NEW_WORDS, check_windows, fold, passage_windows
from rankwise.types import Document, Query

BODY = " ".join(f"w{i}" for i in range(100))


def test_windows_start_with_the_plain_contents_then_title_before_each_stride():
    doc = Document("d", "A title", BODY)
    texts = passage_windows(doc, words=30, stride=25)
    assert texts[0] == doc.contents
    # starts 25, 50, 75; 75 leaves 25 words (> MIN_NEW_WORDS), 100 leaves none
    assert texts[1:] == [
        "A title " + " ".join(f"w{i}" for i in range(25, 55)),
        "A title " + " ".join(f"w{i}" for i in range(50, 80)),
        "A title " + " ".join(f"w{i}" for i in range(75, 100)),
    ]
    untitled = passage_windows(Document("d", "", BODY), words=30, stride=25)
    assert untitled[1] == " ".join(f"w{i}" for i in range(25, 55))
    # a text no longer than stride + MIN_NEW_WORDS words is scored once, as plain reranking does
    short = Document("s", "t", " ".join(["x"] * (25 + MIN_NEW_WORDS)))
    assert passage_windows(short, words=30, stride=25) == [short.contents]


def test_fold_and_checks():
    scores = [0.1, 0.9, 0.5, 0.7]
    assert fold(scores, "first") == 0.1
    assert fold(scores, "max") == 0.9
    assert fold(scores, "mean") == pytest.approx(0.55)
    assert fold(scores, "top2") == pytest.approx(0.8)
    assert fold([0.3], "top2") == 0.3
    with pytest.raises(RankwiseError, match="no window scores"):
        fold([], "max")
    with pytest.raises(RankwiseError, match="one of first, max, mean, top2"):
        check_windows("median", 70, 60)
    with pytest.raises(RankwiseError, match="positive"):
        check_windows("max", 0, 60)
    with pytest.raises(RankwiseError, match="would skip text"):
        check_windows("max", 50, 60)


@pytest.mark.parametrize("aggregate", ["max", "top2"])
def test_reranker_scores_a_document_as_its_folded_windows(tiny_cross_encoder_dir, aggregate):
    model = load_cross_encoder(str(tiny_cross_encoder_dir), max_length=16)
    corpus = {
        "long": Document("long", "Cats", "filler words here " * 12 + "cats purr when they are happy " * 4),
        "short": Document("short", "Dogs", "dogs bark"),
    }
    queries = {"q": Query("q", "why do cats purr")}
    run = {"q": {"long": 2.0, "short": 1.0}}
    reranker = CrossEncoderReranker(model, windows=aggregate, window_words=12, window_stride=10, show_progress=False)
    out = reranker.rerank(queries, run, corpus, k=2)
    for doc_id, doc in corpus.items():
        texts = passage_windows(doc, 12, 10)
        expected = fold(model.predict([(queries["q"].text, text) for text in texts]).tolist(), aggregate)
        assert out["q"][doc_id] == pytest.approx(expected, abs=1e-5)
    assert len(passage_windows(corpus["long"], 12, 10)) > 3  # the long document really was split
    plain = CrossEncoderReranker(model, show_progress=False).rerank(queries, run, corpus, k=2)
    first = CrossEncoderReranker(model, windows="first", show_progress=False).rerank(queries, run, corpus, k=2)
    assert first == plain
    assert out["q"]["long"] != pytest.approx(plain["q"]["long"], abs=1e-6)  # the later windows changed it
    with pytest.raises(RankwiseError, match="would skip text"):
        CrossEncoderReranker(model, windows="max", window_words=5, window_stride=10)
