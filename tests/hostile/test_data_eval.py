"""Issue 20 ("First contact must not break"): data, evaluation and config defects a first user hits.

Each test fails on the code before its fix: unbounded qrels grades, a TREC line missing its grade read as BEIR, a
Cranfield query file missing a record, ``eval --json`` without query counts, the ``eval --help`` tie rule, HotpotQA
answers scored with the SQuAD F1 in ``rankwise run``, paragraph-level joint scores under the official names,
duplicate YAML keys and non-UTF-8 configs, and a ``per_query.json`` of the wrong shape.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from rankwise.cli import main
from rankwise.data import load_dataset, read_qrels
from rankwise.errors import ConfigError, DataError

# --- 1. qrels grades are bounded ------------------------------------------------------------------------------


@pytest.mark.parametrize("grade", ["3000000000", "1e30", "1001", "-11"])
def test_qrels_grade_outside_the_range_is_refused_with_file_and_line(tmp_path: Path, grade: str) -> None:
    path = tmp_path / "q.qrels"
    path.write_text(f"1 0 d1 1\n1 0 d2 {grade}\n")
    with pytest.raises(DataError, match=r"q\.qrels, line 2: relevance grade .* is outside -10\.\.1000"):
        read_qrels(path)


def test_qrels_grades_at_the_bounds_are_read(tmp_path: Path) -> None:
    path = tmp_path / "q.qrels"
    path.write_text("1 0 d1 1000\n1 0 d2 -10\n1 0 d3 2.0\n")
    assert read_qrels(path) == {"1": {"d1": 1000, "d2": -10, "d3": 2}}


def test_eval_with_a_huge_grade_is_a_one_line_error(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    (tmp_path / "q.qrels").write_text("1 0 d1 3000000000\n")
    (tmp_path / "r.trec").write_text("1 Q0 d1 1 2.0 t\n")
    assert main(["eval", "--run", str(tmp_path / "r.trec"), "--qrels", str(tmp_path / "q.qrels")]) == 2
    err = capsys.readouterr().err
    assert "q.qrels, line 1: relevance grade 3000000000 is outside -10..1000" in err
    assert len(err.strip().splitlines()) == 1


# --- 2. the qrels format is fixed per file ----------------------------------------------------------------------


@pytest.mark.parametrize("line", ["1 0 31715818", "1 0 42", "1\t0\t42"])
def test_trec_qrels_line_missing_its_grade_is_not_read_as_beir(tmp_path: Path, line: str) -> None:
    path = tmp_path / "q.qrels"
    path.write_text(f"{line}\n2 0 7 1\n")
    with pytest.raises(DataError) as info:
        read_qrels(path)
    assert info.value.line == 1 and info.value.path == str(path)
    assert "found 3 columns and no 'query-id corpus-id score' header line" in info.value.problem
    assert "is the grade missing?" in info.value.problem


def test_real_beir_and_trec_qrels_still_read(scifact_dir: Path, tmp_path: Path) -> None:
    beir = read_qrels(scifact_dir / "qrels" / "test.tsv")
    assert sum(len(d) for d in beir.values()) == 339
    (tmp_path / "t.qrels").write_text("qid iter docno rel\n1 0 d1 2\n2 Q0 d1 0\n")
    assert read_qrels(tmp_path / "t.qrels") == {"1": {"d1": 2}, "2": {"d1": 0}}


# --- 3. Cranfield query file missing a record -------------------------------------------------------------------


def _cranfield_copy(cranfield_dir: Path, tmp_path: Path) -> Path:
    copy = tmp_path / "cranfield"
    shutil.copytree(cranfield_dir, copy)
    for path in copy.iterdir():
        path.chmod(0o644)
    return copy


def test_cranfield_without_its_first_query_record_is_refused(cranfield_dir: Path, tmp_path: Path) -> None:
    copy = _cranfield_copy(cranfield_dir, tmp_path)
    text = (copy / "cran.qry").read_text()
    second = text.index(".I 002")
    (copy / "cran.qry").write_text(text[second:])  # drop the record .I 001: positions now shift by one
    rows = (copy / "cranqrel").read_text().splitlines()
    first_225 = next(i for i, row in enumerate(rows, start=1) if row.split()[0] == "225")
    with pytest.raises(DataError) as info:
        load_dataset(copy)
    assert info.value.path.endswith("cranqrel") and info.value.line == first_225
    assert "query position 225 is beyond the 224 query records of" in info.value.problem
    assert "cran.qry" in info.value.problem


def test_intact_cranfield_copy_still_loads(cranfield_dir: Path, tmp_path: Path) -> None:
    dataset = load_dataset(_cranfield_copy(cranfield_dir, tmp_path))
    assert dataset.stats()["judged_queries"] == 225


# --- 4, 5. rankwise eval: query counts in --json, the tie rule in --help ----------------------------------------


def _eval_files(tmp_path: Path) -> tuple[Path, Path]:
    qrels = tmp_path / "q.qrels"
    qrels.write_text("1 0 a 1\n2 0 b 1\n3 0 c 1\n")
    run = tmp_path / "r.trec"
    run.write_text("1 Q0 a 1 3.0 t\n1 Q0 x 2 2.0 t\n2 Q0 x 1 3.0 t\n2 Q0 b 2 2.0 t\n9 Q0 a 1 1.0 t\n")
    return run, qrels


def test_eval_json_carries_the_query_counts(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    run, qrels = _eval_files(tmp_path)
    args = ["eval", "--run", str(run), "--qrels", str(qrels), "-m", "RR@10", "--json"]
    capsys.readouterr()
    assert main(args) == 0
    printed = capsys.readouterr()
    result = json.loads(printed.out)
    assert result["RR@10"] == pytest.approx(0.75)
    assert result["queries"] == {"evaluated": 2, "missing_from_run": 1, "unjudged_in_run": 1, "missing": "skip"}
    assert "1 judged queries are not in the run and were not counted" in printed.err
    assert main([*args, "--missing", "zero"]) == 0
    result = json.loads(capsys.readouterr().out)
    assert result["RR@10"] == pytest.approx(0.5)
    assert result["queries"] == {"evaluated": 3, "missing_from_run": 1, "unjudged_in_run": 1, "missing": "zero"}


def test_eval_help_states_the_tie_rule_read_run_follows(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    from rankwise.data import read_run

    capsys.readouterr()
    assert main(["eval", "--help"]) == 0
    shown = " ".join(capsys.readouterr().out.replace("│", " ").split())
    assert "order the run is read" not in shown
    assert "equal scores rank by the run file's rank column" in shown
    # ... which is what read_run does: the tied docs come back in rank-column order, not file order
    (tmp_path / "r.trec").write_text("1 Q0 b 2 1.0 t\n1 Q0 a 1 1.0 t\n")
    assert list(read_run(tmp_path / "r.trec")["1"]) == ["a", "b"]


# --- 6, 7. HotpotQA answer scores ----------------------------------------------------------------------------------


def test_experiment_scores_hotpotqa_answers_with_the_official_yes_no_rule(hotpotqa_file: Path) -> None:
    from rankwise.experiment.answers import gold_for, question_scores

    dataset = load_dataset(hotpotqa_file)
    gold = gold_for(dataset, {"source": "files", "path": str(hotpotqa_file), "format": None})
    qid = "5ae40c465542996836b02c25"  # gold answer "yes"
    assert gold[qid].answers == ("yes",)

    def scores(text: str) -> dict[str, float | None]:
        record = {"id": qid, "passages": [], "text": text, "citations": []}
        return question_scores(record, gold[qid], dataset.corpus)

    assert scores("yes extra")["f1"] == 0.0  # the SQuAD F1 gives 0.667; HotpotQA's script gives 0
    assert scores("Yes.")["em"] == 1.0 and scores("Yes.")["f1"] == 1.0
    other = next(q for q, g in gold.items() if g.answers[0] not in ("yes", "no"))
    answer = gold[other].answers[0]
    record = {"id": other, "passages": [], "text": f"{answer} extra", "citations": []}
    assert 0.0 < question_scores(record, gold[other], dataset.corpus)["f1"] < 1.0  # ordinary answers: token F1


class _Scripted:
    """Answers with the first words of passage [1] and cites it (as ``[1.1]`` with the sentences template)."""

    def __init__(self, template: str | None = None) -> None:
        from rankwise.generate.prompts import load_template

        if template is not None:
            self.template = load_template(template)

    def generate_batch(self, requests):
        from rankwise.generate.citations import build_answer
        from rankwise.generate.prompts import sentence_counts

        sentences = getattr(getattr(self, "template", None), "number_sentences", False)
        out = []
        for r in requests:
            raw = " ".join(r.passages[0].text.split()[:3]) + (" [1.1]" if sentences else " [1]")
            counts = sentence_counts(r.passages) if sentences else None
            out.append(build_answer(raw, [p.id for p in r.passages], sentence_counts=counts))
        return out


@pytest.mark.parametrize(
    ("template", "unit", "joint"), [(None, "paragraph", "joint_paragraph"), ("sentences", "sentence", "joint")]
)
def test_hotpotqa_joint_scores_are_named_for_their_support_unit(
    hotpotqa_file: Path, tmp_path: Path, template: str | None, unit: str, joint: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    from rankwise.config.sections import BM25Config, LocalGenerateConfig
    from rankwise.experiment import answers
    from rankwise.experiment.rag import hotpotqa_experiment, run_rag

    monkeypatch.setattr(answers, "build_generator", lambda config, progress: _Scripted(template))
    parts = {
        "retrieve": {"bm25": BM25Config()},
        "generate": LocalGenerateConfig(top_k=3, template=template or "default"),
    }
    config, sources = hotpotqa_experiment(hotpotqa_file, "joint", parts, limit=3)
    summary, [folder] = run_rag("hotpotqa", config, sources, tmp_path, log=str, show_progress=False)
    saved = json.loads((folder / "metrics.json").read_text())
    for qa in (summary["qa"], saved["stages"]["generate"]["metrics"]):
        assert f"{joint}_em" in qa and f"{joint}_f1" in qa
        other = "joint" if joint == "joint_paragraph" else "joint_paragraph"
        assert f"{other}_em" not in qa and f"{other}_f1" not in qa
    assert summary["qa"]["support_unit"] == unit
    per_question = json.loads((folder / "per_query.json").read_text())["generate"]
    assert f"{joint}_f1" in per_question and f"{joint}_precision" in per_question


# --- 8. YAML configs: duplicate keys, bytes that are not UTF-8 ---------------------------------------------------


def test_duplicate_key_in_an_experiment_config_names_both_lines(tmp_path: Path) -> None:
    from rankwise.config.experiment import load_config

    path = tmp_path / "exp.yaml"
    path.write_text("name: a\nretrieve:\n  bm25: {k: 100}\nname: b\n")
    with pytest.raises(ConfigError, match=r"exp\.yaml, line 4: duplicate key 'name' \(first on line 1\)"):
        load_config(path)
    path.write_text("name: a\nretrieve:\n  bm25:\n    k: 100\n    k: 10\n")
    with pytest.raises(ConfigError, match=r"exp\.yaml, line 5: duplicate key 'k' \(first on line 4\)"):
        load_config(path)


def test_duplicate_key_in_a_training_config_names_both_lines(tmp_path: Path) -> None:
    from rankwise.config.yaml_config import read_mapping

    path = tmp_path / "train.yaml"
    path.write_text("max_steps: 10\nblend:\n  size: 800\n  seed: 0\n  size: 100\n")
    with pytest.raises(ConfigError, match=r"train\.yaml, line 5: duplicate key 'size' \(first on line 3\)"):
        read_mapping(path)


def test_the_loader_keeps_safe_load_semantics() -> None:
    import yaml

    from rankwise.config.yaml_keys import load_yaml

    text = "base: &b {a: 1, b: 2}\nmore:\n  <<: *b\n  b: 3\nlist: [1, {x: 1}]\nflag: yes\n"
    assert load_yaml(text) == yaml.safe_load(text) == {
        "base": {"a": 1, "b": 2}, "more": {"a": 1, "b": 3}, "list": [1, {"x": 1}], "flag": True
    }  # fmt: skip
    with pytest.raises(yaml.YAMLError):
        load_yaml("x: !!python/object/apply:os.system ['echo hacked']\n")


@pytest.mark.parametrize("reader", ["experiment", "training"])
def test_config_with_a_non_utf8_byte_is_a_one_line_error(tmp_path: Path, reader: str) -> None:
    from rankwise.config.experiment import load_config
    from rankwise.config.yaml_config import read_mapping

    path = tmp_path / "c.yaml"
    path.write_bytes(b"name: a\nretrieve: {bm25: {}}\ndescription: caf\xff\n")
    with pytest.raises(ConfigError) as info:
        (load_config if reader == "experiment" else read_mapping)(path)
    message = str(info.value)
    assert message.startswith(f"{path}, line 3: not valid UTF-8 (byte ff)") and "\n" not in message


# --- 9. compare / report on a per_query.json of the wrong shape --------------------------------------------------


@pytest.fixture(scope="module")
def cranfield_output(cranfield_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    from rankwise.config.experiment import load_config
    from rankwise.experiment import run_experiment

    root = tmp_path_factory.mktemp("exp")
    config = root / "exp.yaml"
    config.write_text("name: cran\nretrieve:\n  bm25: {k: 100}\n  again: {kind: bm25, k: 100}\nfuse: {method: rrf}\n")
    [out] = run_experiment(load_config(config), [str(cranfield_dir)], root / "out", show_progress=False, log=print)
    return out


@pytest.mark.parametrize("content", ["[]", '{"bm25": [1, 2]}', '{"bm25": {"nDCG@10": [0.5]}}'])
def test_compare_and_report_refuse_a_malformed_per_query_file(
    cranfield_output: Path, tmp_path: Path, capsys: pytest.CaptureFixture, content: str
) -> None:
    out = tmp_path / "cranfield"
    shutil.copytree(cranfield_output, out)
    (out / "per_query.json").write_text(content)
    capsys.readouterr()
    assert main(["compare", f"{out}:bm25", f"{out}:fuse", "-m", "nDCG@10", "--json"]) == 2
    err = capsys.readouterr().err
    assert f"{out / 'per_query.json'}: " in err and "re-run the experiment" in err
    assert main(["report", str(out), "--html", str(tmp_path / "r.html")]) == 2
    assert f"{out / 'per_query.json'}: " in capsys.readouterr().err
    assert not (tmp_path / "r.html").exists()


def test_compare_still_reads_a_good_per_query_file(cranfield_output: Path, capsys: pytest.CaptureFixture) -> None:
    capsys.readouterr()
    assert main(["compare", f"{cranfield_output}:bm25", f"{cranfield_output}:fuse", "-m", "nDCG@10", "--json"]) == 0
    rows = json.loads(capsys.readouterr().out)["nDCG@10"]
    assert rows[1]["queries"] == 225
