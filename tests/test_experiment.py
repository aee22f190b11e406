"""``rankwise run`` end to end on Cranfield (BM25: seconds): same runs and metrics as the individual commands,
re-runs that skip unchanged stages, resuming after a kill mid-rerank, compare and check."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
import typer

from rankwise.config.experiment import load_config
from rankwise.data import read_run
from rankwise.experiment import load_output, run_experiment, stable_view
from rankwise.experiment.cache import Chunks

CONFIGS = Path(__file__).resolve().parents[1] / "configs"


@pytest.fixture()
def cli(monkeypatch: pytest.MonkeyPatch):
    """``rankwise.cli.main`` with every command this test needs (whether or not build_app lists them yet)."""
    import rankwise.cli as package
    from rankwise.cli import evaluate, experiment, rerank, retrieval

    def build_app() -> typer.Typer:
        app = typer.Typer(pretty_exceptions_enable=False)
        for module in (retrieval, evaluate, rerank, experiment):
            module.register(app)
        return app

    monkeypatch.setattr(package, "build_app", build_app)
    return lambda *args: package.main([str(a) for a in args])


def write_config(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "exp.yaml"
    path.write_text(text, encoding="utf-8")
    return path


HYBRID = """\
name: cran
retrieve:
  bm25: {k: 100}
  again: {kind: bm25, k: 100}
fuse: {method: rrf, k: 60, depth: 100}
evaluate: {metrics: [nDCG@10, RR@10, R@100]}
"""


def quiet(*_: object) -> None:
    return None


def test_run_reproduces_the_individual_commands_exactly(tmp_path, cranfield_dir, cli, tiny_cross_encoder_dir, capsys):
    # The commands a user would type, one by one ...
    assert cli("index", cranfield_dir, "--kind", "bm25", "--out", tmp_path / "idx") == 0
    assert cli("search", "--index", tmp_path / "idx", "--queries", cranfield_dir, "--out", tmp_path / "bm25.trec") == 0
    fused = ["search", "--index", tmp_path / "idx", "--index", tmp_path / "idx", "--fuse", "rrf"]
    assert cli(*fused, "--queries", cranfield_dir, "--out", tmp_path / "fuse.trec") == 0
    rerank = ["rerank", "--run", tmp_path / "fuse.trec", "--corpus", cranfield_dir, "--top-n", "5"]
    assert cli(*rerank, "--model", tiny_cross_encoder_dir, "--out", tmp_path / "rerank.trec") == 0
    # ... and the same pipeline as one experiment.
    config = HYBRID + f"rerank: {{kind: cross-encoder, model: '{tiny_cross_encoder_dir}', top_n: 5}}\n"
    path = write_config(tmp_path, config)
    assert cli("run", "-e", path, "-d", cranfield_dir, "--out", tmp_path / "out", "-q") == 0
    out = tmp_path / "out" / "cran" / "cranfield"
    metrics = json.loads((out / "metrics.json").read_text())
    for stage, reference in (("bm25", "bm25"), ("again", "bm25"), ("fuse", "fuse"), ("rerank", "rerank")):
        assert read_run(out / "runs" / f"{stage}.trec") == read_run(tmp_path / f"{reference}.trec"), stage
        assert list(read_run(out / "runs" / f"{stage}.trec")["1"]) == list(
            read_run(tmp_path / f"{reference}.trec")["1"]
        )
    # identical metrics, through `rankwise eval --json`
    for stage in ("bm25", "fuse", "rerank"):
        run_file = tmp_path / f"{stage}.trec"
        eval_args = ["eval", "--run", run_file, "--qrels", cranfield_dir, "--metrics", "nDCG@10", "RR@10", "R@100"]
        capsys.readouterr()
        assert cli(*eval_args, "--json") == 0
        expected = json.loads(capsys.readouterr().out)
        assert metrics["stages"][stage]["metrics"] == {k: expected[k] for k in ("nDCG@10", "RR@10", "R@100")}
    assert metrics["final_stage"] == "rerank"
    assert metrics["counts"]["judged_queries"] == 225 and metrics["stages"]["rerank"]["docs_per_query"] == 5
    assert (out / "config.yaml").is_file() and load_config(out / "config.yaml").rerank is not None
    assert set(json.loads((out / "per_query.json").read_text())) == {"bm25", "again", "fuse", "rerank"}


def test_rerun_skips_unchanged_stages_and_rewrites_the_same_metrics(tmp_path, cranfield_dir):
    config = load_config(write_config(tmp_path, HYBRID))
    logs: list[str] = []
    [out] = run_experiment(config, [str(cranfield_dir)], tmp_path / "out", show_progress=False, log=logs.append)
    first = (out / "metrics.json").read_bytes()
    assert sum("computed" in line for line in logs) == 3
    logs.clear()
    run_experiment(config, [str(cranfield_dir)], tmp_path / "out", show_progress=False, log=logs.append)
    assert sum("unchanged, reused" in line for line in logs) == 3 and not any("computed" in line for line in logs)
    assert (out / "metrics.json").read_bytes() == first  # cached stages keep their recorded timing too
    # change only the fusion: the retrievers are reused, fusion recomputed, metrics change
    logs.clear()
    changed = load_config(write_config(tmp_path, HYBRID), ["fuse.method=weighted"])
    run_experiment(changed, [str(cranfield_dir)], tmp_path / "out", show_progress=False, log=logs.append)
    assert [line.split(":")[0].strip() for line in logs if "computed" in line] == ["fuse"]
    assert json.loads((out / "metrics.json").read_text())["config_key"] != json.loads(first)["config_key"]
    # a damaged run file is noticed (checksum) and recomputed
    (out / "runs" / "bm25.trec").write_text("1 Q0 1 1 1.0 x\n")
    logs.clear()
    run_experiment(changed, [str(cranfield_dir)], tmp_path / "out", show_progress=False, log=logs.append)
    assert any(line.strip().startswith("bm25: computed") for line in logs)


def test_killed_rerank_resumes_from_its_chunks_and_gives_the_same_metrics(
    tmp_path, cranfield_dir, tiny_cross_encoder_dir, monkeypatch
):
    text = HYBRID + (
        f"rerank: {{kind: cross-encoder, model: '{tiny_cross_encoder_dir}', top_n: 10, checkpoint_every: 50}}\n"
        "data: {max_queries: 120}\n"
    )
    config = load_config(write_config(tmp_path, text))
    [reference] = run_experiment(config, [str(cranfield_dir)], tmp_path / "a", show_progress=False, log=quiet)

    class Killed(BaseException):
        pass

    saved: list[int] = []
    original = Chunks.save

    def save_then_die(self: Chunks, index: int, value: object) -> None:
        if len(saved) == 2:
            raise Killed  # the process dies while reranking the third chunk
        original(self, index, value)
        saved.append(index)

    monkeypatch.setattr(Chunks, "save", save_then_die)
    with pytest.raises(Killed):
        run_experiment(config, [str(cranfield_dir)], tmp_path / "b", show_progress=False, log=quiet)
    out = tmp_path / "b" / "cran" / "cranfield"
    assert not (out / "metrics.json").exists() and not (out / "runs" / "rerank.trec").exists()
    staging = out.with_name("cranfield.partial")  # the unfinished run works beside the output folder
    assert len(list((staging / ".partial").glob("rerank-*/*.json"))) == 2
    monkeypatch.setattr(Chunks, "save", original)
    logs: list[str] = []
    run_experiment(config, [str(cranfield_dir)], tmp_path / "b", show_progress=False, log=logs.append)
    assert sum("unchanged, reused" in line for line in logs) == 3  # bm25, again, fuse were complete
    resumed = json.loads((out / "metrics.json").read_text())
    assert resumed["stages"]["rerank"]["timing"]["chunks_resumed"] == 2
    expected = json.loads((reference / "metrics.json").read_text())
    assert stable_view(resumed) == stable_view(expected)
    assert read_run(out / "runs" / "rerank.trec") == read_run(reference / "runs" / "rerank.trec")
    assert not (out / ".partial").exists() and not staging.exists()


def test_killed_stage_without_chunks_restarts_and_the_last_good_output_stays(tmp_path, cranfield_dir, monkeypatch):
    from rankwise.experiment import stages

    config = load_config(write_config(tmp_path, HYBRID))
    [out] = run_experiment(config, [str(cranfield_dir)], tmp_path / "out", show_progress=False, log=quiet)
    reference = json.loads((out / "metrics.json").read_text())

    def die(*_: object, **__: object) -> None:
        raise KeyboardInterrupt

    changed = load_config(write_config(tmp_path, HYBRID), ["fuse.k=10"])
    monkeypatch.setattr(stages, "fuse", die)
    with pytest.raises(KeyboardInterrupt):
        run_experiment(changed, [str(cranfield_dir)], tmp_path / "out", show_progress=False, log=quiet)
    # the killed run's config and files stay in its staging folder; the last good output is untouched
    assert stable_view(json.loads((out / "metrics.json").read_text())) == stable_view(reference)
    assert load_config(out / "config.yaml") == config
    assert not (out.with_name(out.name + ".partial") / "metrics.json").exists()
    monkeypatch.undo()
    run_experiment(config, [str(cranfield_dir)], tmp_path / "out", show_progress=False, log=quiet)
    assert stable_view(json.loads((out / "metrics.json").read_text())) == stable_view(reference)


CHEAP = ("cranfield-bm25", "mtrag-last-turn", "mtrag-full-history")  # the shipped configs CI can afford


@pytest.fixture(scope="module")
def shipped(tmp_path_factory: pytest.TempPathFactory, data_root: Path) -> Path:
    """The cheap shipped configs, run once with their own data sets (as `rankwise run -e CONFIG` does)."""
    out_root = tmp_path_factory.mktemp("shipped")
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("RANKWISE_DATA", str(data_root))
        for name in CHEAP:
            run_experiment(load_config(CONFIGS / f"{name}.yaml"), [], out_root, show_progress=False, log=quiet)
    return out_root


@pytest.mark.parametrize("name", CHEAP)
def test_shipped_configs_reproduce_their_expected_metrics(shipped, cli, name):
    # the reproduction matrix CI checks: each config against its expected.yaml
    assert cli("check", shipped / name, "--expected", CONFIGS / f"{name}.expected.yaml") == 0


def test_compare_and_check_commands(tmp_path, shipped, cli, capsys):
    folder = shipped / "cranfield-bm25" / "cranfield"
    table = tmp_path / "compare.md"
    args = ["compare", f"{folder}:bm25", f"{folder}:bm25-pyserini", f"{folder}:fuse", "--markdown", table]
    capsys.readouterr()
    assert cli(*args, "-m", "nDCG@10", "--json") == 0
    result = json.loads(capsys.readouterr().out)
    rows = result["nDCG@10"]
    assert [r["system"] for r in rows] == ["cranfield-bm25:bm25", "cranfield-bm25:bm25-pyserini", "cranfield-bm25:fuse"]
    per_query = json.loads((folder / "per_query.json").read_text())
    from rankwise.evaluate.stats import compare_paired

    direct = compare_paired(per_query["bm25"]["nDCG@10"], per_query["bm25-pyserini"]["nDCG@10"])
    assert rows[1]["delta"] == pytest.approx(direct.delta) and rows[1]["queries"] == 225
    assert rows[1]["p_t"] >= direct.p_t and rows[1]["p_permutation"] >= direct.p_permutation  # Holm-corrected
    assert rows[1]["significant"] == (rows[1]["p_permutation"] < 0.05)
    markdown = table.read_text()
    assert "| system | mean | Δ |" in markdown and "cranfield-bm25:bm25-pyserini" in markdown

    # experiment folders expand to one output per data set; systems are paired within each data set
    assert cli("compare", shipped / "mtrag-last-turn", shipped / "mtrag-full-history", "-m", "nDCG@10", "--json") == 0
    printed = capsys.readouterr()
    by_dataset = json.loads(printed.out)
    assert "warning: mtrag-govt: POOLED EVALUATION" in printed.err  # not comparable with full-corpus MT-RAG
    assert "> warning: " in markdown and "225 rows have grade -1" in markdown  # the loader's warnings, once
    domains = ["clapnq", "cloud", "fiqa", "govt"]
    assert sorted(by_dataset) == [f"mtrag-{d}" for d in domains] + [f"mtrag-human-{d}" for d in domains]
    assert [r["system"] for r in by_dataset["mtrag-govt"]["nDCG@10"]] == ["mtrag-last-turn", "mtrag-full-history"]

    wrong = tmp_path / "wrong.yaml"
    wrong.write_text(
        "datasets:\n  cranfield:\n    bm25: {nDCG@10: [0.9, 1.0], R@100: {min: 0.5}}\n    rerank: {nDCG@10: [0, 1]}\n"
    )
    assert cli("check", folder, "--expected", wrong) != 0
    printed = capsys.readouterr()
    assert "FAIL" in printed.out and "ok" in printed.out and "no metric" in printed.out
    assert "2 of 3 expectations" in printed.err

    frozen = tmp_path / "frozen.yaml"
    assert cli("check", shipped / "mtrag-last-turn", "--expected", frozen, "--write", "0.001") == 0
    assert cli("check", shipped / "mtrag-last-turn", "--expected", frozen) == 0
    assert "mtrag-govt" in frozen.read_text()


def test_check_reads_sweep_values_and_rejects_bad_files(tmp_path, cranfield_dir):
    from rankwise.errors import RankwiseError
    from rankwise.experiment.check import check

    config = load_config(write_config(tmp_path, "name: one\nretrieve: {bm25: {}}\n"))
    [out] = run_experiment(config, [str(cranfield_dir)], tmp_path / "out", show_progress=False, log=quiet)
    value = load_output(out).metrics["stages"]["bm25"]["sweep"]["R"]["20"]
    expected = tmp_path / "e.yaml"
    expected.write_text(
        f"experiment: one\ndatasets:\n  cranfield:\n    bm25: {{R@20: {{value: {value}, tolerance: 0}}}}\n"
    )
    assert [o.passed for o in check(out, expected)] == [True]
    expected.write_text("experiment: other\ndatasets:\n  cranfield:\n    bm25: {R@20: [0, 1]}\n")
    assert "expected 'other'" in check(out, expected)[0].problem
    expected.write_text("datasets:\n  cranfield:\n    bm25: {R@20: 0.5}\n")
    with pytest.raises(RankwiseError, match=r"datasets.cranfield.bm25.R@20: expected \[low, high\]"):
        check(out, expected)


def test_dataset_arguments(tmp_path, cranfield_dir, monkeypatch):
    from rankwise.errors import RankwiseError
    from rankwise.experiment.datasets import resolve_dataset

    monkeypatch.setenv("RANKWISE_DATA", str(cranfield_dir.parent))
    assert resolve_dataset("cranfield").path == str(cranfield_dir)
    assert resolve_dataset(str(cranfield_dir)).name == "cranfield"
    mtrag = resolve_dataset("mtrag:clapnq")
    assert (mtrag.source, mtrag.domain, mtrag.name) == ("mtrag", "clapnq", "mtrag-clapnq")
    assert resolve_dataset("scifact").source == "files"
    monkeypatch.setenv("RANKWISE_DATA", str(tmp_path))
    assert resolve_dataset("nfcorpus").source == "beir-download"  # resolved only; nothing is fetched here
    with pytest.raises(RankwiseError, match="-d nosuchset: not a path"):
        resolve_dataset("nosuchset")
    config = load_config(write_config(tmp_path, "name: x\nretrieve: {bm25: {}}\n"))
    with pytest.raises(RankwiseError, match="no data set given"):
        run_experiment(config, [], tmp_path / "out", log=quiet)


def test_missing_tracking_library_names_the_extra(tmp_path, cranfield_dir, monkeypatch):
    import sys

    from rankwise.errors import MissingExtraError

    monkeypatch.setitem(sys.modules, "mlflow", None)  # import fails as if not installed
    cranfield_dir = cranfield_dir.resolve()  # RANKWISE_DATA may be relative (CI: ../shared/datasets)
    monkeypatch.chdir(tmp_path)  # were it not refused, the default store ./mlruns lands here, not in the repo
    config = load_config(write_config(tmp_path, "name: t\nretrieve: {bm25: {}}\ntracking: {backend: mlflow}\n"))
    with pytest.raises(MissingExtraError, match=r"rankwise\[tracking\]"):
        run_experiment(config, [str(cranfield_dir)], tmp_path / "out", show_progress=False, log=quiet)


def test_mlflow_tracking_logs_params_and_metrics(tmp_path, cranfield_dir):
    from mlflow.tracking import MlflowClient

    uri = (tmp_path / "ml").as_uri()
    text = f"name: t\nretrieve: {{bm25: {{}}}}\ntracking: {{backend: mlflow, uri: '{uri}'}}\n"
    [out] = run_experiment(
        load_config(write_config(tmp_path, text)),
        [str(cranfield_dir)],
        tmp_path / "out",
        show_progress=False,
        log=quiet,
    )
    metrics = load_output(out).metrics["stages"]["bm25"]["metrics"]
    client = MlflowClient(tracking_uri=uri)
    [run] = client.search_runs([client.get_experiment_by_name("rankwise").experiment_id])
    assert run.info.status == "FINISHED" and run.info.run_name == f"t/{cranfield_dir.name}"
    assert run.data.metrics["bm25.nDCG_at_10"] == pytest.approx(metrics["nDCG@10"])
    assert run.data.params["retrieve.bm25.k1"] == "1.5"
    assert "metrics.json" in {a.path for a in client.list_artifacts(run.info.run_id)}


def test_outputs_are_refused_until_complete(tmp_path, cranfield_dir):
    from rankwise.errors import RankwiseError

    config = load_config(write_config(tmp_path, "name: x\nretrieve: {bm25: {}}\n"))
    [out] = run_experiment(config, [str(cranfield_dir)], tmp_path / "out", show_progress=False, log=quiet)
    assert load_output(out / "metrics.json").stages == ["bm25"]
    shutil.copytree(out, tmp_path / "copy")
    (tmp_path / "copy" / "metrics.json").unlink()
    with pytest.raises(RankwiseError, match="did not finish"):
        load_output(tmp_path / "copy")


def test_reranker_training_is_cached_by_its_settings(tmp_path, data_root, monkeypatch):
    import rankwise.train.reranker as training
    from rankwise.config.experiment import CrossEncoderConfig
    from rankwise.experiment.stages import rerank_model

    trained: list[object] = []

    def fake_train(config: object) -> dict[str, object]:
        trained.append(config)
        model = Path(config.output_dir) / "model"  # type: ignore[attr-defined]
        model.mkdir(parents=True)
        (model / "config.json").write_text("{}")
        (Path(config.output_dir) / "metrics.json").write_text("{}")  # type: ignore[attr-defined]
        return {"best_dev_ndcg@10": 0.5}

    monkeypatch.setattr(training, "train_reranker", fake_train)
    monkeypatch.setenv("RANKWISE_DATA", str(data_root))
    section = CrossEncoderConfig(model="minilm", train={"data": "scifact", "epochs": 1})
    path, info = rerank_model(section, tmp_path / "models", quiet)
    assert info["train"] == "trained" and info["train_best_dev_ndcg@10"] == 0.5
    assert trained[0].data == str(data_root / "scifact") and trained[0].model == "minilm"  # type: ignore[attr-defined]
    again, info = rerank_model(section, tmp_path / "models", quiet)
    assert again == path and info["train"] == "reused" and len(trained) == 1
    other = CrossEncoderConfig(model="minilm", train={"data": "scifact", "epochs": 2})
    assert rerank_model(other, tmp_path / "models", quiet)[0] != path and len(trained) == 2
    plain = CrossEncoderConfig(model="some/model")
    assert rerank_model(plain, tmp_path / "models", quiet) == ("some/model", {})


def test_rerank_windows_and_auto_interpolation_give_what_the_cli_gives(
    tmp_path, cranfield_dir, cli, tiny_cross_encoder_dir
):
    model = tmp_path / "model"
    shutil.copytree(tiny_cross_encoder_dir, model)
    picked = {"first_stage_weight": 0.5, "picked_on": "a test", "max_length": 32}
    (model / "rankwise_rerank.json").write_text(json.dumps(picked))
    assert cli("index", cranfield_dir, "--kind", "bm25", "--out", tmp_path / "idx") == 0
    assert cli("search", "--index", tmp_path / "idx", "--queries", cranfield_dir, "--out", tmp_path / "bm25.trec") == 0
    windows = ["--windows", "max", "--window-words", "30", "--window-stride", "20", "--interpolate", "auto"]
    rerank = ["rerank", "--run", tmp_path / "bm25.trec", "--corpus", cranfield_dir, "--top-n", "5", *windows]
    assert cli(*rerank, "--model", model, "--max-length", "32", "--out", tmp_path / "rerank.trec") == 0
    stage = "kind: cross-encoder, top_n: 5, max_length: 32, windows: max, window_words: 30, window_stride: 20"
    config = f"name: cran\nretrieve:\n  bm25: {{k: 100}}\nrerank: {{{stage}, model: '{model}', interpolate: auto}}\n"
    path = write_config(tmp_path, config + "evaluate: {metrics: [nDCG@10]}\n")
    assert cli("run", "-e", path, "-d", cranfield_dir, "--out", tmp_path / "out", "-q") == 0
    out = tmp_path / "out" / "cran" / "cranfield"
    assert read_run(out / "runs" / "rerank.trec") == read_run(tmp_path / "rerank.trec")
    timing = json.loads((out / "metrics.json").read_text())["stages"]["rerank"]["timing"]
    # picked without windows (a model from before window scoring): recorded next to the weight, and warned about
    assert (timing["interpolate"], timing["interpolate_picked_with_windows"]) == (0.5, "first")
    with pytest.raises(Exception, match="trained cross-encoder"):
        load_config(
            write_config(tmp_path, "name: x\nretrieve:\n  bm25: {k: 10}\nrerank: {kind: llm, interpolate: auto}\n")
        )


def test_a_rerank_computed_locally_is_reused_when_the_config_moves_it_to_ray(
    tmp_path, cranfield_dir, tiny_cross_encoder_dir
):
    """Where a stage runs is not part of what it computes: a config that only adds `engine: {kind: ray}` reuses the
    local rerank (no Ray cluster is needed, or started: `address: auto` has none to join here)."""
    from rankwise.build import key_params
    from rankwise.config.sections import CrossEncoderConfig

    rerank = f"rerank: {{kind: cross-encoder, model: '{tiny_cross_encoder_dir}', top_n: 5"
    base = HYBRID + "data: {max_queries: 20}\n"
    local = load_config(write_config(tmp_path, base + rerank + "}\n"))
    run_experiment(local, [str(cranfield_dir)], tmp_path / "out", show_progress=False, log=quiet)
    on_ray = load_config(write_config(tmp_path, base + rerank + ", engine: {kind: ray, address: auto}}\n"))
    logs: list[str] = []
    run_experiment(on_ray, [str(cranfield_dir)], tmp_path / "out", show_progress=False, log=logs.append)
    assert sum("unchanged, reused" in line for line in logs) == 4, logs  # bm25, again, fuse and the rerank
    # the engine's batch size is the reranker's own, so it does count
    batched = CrossEncoderConfig(model="minilm", engine={"kind": "ray", "batch_size": 8})
    plain = CrossEncoderConfig(model="minilm")
    assert key_params(batched) == key_params(plain.model_copy(update={"batch_size": 8})) != key_params(plain)
