"""Training-run tracking without its extra, and MS MARCO-style training triples: a sampling ratio and a cap that
keep the same lines every time, read streamed from triples files and from an MS MARCO-shaped BEIR folder."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest

from rankwise.config.sections.run import TrackingConfig
from rankwise.config.train_retriever import RetrieverTrainConfig
from rankwise.errors import MissingExtraError
from rankwise.train.msmarco import stream_pairs
from rankwise.train.pairs import read_triples, sample
from rankwise.train.tracking import start_tracking


@pytest.mark.parametrize(("backend", "package"), [("mlflow", "mlflow-skinny"), ("wandb", "wandb")])
def test_a_backend_without_its_library_names_the_extra(backend: str, package: str, monkeypatch, tmp_path) -> None:
    monkeypatch.setitem(sys.modules, backend, None)  # import fails as if not installed
    monkeypatch.chdir(tmp_path)  # were it not refused, the default store ./mlruns lands here, not in the repo
    config = RetrieverTrainConfig(output_dir=str(tmp_path), triples="t.tsv", tracking={"backend": backend})
    with pytest.raises(
        MissingExtraError, match=rf"^this feature needs the '{package}' package: .*rankwise\[tracking\]'$"
    ):
        start_tracking(config.tracking, "retriever", config)


def test_tracking_off_opens_nothing(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.chdir(tmp_path)
    config = RetrieverTrainConfig(output_dir=str(tmp_path), triples="t.tsv")
    tracker = start_tracking(TrackingConfig(), "retriever", config)
    assert tracker.run is None
    tracker.finish(tmp_path, {"steps": 1})
    assert list(tmp_path.iterdir()) == []


def write_triples(path: Path, count: int) -> Path:
    path.write_text("".join(f"query {i}\tpassage {i} answers it\tpassage {i} is off topic\n" for i in range(count)))
    return path


def test_sample_ratio_and_cap_keep_the_same_triples(tmp_path: Path) -> None:
    path = write_triples(tmp_path / "triples.train.small.tsv", 1000)
    assert len(read_triples(path).pairs) == 1000
    kept = [pair.query for pair in read_triples(path, ratio=0.1, seed=7).pairs]
    assert 60 <= len(kept) <= 140  # binomial(1000, 0.1): mean 100, sd 9.5
    assert kept == [pair.query for pair in read_triples(path, ratio=0.1, seed=7).pairs]  # same seed, same lines
    assert kept != [pair.query for pair in read_triples(path, ratio=0.1, seed=8).pairs]
    capped = [pair.query for pair in read_triples(path, limit=25, ratio=0.1, seed=7).pairs]
    assert capped == kept[:25]  # the cap stops the same draws early
    first = read_triples(path, limit=3)
    assert [p.query for p in first.pairs] == ["query 0", "query 1", "query 2"]
    assert len(first.corpus) == 6  # only the kept lines' passages are held
    assert first.pairs[0].negatives == ("passage 0 is off topic",)


def test_sample_stops_reading_at_the_cap() -> None:
    read = []

    def lines():
        for i in range(10**9):  # a "file" far too long to read whole
            read.append(i)
            yield i

    assert list(sample(lines(), 0.5, cap=10, seed=1)) == list(sample(range(100), 0.5, cap=10, seed=1))
    assert len(read) < 100


def write_msmarco(root: Path, passages: int = 400, judged: int = 120) -> Path:
    """A tiny folder shaped like BEIR's msmarco: corpus.jsonl, queries.jsonl, qrels/train.tsv (+ one 0 grade)."""
    (root / "qrels").mkdir(parents=True)
    with (root / "corpus.jsonl").open("w") as out:
        for i in range(passages):
            out.write(json.dumps({"_id": str(i), "title": "", "text": f"passage {i} about topic {i % 37}"}) + "\n")
    with (root / "queries.jsonl").open("w") as out:
        for q in range(judged):
            out.write(json.dumps({"_id": f"q{q}", "text": f"what is topic {q % 37}"}) + "\n")
    rows = ["query-id\tcorpus-id\tscore"] + [f"q{q}\t{(q * 7) % passages}\t1" for q in range(judged)]
    (root / "qrels" / "train.tsv").write_text("\n".join([*rows, "q0\t399\t0"]) + "\n")
    return root


def test_msmarco_folder_is_sampled_streamed_with_a_bounded_negative_pool(tmp_path: Path) -> None:
    root = write_msmarco(tmp_path / "msmarco")
    everything = stream_pairs(root, "train", pool=0)
    assert len(everything.pairs) == 120 and len(everything.corpus) == 120  # positives only; the 0 grade is not one
    some = stream_pairs(root, "train", ratio=0.25, cap=20, seed=3, pool=50)
    assert len(some.pairs) == 20 and len(some.corpus) == 20 + 50  # positives + the pool, not all 400 passages
    again = stream_pairs(root, "train", ratio=0.25, cap=20, seed=3, pool=50)
    assert some.pairs == again.pairs and some.corpus == again.corpus  # deterministic, pool included
    pair = some.pairs[0]
    q = int(pair.query_id[1:])
    assert (
        pair.positive_id == str((q * 7) % 400)
        and pair.positive == f"passage {pair.positive_id} about topic {int(pair.positive_id) % 37}"
    )
    assert pair.query == f"what is topic {q % 37}"


def test_retriever_trains_on_the_sampled_msmarco_pairs_with_bm25_negatives(tmp_path: Path) -> None:
    from rankwise.train.retriever_data import prepare_data

    root = write_msmarco(tmp_path / "msmarco")
    settings = {"output_dir": str(tmp_path / "out"), "data": str(root), "negative_pool": 100, "max_triples": 40}
    settings |= {"sample_ratio": 0.5, "dev_queries": 10, "num_negatives": 1, "negative_window": [1, 20]}
    data = prepare_data(RetrieverTrainConfig(**settings))
    assert len(data["columns"]["anchor"]) == 30  # 40 kept pairs, 10 of their queries held out for dev
    assert len(data["dev"]["queries"]) == 10 and len(data["columns"]["negative_1"]) == 30
    again = prepare_data(RetrieverTrainConfig(**settings))
    assert again["columns"] == data["columns"]
    with pytest.raises(ValueError, match="negative_pool applies to data without dev_split"):
        RetrieverTrainConfig(**{**settings, "dev_split": "dev"})
