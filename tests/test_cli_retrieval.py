"""The retrieval CLI end to end on real data: index -> search (single and fused) -> eval, and the quickstart."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from rankwise.cli import main
from rankwise.data import load_dataset, read_run
from rankwise.evaluate.retrieval import evaluate
from rankwise.retrieve.fusion import rrf


@pytest.fixture(scope="module")
def mini_scifact(scifact_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A BEIR directory with 15 SciFact test queries and 150 docs (their relevant docs plus others)."""
    full = load_dataset(scifact_dir, split="test")
    qids = sorted(full.qrels)[:15]
    wanted = sorted({doc for qid in qids for doc in full.qrels[qid]})
    docs = wanted + [d for d in full.corpus if d not in wanted][: 150 - len(wanted)]
    root = tmp_path_factory.mktemp("mini") / "scifact"
    (root / "qrels").mkdir(parents=True)
    with (root / "corpus.jsonl").open("w") as handle:
        for doc in docs:
            d = full.corpus[doc]
            handle.write(json.dumps({"_id": d.id, "title": d.title, "text": d.text}) + "\n")
    with (root / "queries.jsonl").open("w") as handle:
        for qid in qids:
            handle.write(json.dumps({"_id": qid, "text": full.queries[qid].text}) + "\n")
    with (root / "qrels" / "test.tsv").open("w") as handle:
        handle.write("query-id\tcorpus-id\tscore\n")
        for qid in qids:
            for doc, grade in full.qrels[qid].items():
                handle.write(f"{qid}\t{doc}\t{grade}\n")
    return root


def test_index_search_eval_on_cranfield(cranfield_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    assert main(["index", str(cranfield_dir), "--kind", "bm25", "--out", str(tmp_path / "idx")]) == 0
    run_file = tmp_path / "run.trec"
    assert (
        main(
            [
                "search",
                "--index",
                str(tmp_path / "idx"),
                "--queries",
                str(cranfield_dir),
                "--k",
                "50",
                "--out",
                str(run_file),
            ]
        )
        == 0
    )
    run = read_run(run_file)
    assert len(run) == 225 and all(len(docs) == 50 for docs in run.values())
    capsys.readouterr()
    assert main(["eval", "--run", str(run_file), "--qrels", str(cranfield_dir), "--metrics", "nDCG@10", "--json"]) == 0
    printed = json.loads(capsys.readouterr().out)
    expected = evaluate(run, load_dataset(cranfield_dir).qrels, ["nDCG@10"])["nDCG@10"]
    assert printed["nDCG@10"] == pytest.approx(expected, abs=1e-12)
    assert len(printed["per_query"]["nDCG@10"]) == 225


def test_fused_search_equals_rrf_of_the_single_runs(mini_scifact: Path, minilm_path: str, tmp_path: Path) -> None:
    for kind, extra in (("bm25", []), ("dense", ["--model", minilm_path])):
        assert main(["index", str(mini_scifact), "--kind", kind, "--out", str(tmp_path / kind), *extra]) == 0
        assert (
            main(
                [
                    "search",
                    "--index",
                    str(tmp_path / kind),
                    "--queries",
                    str(mini_scifact),
                    "--out",
                    str(tmp_path / f"{kind}.trec"),
                ]
            )
            == 0
        )
    assert (
        main(
            [
                "search",
                "--index",
                str(tmp_path / "bm25"),
                "--index",
                str(tmp_path / "dense"),
                "--queries",
                str(mini_scifact),
                "--fuse",
                "rrf",
                "--out",
                str(tmp_path / "hybrid.trec"),
            ]
        )
        == 0
    )
    single = [read_run(tmp_path / "bm25.trec"), read_run(tmp_path / "dense.trec")]
    fused = read_run(tmp_path / "hybrid.trec")
    expected = rrf(single, k=60, depth=100)
    assert fused == expected
    assert all(list(fused[q]) == list(expected[q]) for q in expected)  # same order, ties included


def test_bad_arguments_are_clear_errors(cranfield_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    assert main(["index", str(cranfield_dir), "--kind", "splade", "--out", str(tmp_path / "x")]) == 2
    assert "--kind must be one of bm25, dense" in capsys.readouterr().err
    assert (
        main(
            [
                "search",
                "--index",
                str(tmp_path / "nope"),
                "--queries",
                str(cranfield_dir),
                "--out",
                str(tmp_path / "r.trec"),
            ]
        )
        == 2
    )
    assert "not a rankwise index" in capsys.readouterr().err
    assert not (tmp_path / "r.trec").exists()


def test_quickstart_runs_the_shipped_experiment_and_reuses_indexes(mini_scifact: Path, tmp_path: Path) -> None:
    out = tmp_path / "qs"
    assert main(["quickstart", "--data", str(mini_scifact), "--out", str(out)]) == 0
    folder = out / "quickstart" / mini_scifact.name
    metrics = json.loads((folder / "metrics.json").read_text())
    assert list(metrics["stages"]) == ["bm25", "dense", "fuse"]  # the one run path: an experiment's metrics.json
    qrels = load_dataset(mini_scifact).qrels
    for stage in metrics["stages"]:
        run = read_run(folder / "runs" / f"{stage}.trec")
        value = metrics["stages"][stage]["metrics"]["nDCG@10"]
        assert value == pytest.approx(evaluate(run, qrels, ["nDCG@10"])["nDCG@10"])
        assert 0.3 < value <= 1.0
    assert metrics["stages"]["dense"]["timing"]["index"] == "built"
    assert main(["quickstart", "--data", str(mini_scifact), "--out", str(out), "--json"]) == 0
    again = json.loads((folder / "metrics.json").read_text())
    assert again["stages"]["fuse"]["metrics"] == metrics["stages"]["fuse"]["metrics"]
    # the same command as `rankwise run -e configs/quickstart.yaml` on the same data
    from rankwise.config.experiment import load_config
    from rankwise.experiment import run_experiment

    config = load_config(Path(__file__).resolve().parents[1] / "configs" / "quickstart.yaml")
    [other] = run_experiment(config, [str(mini_scifact)], tmp_path / "run", show_progress=False, log=lambda _: None)
    assert (
        json.loads((other / "metrics.json").read_text())["stages"]["fuse"]["metrics"]
        == again["stages"]["fuse"]["metrics"]
    )


def test_quickstart_refuses_an_unknown_precision_in_one_line(mini_scifact: Path, tmp_path: Path, capsys) -> None:
    assert main(["quickstart", "--data", str(mini_scifact), "--out", str(tmp_path), "--precision", "fp16"]) == 2
    assert (
        capsys.readouterr().err.strip()
        == "rankwise: error: --precision must be one of auto, fp32, bf16, int8, not 'fp16'"
    )
    assert not any(tmp_path.iterdir())
