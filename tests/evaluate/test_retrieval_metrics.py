"""IR metrics: hand-computed values on a toy run, agreement with pytrec_eval on a real SciFact BM25 run,
and the ``rankwise eval`` command on a small TREC run against the real SciFact qrels."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest
import typer
from typer.testing import CliRunner

from rankwise.cli import evaluate as eval_cli
from rankwise.errors import RankwiseError
from rankwise.evaluate import evaluate, evaluate_per_query, parse_measures

# q1 ranks d1 (grade 2), d2 (unjudged), d3 (grade 1), d4 (unjudged); d5 is judged non-relevant.
# q2 ranks e1, e2 (grade 1), e3.
QRELS = {"q1": {"d1": 2, "d3": 1, "d5": 0}, "q2": {"e2": 1}}
RUN = {
    "q1": {"d1": 0.9, "d2": 0.8, "d3": 0.7, "d4": 0.6},
    "q2": {"e1": 3.0, "e2": 2.0, "e3": 1.0},
}
LOG2_3 = math.log2(3)
# nDCG@3 (gain = grade, discount log2(rank + 1)):
#   q1: DCG = 2/log2(2) + 0 + 1/log2(4) = 2.5; ideal = 2/1 + 1/log2(3) = 2.63093 -> 0.950234
#   q2: DCG = 1/log2(3); ideal = 1 -> 0.630930
NDCG3_Q1 = 2.5 / (2 + 1 / LOG2_3)
NDCG3_Q2 = 1 / LOG2_3


def test_toy_run_per_query_by_hand() -> None:
    per_query = evaluate_per_query(RUN, QRELS, ["nDCG@3", "RR", "P@3", "R@3", "R@1", "AP", "RR@1"])
    assert per_query["nDCG@3"] == pytest.approx({"q1": NDCG3_Q1, "q2": NDCG3_Q2}, abs=1e-9)
    assert per_query["RR"] == pytest.approx({"q1": 1.0, "q2": 0.5})  # first relevant at rank 1 / rank 2
    assert per_query["P@3"] == pytest.approx({"q1": 2 / 3, "q2": 1 / 3})
    assert per_query["R@3"] == pytest.approx({"q1": 1.0, "q2": 1.0})  # d5 (grade 0) is not relevant
    assert per_query["R@1"] == pytest.approx({"q1": 0.5, "q2": 0.0})
    # AP: q1 relevant at ranks 1 and 3 -> (1/1 + 2/3) / 2; q2 at rank 2 -> 1/2
    assert per_query["AP"] == pytest.approx({"q1": (1 + 2 / 3) / 2, "q2": 0.5})
    assert per_query["RR@1"] == pytest.approx({"q1": 1.0, "q2": 0.0})


def test_toy_run_means_by_hand_keyed_as_given() -> None:
    means = evaluate(RUN, QRELS, ["ndcg@3", "MRR", "P@3", "Recall@3", "MAP"])
    assert list(means) == ["ndcg@3", "MRR", "P@3", "Recall@3", "MAP"]
    assert means["ndcg@3"] == pytest.approx((NDCG3_Q1 + NDCG3_Q2) / 2)  # 0.790582
    assert means["MRR"] == pytest.approx(0.75)
    assert means["P@3"] == pytest.approx(0.5)
    assert means["Recall@3"] == pytest.approx(1.0)
    assert means["MAP"] == pytest.approx(((1 + 2 / 3) / 2 + 0.5) / 2)  # 0.666667


def test_which_queries_count() -> None:
    qrels = {**QRELS, "q3": {"x": 1}, "q4": {"y": 1}}
    run = {**RUN, "q4": {}, "q9": {"z": 1.0}}  # q3 missing, q4 answered nothing, q9 unjudged
    skip = evaluate_per_query(run, qrels, ["RR"])["RR"]
    assert skip == {"q1": 1.0, "q2": 0.5, "q4": 0.0}  # run ∩ qrels; empty ranking counts as 0
    assert evaluate(run, qrels, ["RR"])["RR"] == pytest.approx(1.5 / 3)
    zero = evaluate_per_query(run, qrels, ["RR"], missing="zero")["RR"]
    assert zero == {"q1": 1.0, "q2": 0.5, "q3": 0.0, "q4": 0.0}
    assert evaluate(run, qrels, ["RR"], missing="zero")["RR"] == pytest.approx(1.5 / 4)
    with pytest.raises(RankwiseError, match="missing must be"):
        evaluate(run, qrels, ["RR"], missing="drop")  # type: ignore[arg-type]


def test_ties_follow_dict_order() -> None:
    qrels = {"q": {"a": 1}}
    assert evaluate({"q": {"b": 1.0, "a": 1.0}}, qrels, ["RR"]) == {"RR": 0.5}
    assert evaluate({"q": {"a": 1.0, "b": 1.0}}, qrels, ["RR"]) == {"RR": 1.0}
    # the score still decides first: dict order only matters between equal scores
    assert evaluate({"q": {"b": 0.5, "a": 1.0}}, qrels, ["RR@10"]) == {"RR@10": 1.0}


def test_errors() -> None:
    with pytest.raises(RankwiseError, match=r"unknown metric 'foo@3'.*nDCG@10"):
        parse_measures(["nDCG@10", "foo@3"])
    with pytest.raises(RankwiseError, match=r"cannot parse metric 'nDCG@x'"):
        parse_measures(["nDCG@x"])
    with pytest.raises(RankwiseError, match="no metrics given"):
        parse_measures([])
    with pytest.raises(RankwiseError, match="share 0"):
        evaluate({"other": {"d": 1.0}}, QRELS, ["RR"])
    with pytest.raises(RankwiseError, match="not a finite number"):
        evaluate({"q1": {"d1": float("nan")}}, QRELS, ["RR"])


def test_parse_aliases() -> None:
    parsed = parse_measures(["nDCG@10", "ndcg@10", "MRR@10", "Recall@100", "AP@100", "P@10", "MAP"])
    assert [str(m) for m in parsed.values()] == [
        "nDCG@10",
        "nDCG@10",
        "RR@10",
        "R@100",
        "AP@100",
        "P@10",
        "AP",
    ]


# --- agreement with pytrec_eval on a real BM25 run over SciFact -------------------------------------------


def _read_qrels(path: Path) -> dict[str, dict[str, int]]:
    qrels: dict[str, dict[str, int]] = {}
    for line in path.read_text(encoding="utf-8").splitlines()[1:]:  # header: query-id corpus-id score
        qid, doc_id, grade = line.split("\t")
        qrels.setdefault(qid, {})[doc_id] = int(grade)
    return qrels


@pytest.fixture(scope="module")
def scifact_bm25(scifact_dir: Path) -> tuple[dict[str, dict[str, float]], dict[str, dict[str, int]]]:
    """BM25 (bm25s, k=100) for the 300 SciFact test queries; ~1 s. Each ranking in trec_eval's order."""
    import bm25s

    with (scifact_dir / "corpus.jsonl").open(encoding="utf-8") as f:
        docs = [json.loads(line) for line in f]
    with (scifact_dir / "queries.jsonl").open(encoding="utf-8") as f:
        queries = {row["_id"]: row["text"] for row in map(json.loads, f)}
    qrels = _read_qrels(scifact_dir / "qrels" / "test.tsv")
    qids = list(qrels)
    retriever = bm25s.BM25()
    texts = [f"{d['title']} {d['text']}" for d in docs]
    retriever.index(bm25s.tokenize(texts, stopwords="en", show_progress=False), show_progress=False)
    tokens = bm25s.tokenize([queries[q] for q in qids], stopwords="en", return_ids=False, show_progress=False)
    results, scores = retriever.retrieve(tokens, k=100, show_progress=False, n_threads=1)
    run = {}
    for row, qid in enumerate(qids):
        pairs = [(docs[i]["_id"], float(s)) for i, s in zip(results[row], scores[row], strict=True)]
        # trec_eval breaks score ties by doc id, descending: give the dict that order so both agree
        pairs.sort(key=lambda p: p[0], reverse=True)
        pairs.sort(key=lambda p: -p[1])
        run[qid] = dict(pairs)
    return run, qrels


def test_agrees_with_pytrec_eval_on_scifact_bm25(scifact_bm25) -> None:
    import pytrec_eval

    run, qrels = scifact_bm25
    assert len(run) == 300
    assert sum(len(set(d.values())) < len(d) for d in run.values()) > 10  # the run has tied scores
    # leave 20 queries out of the run: both sides then average over the 280 left (run ∩ qrels)
    run = {qid: docs for i, (qid, docs) in enumerate(run.items()) if i >= 20}

    official = pytrec_eval.RelevanceEvaluator(
        qrels, {"ndcg_cut.10", "recall.100", "map_cut.100", "P.10", "map"}
    ).evaluate(run)
    top10 = {qid: dict(list(docs.items())[:10]) for qid, docs in run.items()}
    official_rr10 = pytrec_eval.RelevanceEvaluator(qrels, {"recip_rank"}).evaluate(top10)
    assert len(official) == 280

    names = {
        "nDCG@10": "ndcg_cut_10",
        "R@100": "recall_100",
        "AP@100": "map_cut_100",
        "P@10": "P_10",
        "AP": "map",
    }
    ours = evaluate_per_query(run, qrels, [*names, "RR@10"])
    means = evaluate(run, qrels, [*names, "RR@10"])
    for name, trec_name in names.items():
        assert set(ours[name]) == set(official)
        for qid, values in official.items():
            assert ours[name][qid] == pytest.approx(values[trec_name], abs=1e-6), (name, qid)
        expected_mean = sum(v[trec_name] for v in official.values()) / len(official)
        assert means[name] == pytest.approx(expected_mean, abs=1e-6)
    for qid, values in official_rr10.items():
        assert ours["RR@10"][qid] == pytest.approx(values["recip_rank"], abs=1e-6)
    # bm25s without stemming on SciFact lands near BEIR's 0.665
    assert 0.6 < means["nDCG@10"] < 0.72


# --- rankwise eval ------------------------------------------------------------------------------------------

# SciFact test qrels: query 1 -> 31715818, query 3 -> 14717500, query 5 -> 13734012 (one relevant doc each).
RUN_LINES = [
    "1 Q0 31715818 1 3.0 t",  # q1: relevant doc at rank 1 -> RR 1, nDCG@10 1, R@100 1
    "1 Q0 100 2 2.0 t",
    "3 Q0 200 1 5.0 t",  # q3: relevant doc at rank 2 -> RR 1/2, nDCG@10 1/log2(3), R@100 1
    "3 Q0 14717500 2 4.0 t",
    "5 Q0 300 1 1.0 t",  # q5: nothing relevant -> 0, 0, 0
    "99999 Q0 400 1 1.0 t",  # not judged in SciFact test: ignored
]
NDCG = (1 + 1 / math.log2(3)) / 3  # 0.543643
RR = (1 + 0.5) / 3  # 0.5
RECALL = 2 / 3


@pytest.fixture
def app() -> typer.Typer:
    app = typer.Typer()
    eval_cli.register(app)

    @app.callback()
    def main() -> None:  # keeps "eval" a named subcommand, as in the real app
        pass

    return app


@pytest.fixture
def run_file(tmp_path: Path) -> Path:
    path = tmp_path / "run.trec"
    path.write_text("\n".join(RUN_LINES) + "\n", encoding="utf-8")
    return path


def _json(app: typer.Typer, *args: str) -> dict:
    result = CliRunner().invoke(app, ["eval", *args, "--json"])
    assert result.exit_code == 0, result.output
    return json.loads(result.stdout)


def test_json_output_space_separated_metrics(app, run_file: Path, scifact_dir: Path) -> None:
    qrels = scifact_dir / "qrels" / "test.tsv"
    out = _json(app, "--run", str(run_file), "--qrels", str(qrels), "--metrics", "nDCG@10", "RR@10", "R@100")
    assert list(out) == ["nDCG@10", "RR@10", "R@100", "queries", "per_query"]
    assert out["nDCG@10"] == pytest.approx(NDCG)
    assert out["RR@10"] == pytest.approx(RR)
    assert out["R@100"] == pytest.approx(RECALL)
    assert out["per_query"]["RR@10"] == {"1": 1.0, "3": 0.5, "5": 0.0}
    assert out["per_query"]["nDCG@10"]["3"] == pytest.approx(1 / math.log2(3))


def test_metric_forms_agree_and_dataset_dir_works(app, run_file: Path, scifact_dir: Path) -> None:
    qrels = str(scifact_dir / "qrels" / "test.tsv")
    base = ["--run", str(run_file), "--qrels", qrels]
    spaced = _json(app, *base, "--metrics", "nDCG@10", "RR@10")
    repeated = _json(app, *base, "--metrics", "nDCG@10", "--metrics", "RR@10")
    commas = _json(app, *base, "--metrics", "nDCG@10,RR@10")
    assert spaced == repeated == commas
    from_dir = _json(app, "--run", str(run_file), "--qrels", str(scifact_dir), "--split", "test", "-m", "nDCG@10,RR@10")
    assert from_dir == spaced
    default = _json(app, *base)  # no metrics: nDCG@10, RR@10, R@100
    assert list(default) == ["nDCG@10", "RR@10", "R@100", "queries", "per_query"]


def test_missing_zero_counts_every_judged_query(app, run_file: Path, scifact_dir: Path) -> None:
    qrels = str(scifact_dir / "qrels" / "test.tsv")
    out = _json(app, "--run", str(run_file), "--qrels", qrels, "-m", "RR@10", "--missing", "zero")
    assert out["RR@10"] == pytest.approx(1.5 / 300)  # 300 judged test queries
    assert len(out["per_query"]["RR@10"]) == 300


def test_table_output(app, run_file: Path, scifact_dir: Path) -> None:
    qrels = str(scifact_dir / "qrels" / "test.tsv")
    result = CliRunner().invoke(app, ["eval", "--run", str(run_file), "--qrels", qrels, "-m", "nDCG@10,R@100"])
    assert result.exit_code == 0, result.output
    assert "run.trec (3 queries)" in result.stdout
    assert "nDCG@10" in result.stdout and "0.5436" in result.stdout
    assert "0.6667" in result.stdout
    assert "297 judged queries are not in the run" in result.stderr


def test_unknown_metric_is_a_rankwise_error(app, run_file: Path, scifact_dir: Path) -> None:
    qrels = str(scifact_dir / "qrels" / "test.tsv")
    result = CliRunner().invoke(app, ["eval", "--run", str(run_file), "--qrels", qrels, "-m", "nDGC@10"])
    assert result.exit_code != 0
    assert isinstance(result.exception, RankwiseError)
    assert "unknown metric 'nDGC@10'" in str(result.exception)


def test_split_metrics() -> None:
    assert eval_cli.split_metrics(["nDCG@10,RR@10", " R@100 ", ""]) == ["nDCG@10", "RR@10", "R@100"]
    assert eval_cli.split_metrics(["nDCG(gains={0:0,1:1})@10,AP"]) == ["nDCG(gains={0:0,1:1})@10", "AP"]
