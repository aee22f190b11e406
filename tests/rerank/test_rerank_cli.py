"""``rankwise rerank`` and ``rankwise mine-negatives`` on a small BEIR data set, through the typer commands."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import typer
from typer.testing import CliRunner

from rankwise.cli import rerank as rerank_cli
from rankwise.data import read_run, write_run


@pytest.fixture()
def app() -> typer.Typer:
    application = typer.Typer()
    rerank_cli.register(application)
    return application


@pytest.fixture()
def beir(tmp_path: Path) -> Path:
    root = tmp_path / "mini"
    docs = {
        "d1": "cats purr when they are happy",
        "d2": "dogs bark at cats",
        "d3": "birds fly south",
        "d4": "fish swim",
        "d5": "cats and dogs and birds",
    }
    (root / "qrels").mkdir(parents=True)
    (root / "corpus.jsonl").write_text(
        "".join(json.dumps({"_id": i, "title": "", "text": t}) + "\n" for i, t in docs.items())
    )
    (root / "queries.jsonl").write_text(
        json.dumps({"_id": "q1", "text": "why do cats purr"}) + "\n" + json.dumps({"_id": "q2", "text": "birds"}) + "\n"
    )
    (root / "qrels" / "test.tsv").write_text("query-id\tcorpus-id\tscore\nq1\td1\t1\nq2\td3\t1\n")
    (root / "qrels" / "train.tsv").write_text("query-id\tcorpus-id\tscore\nq1\td1\t1\nq2\td3\t1\n")
    write_run(
        {"q1": {"d2": 5.0, "d5": 4.0, "d1": 3.0, "d4": 2.0}, "q2": {"d5": 3.0, "d3": 2.0, "d1": 1.0}},
        tmp_path / "bm25.trec",
    )
    return root


def test_rerank_cross_encoder_writes_top_n(app, beir, tmp_path, tiny_cross_encoder_dir):
    out = tmp_path / "out" / "reranked.trec"
    args = ["rerank", "--run", str(tmp_path / "bm25.trec"), "--corpus", str(beir), "--out", str(out)]
    args += ["--model", str(tiny_cross_encoder_dir), "--top-n", "3", "--max-length", "32", "--metrics", "nDCG@10"]
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 0, result.output
    assert "reranked 2 queries (top 3)" in result.output
    assert "nDCG@10: first stage" in result.output
    run = read_run(out)
    assert set(run["q1"]) == {"d2", "d5", "d1"} and set(run["q2"]) == {"d5", "d3", "d1"}
    assert "rankwise-cross-encoder" in out.read_text().splitlines()[0]

    fused_out = tmp_path / "fused.trec"
    limited = [*args[:6], str(fused_out), *args[7:], "--interpolate", "1.0", "--limit-queries", "1"]
    result = CliRunner().invoke(app, limited)
    assert result.exit_code == 0, result.output
    # Weight 1.0 on the first stage: BM25's order comes back, for the first query only.
    assert list(read_run(fused_out)) == ["q1"]
    assert list(read_run(fused_out)["q1"]) == ["d2", "d5", "d1"]


def test_interpolate_auto_reads_the_weight_the_trainer_picked(app, beir, tmp_path, tiny_cross_encoder_dir):
    import json
    import shutil

    model = tmp_path / "trained"
    shutil.copytree(tiny_cross_encoder_dir, model)
    out = tmp_path / "auto.trec"
    args = ["rerank", "--run", str(tmp_path / "bm25.trec"), "--corpus", str(beir), "--out", str(out)]
    args += ["--model", str(model), "--top-n", "3", "--max-length", "32", "--interpolate", "auto"]
    missing = CliRunner().invoke(app, args)
    assert missing.exit_code != 0 and "rankwise_rerank.json" in str(missing.exception or missing.output)
    assert not out.exists()

    (model / "rankwise_rerank.json").write_text(json.dumps({"first_stage_weight": 1.0}))
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 0, result.output
    assert "first-stage weight 1.0" in result.output
    assert list(read_run(out)["q1"]) == ["d2", "d5", "d1"]  # all weight on BM25: its order comes back
    assert "warning" not in result.output  # picked plain (no 'windows' stored), reranked plain

    (model / "rankwise_rerank.json").write_text(json.dumps({"first_stage_weight": 0.2, "windows": "max"}))
    mismatch = CliRunner().invoke(app, args)
    assert mismatch.exit_code == 0 and "picked with --windows max, this run uses --windows first" in mismatch.output
    matched = CliRunner().invoke(app, [*args, "--windows", "max"])
    assert matched.exit_code == 0 and "warning" not in matched.output
    (model / "rankwise_rerank.json").write_text(json.dumps({"first_stage_weight": 0.2, "windows": "median"}))
    assert "'windows' must be one of" in str(CliRunner().invoke(app, args).exception)

    (model / "rankwise_rerank.json").write_text(json.dumps({"first_stage_weight": 3}))
    bad = CliRunner().invoke(app, args)
    assert bad.exit_code != 0 and "[0, 1]" in str(bad.exception or bad.output)
    wrong = CliRunner().invoke(app, [*args[:-1], "lots"])
    assert wrong.exit_code != 0 and "'auto'" in str(wrong.exception or wrong.output)
    too_much = CliRunner().invoke(app, [*args[:-1], "1.5"])
    assert too_much.exit_code != 0 and "must be in [0, 1]" in str(too_much.exception or too_much.output)


def test_options_for_another_reranker_are_rejected(app, beir, tmp_path):
    base = ["rerank", "--run", str(tmp_path / "bm25.trec"), "--corpus", str(beir), "--out", str(tmp_path / "x")]
    result = CliRunner().invoke(app, [*base, "--reranker", "cross-encoder", "--url", "http://127.0.0.1:1/rerank"])
    assert result.exit_code != 0
    assert "--url does not apply to --reranker cross-encoder" in str(result.exception)
    result = CliRunner().invoke(app, [*base, "--reranker", "http"])
    assert "--reranker http needs --url" in str(result.exception)
    assert not (tmp_path / "x").exists()


def test_mine_negatives_cli(app, beir, tmp_path):
    out = tmp_path / "examples.jsonl"
    args = ["mine-negatives", "--run", str(tmp_path / "bm25.trec"), "--dataset", str(beir), "--out", str(out)]
    result = CliRunner().invoke(app, [*args, "--window", "1-3", "--num-negatives", "2", "--seed", "1"])
    assert result.exit_code == 0, result.output
    examples = [json.loads(line) for line in out.read_text().splitlines()]
    assert [(e["query_id"], e["positive_id"]) for e in examples] == [("q1", "d1"), ("q2", "d3")]
    assert examples[0]["negative_ids"] == ["d2", "d5"]  # ranks 1-3 minus the relevant d1
    assert examples[1]["negative_ids"] == ["d5", "d1"]
    result = CliRunner().invoke(app, [*args, "--window", "ten"])
    assert "--window must look like 10-100" in str(result.exception)


def test_window_options(app, beir, tmp_path, tiny_cross_encoder_dir):
    out = tmp_path / "windows.trec"
    base = ["rerank", "--run", str(tmp_path / "bm25.trec"), "--corpus", str(beir), "--out", str(out)]
    args = [*base, "--model", str(tiny_cross_encoder_dir), "--max-length", "32", "--top-n", "3"]
    result = CliRunner().invoke(app, [*args, "--windows", "top2", "--window-words", "3", "--window-stride", "2"])
    assert result.exit_code == 0, result.output
    assert set(read_run(out)["q1"]) == {"d2", "d5", "d1"}
    wrong = CliRunner().invoke(app, [*args, "--windows", "median"])
    assert "--windows: Input should be 'first', 'max', 'mean' or 'top2'" in str(wrong.exception)
    skipping = CliRunner().invoke(app, [*args, "--windows", "max", "--window-words", "3", "--window-stride", "5"])
    assert "would skip text" in str(skipping.exception)
    llm = CliRunner().invoke(app, [*base, "--reranker", "llm", "--window-words", "30"])
    assert "--window-words does not apply to --reranker llm" in str(llm.exception)
