"""The one builder: a new reranker kind is one class plus one registration, and is then usable from the Python
API, YAML experiments and the CLI (on real Cranfield data, BM25 first stage: seconds)."""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path

import pytest

from rankwise import build
from rankwise.cli import main
from rankwise.config.experiment import load_config
from rankwise.config.sections import RERANKER_CONFIGS, BM25Config, CrossEncoderConfig, DenseConfig, FuseConfig
from rankwise.data import load_dataset, read_run, write_run
from rankwise.errors import ConfigError
from rankwise.experiment import run_experiment
from rankwise.rerank.base import Reranker


class ShortestFirst(Reranker):
    """A toy reranker: the shorter the passage, the higher its score (plus a constant ``bonus``)."""

    def __init__(self, bonus: float = 0.0, show_progress: bool = True) -> None:
        self.bonus = bonus

    def score(self, pairs: Sequence[tuple[str, str]]) -> list[float]:
        return [self.bonus - len(passage) for _, passage in pairs]


@pytest.fixture()
def toy_kind():
    section = build.register_reranker("shortest", ShortestFirst)  # the one registration
    yield section
    build.unregister_reranker("shortest")
    assert "shortest" not in RERANKER_CONFIGS and "shortest" not in build.RERANKERS


def assert_shortest_first(reranked: dict, first: dict, corpus: dict, top_n: int) -> None:
    for qid, docs in first.items():
        got = list(reranked[qid])
        assert sorted(got) == sorted(list(docs)[:top_n])
        lengths = [len(corpus[d].contents) for d in got]
        assert lengths == sorted(lengths)
        assert list(reranked[qid].values()) == [2.5 - n for n in lengths]


def test_a_registered_reranker_works_from_python_yaml_and_the_cli(toy_kind, tmp_path: Path, cranfield_dir: Path):
    data = load_dataset(cranfield_dir)
    queries = dict(list(data.judged_queries().items())[:5])
    bm25 = build.build_retriever(BM25Config(), show_progress=False)
    bm25.index(data.corpus)
    first = bm25.search(queries, k=10)

    # Python API: the section the registration made, then the builder
    section = toy_kind(top_n=10, bonus=2.5)
    reranker = build.build_reranker(section)
    assert isinstance(reranker, ShortestFirst) and reranker.bonus == 2.5
    python_run = reranker.rerank(queries, first, data.corpus, k=10)
    assert_shortest_first(python_run, first, data.corpus, 10)

    # YAML experiment
    config = tmp_path / "exp.yaml"
    config.write_text(
        "name: toy\ndata: {split: test, max_queries: 5}\nretrieve:\n  bm25: {k: 10}\n"
        "rerank: {kind: shortest, top_n: 10, bonus: 2.5}\nevaluate: {metrics: [nDCG@10]}\n",
        encoding="utf-8",
    )
    assert load_config(config).rerank == section
    [out_dir] = run_experiment(
        load_config(config), [str(cranfield_dir)], tmp_path / "out", show_progress=False, log=print
    )
    assert read_run(out_dir / "runs" / "rerank.trec") == read_run_roundtrip(python_run, tmp_path / "py.trec")
    with pytest.raises(ConfigError, match="bonus"):
        load_config(config, ["rerank.bonus=lots"])

    # CLI: rankwise rerank --reranker shortest --set bonus=2.5
    run_file = tmp_path / "bm25.trec"
    write_run(first, run_file)
    status = main(
        ["rerank", "--run", str(run_file), "--corpus", str(cranfield_dir), "--reranker", "shortest",
         "--top-n", "10", "--set", "bonus=2.5", "--out", str(tmp_path / "cli.trec")]
    )  # fmt: skip
    assert status in (0, None)
    assert read_run(tmp_path / "cli.trec") == read_run(out_dir / "runs" / "rerank.trec")


def read_run_roundtrip(run: dict, path: Path) -> dict:
    write_run(run, path)
    return read_run(path)


def test_unknown_kinds_and_bad_settings_are_clear_errors(toy_kind, tmp_path: Path, cranfield_dir: Path, capsys):
    run_file = tmp_path / "r.trec"
    run_file.write_text("1 Q0 1 1 1.0 x\n", encoding="utf-8")
    common = ["rerank", "--run", str(run_file), "--corpus", str(cranfield_dir), "--out", str(tmp_path / "o.trec")]
    assert main([*common, "--reranker", "bogus"]) != 0
    assert "--reranker must be one of" in capsys.readouterr().err
    assert main([*common, "--reranker", "shortest", "--set", "colour=red"]) != 0
    assert "--set colour: unknown setting" in capsys.readouterr().err
    assert not (tmp_path / "o.trec").exists()


def test_the_cli_and_yaml_build_the_same_sections(tmp_path: Path):
    """The CLI's flags become the very section objects YAML gives (so both build through one function)."""
    from rankwise.cli.rerank import _section
    from rankwise.experiment.ask_parts import reranker_section, retrieve_sections

    assert reranker_section("cross-encoder", "m") == CrossEncoderConfig(model="m")
    flags = _section("cross-encoder", "m", 20, "0.3", 128, None, None, None, None, None, False, "max", None, None, [])
    assert flags == CrossEncoderConfig(model="m", top_n=20, interpolate=0.3, max_length=128, windows="max")
    assert RERANKER_CONFIGS["cross-encoder"] is CrossEncoderConfig
    assert retrieve_sections("hybrid", None, 50) == (
        {"bm25": BM25Config(k=50), "dense": DenseConfig(k=50)},
        FuseConfig(method="rrf", k=60, depth=50),
    )
    assert DenseConfig().index_params() == DenseConfig(shard_size=7, engine={"kind": "ray", "actors": 2}).index_params()


def test_load_index_opens_every_kind_through_the_builder(tmp_path: Path, cranfield_dir: Path):
    data = load_dataset(cranfield_dir)
    bm25 = build.build_retriever(BM25Config(k1=1.2), show_progress=False)
    bm25.index(data.corpus)
    bm25.save(tmp_path / "idx")
    loaded = build.load_index(tmp_path / "idx", show_progress=False)
    assert type(loaded) is type(bm25) and loaded.params["k1"] == 1.2
    manifest = json.loads((tmp_path / "idx" / "manifest.json").read_text())
    assert manifest["kind"] == "bm25"
