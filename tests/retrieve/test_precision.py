"""Precision of the neural stages (issue 22): every precision loads and scores within tolerance of fp32 (tiny
models built from configs); ``auto`` never picks emulated bf16; int8 exports are cached, reused and rebuilt when
the model changes; dense indexes record their precision and search with queries encoded the same way."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from precision_texts import QUESTIONS, TEXTS
from scipy.stats import spearmanr

from rankwise.config import precision as precision_module
from rankwise.config.precision import choose_precision, native_bf16
from rankwise.errors import IndexStoreError, MissingExtraError, RankwiseError
from rankwise.types import Document, Query

pytestmark = pytest.mark.usefixtures("one_thread")


# ------------------------------------------------------------------------------------------------ auto


def test_auto_never_picks_emulated_bf16(pretend_cpu) -> None:
    pretend_cpu(torch_says=False, flags=("avx2",))  # an AVX2-only EPYC: oneDNN would emulate bf16
    assert choose_precision("auto", "dense").precision == "fp32"
    pretend_cpu(torch_says=True, flags=("avx2", "avx512f"))  # AVX-512 without BF16: still emulated
    choice = choose_precision("auto", "cross-encoder")
    assert choice.precision == "fp32" and "avx512_bf16" in choice.reason
    assert native_bf16("cpu")[0] is False


def test_auto_picks_bf16_where_native_and_records_why(caplog, pretend_cpu) -> None:
    pretend_cpu(torch_says=True, flags=("avx2", "avx512f", "avx512_vnni", "avx512_bf16"))
    with caplog.at_level("INFO", logger="rankwise.config.precision"):
        choice = choose_precision("auto", "dense")
    assert choice.precision == "bf16"
    assert "dense: precision bf16 (auto: this CPU runs bf16 natively (avx512_bf16))" in caplog.text
    record = choice.record()
    assert record["requested"] == "auto" and record["cpu_flags"] == ["avx2", "avx512f", "avx512_vnni", "avx512_bf16"]


def test_explicit_precisions_are_kept_and_bad_ones_refused(
    monkeypatch: pytest.MonkeyPatch, caplog, pretend_cpu
) -> None:
    pretend_cpu(torch_says=False, flags=("avx2",))
    with caplog.at_level("WARNING", logger="rankwise.config.precision"):
        assert choose_precision("bf16", "dense").precision == "bf16"  # as asked, with a warning
    assert "emulated" in caplog.text
    assert choose_precision("fp32", "dense").precision == "fp32"
    with pytest.raises(RankwiseError, match="precision must be one of auto, fp32, bf16, int8, not 'fp16'"):
        choose_precision("fp16", "dense")
    with pytest.raises(RankwiseError, match="CPU only"):
        choose_precision("int8", "dense", "cuda:0")


def test_int8_without_onnxruntime_names_the_extra(monkeypatch: pytest.MonkeyPatch) -> None:
    real = precision_module.importlib.util.find_spec
    monkeypatch.setattr(
        precision_module.importlib.util, "find_spec", lambda name: None if name == "onnxruntime" else real(name)
    )
    with pytest.raises(MissingExtraError, match=r"rankwise\[onnx\]"):
        choose_precision("int8", "cross-encoder")


# ----------------------------------------------------------------------------------------- cross-encoder


def _pairs() -> list[tuple[str, str]]:
    return [(question, text) for question in QUESTIONS for text in TEXTS]


@pytest.mark.parametrize("precision", ["bf16", "int8"])
def test_cross_encoder_scores_within_tolerance_of_fp32(minilm_ce, precision: str, tmp_path: Path) -> None:
    import torch

    from rankwise.rerank.cross_encoder import CPU_TOKEN_BUDGET_REDUCED, CrossEncoderReranker

    reference = np.asarray(CrossEncoderReranker(minilm_ce, show_progress=False).score(_pairs()))
    options = {"precision": precision, "int8_cache": tmp_path, "runtime": "torch"}  # OpenVINO: test_openvino.py
    reranker = CrossEncoderReranker(minilm_ce, show_progress=False, **options)
    assert reranker.precision == precision
    assert reranker.max_tokens == CPU_TOKEN_BUDGET_REDUCED  # bf16/int8 on a CPU run faster in larger batches
    scores = np.asarray(reranker.score(_pairs()))
    # measured: bf16 0.008 of the score range and Spearman 1.000; int8 0.09 and 0.969 (an untrained head)
    assert np.max(np.abs(scores - reference)) < {"bf16": 0.05, "int8": 0.25}[precision] * np.ptp(reference)
    assert spearmanr(scores, reference)[0] > {"bf16": 0.99, "int8": 0.95}[precision]
    assert next(minilm_ce.model.parameters()).dtype == torch.float32  # the model passed in is left alone


def test_a_bf16_cross_encoder_keeps_its_head_in_fp32(minilm_ce) -> None:
    # A bf16 head returned logits in steps of 1/64 near 2.5: on the trained SciFact model 400 BM25 pairs got only
    # 194 distinct scores, and tied documents fell back to the first stage's order.
    import torch

    from rankwise.rerank.cross_encoder import CrossEncoderReranker

    reranker = CrossEncoderReranker(minilm_ce, show_progress=False, precision="bf16", runtime="torch")
    model = reranker.model.model
    assert model.bert.encoder.layer[0].attention.self.query.weight.dtype == torch.bfloat16
    assert model.bert.pooler.dense.weight.dtype == torch.float32
    assert model.classifier.weight.dtype == torch.float32
    scores = reranker.score(_pairs())
    assert len(set(scores)) == len(_pairs())


def test_int8_export_is_reused_and_rebuilt_when_the_model_changes(tiny_cross_encoder_dir: Path, tmp_path: Path) -> None:
    import shutil

    import torch

    from rankwise.rerank.cross_encoder import CrossEncoderReranker, load_cross_encoder

    model_dir = tmp_path / "model"
    shutil.copytree(tiny_cross_encoder_dir, model_dir)
    first = CrossEncoderReranker(str(model_dir), precision="int8", show_progress=False)
    cache = tmp_path / "model.rankwise-int8"  # beside the model folder, not inside it
    entries = sorted(cache.iterdir())
    assert len(entries) == 1 and first._session.path.parent == entries[0]
    assert sorted(p.name for p in entries[0].iterdir()) == ["info.json", "model.int8.onnx"]
    assert not any(p.name.startswith(".") or p.suffix in (".pkl", ".pt") for p in model_dir.rglob("*"))
    stamp = first._session.path.stat().st_mtime_ns
    info = json.loads((entries[0] / "info.json").read_text())
    assert info["recipe"] and info["versions"]["onnxruntime"] != "-" and len(info["weights_sha256"]) == 64

    again = CrossEncoderReranker(str(model_dir), precision="int8", show_progress=False)
    assert again._session.path == first._session.path and again._session.path.stat().st_mtime_ns == stamp  # reused
    assert again.score(_pairs()) == first.score(_pairs())

    changed = load_cross_encoder(str(model_dir))  # "retrain": new weights saved in place
    with torch.no_grad():
        changed.model.classifier.weight.mul_(-1.0)
    changed.save_pretrained(str(model_dir))
    third = CrossEncoderReranker(str(model_dir), precision="int8", show_progress=False)
    assert third._session.path != first._session.path and len(list(cache.iterdir())) == 2
    fp32 = np.asarray(CrossEncoderReranker(str(model_dir), show_progress=False).score(_pairs()))
    new, stale = np.asarray(third.score(_pairs())), np.asarray(first.score(_pairs()))
    assert np.max(np.abs(new - fp32)) < 0.2 * np.max(np.abs(stale - fp32))  # the new weights, not the stale export

    with third._session.path.open("ab") as handle:  # a damaged cache entry is rebuilt, not loaded
        handle.write(b"junk")
    fourth = CrossEncoderReranker(str(model_dir), precision="int8", show_progress=False)
    assert fourth._session.path == third._session.path and fourth.score(_pairs()) == third.score(_pairs())


# ------------------------------------------------------------------------------------------------- dense


def _corpus() -> dict[str, Document]:
    return {f"d{i}": Document(f"d{i}", text, "") for i, text in enumerate(TEXTS)}


@pytest.mark.parametrize("precision", ["bf16", "int8"])
def test_dense_vectors_within_tolerance_of_fp32(tiny_encoder: str, precision: str, tmp_path: Path) -> None:
    from rankwise.retrieve.dense import DenseRetriever

    reference = DenseRetriever(tiny_encoder, show_progress=False).encode(TEXTS)
    retriever = DenseRetriever(tiny_encoder, show_progress=False, precision=precision, int8_cache=tmp_path)
    vectors = retriever.encode(TEXTS)
    assert vectors.dtype == np.float32 and vectors.shape == reference.shape
    assert np.allclose(np.linalg.norm(vectors, axis=1), 1.0, atol=1e-5)  # normalised in float32
    assert float(np.min(np.sum(vectors * reference, axis=1))) > 0.995


def test_dense_index_records_its_precision_and_searches_the_same_way(
    tiny_encoder: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, pretend_cpu
) -> None:
    from rankwise.retrieve.dense import DenseRetriever

    pretend_cpu(torch_says=True, flags=("avx2", "avx512_bf16"))
    retriever = DenseRetriever(tiny_encoder, show_progress=False, precision="auto")
    assert retriever.precision == "bf16"
    retriever.index(_corpus())
    queries = {f"q{i}": Query(f"q{i}", text) for i, text in enumerate(QUESTIONS)}
    expected = retriever.search(queries, k=3)
    retriever.save(tmp_path / "idx")
    params = json.loads((tmp_path / "idx" / "manifest.json").read_text())["params"]
    assert params["precision"] == "bf16"
    assert (
        params["precision_choice"]["requested"] == "auto" and "avx512_bf16" in params["precision_choice"]["cpu_flags"]
    )

    pretend_cpu(torch_says=False, flags=("avx2",))  # searched elsewhere: still bf16, like the documents
    loaded = DenseRetriever.load(tmp_path / "idx", show_progress=False)
    assert loaded.precision == "bf16" and loaded.search(queries, k=3) == expected
    assert DenseRetriever.load(tmp_path / "idx", precision="auto").precision == "bf16"
    with pytest.raises(IndexStoreError, match=r"params\.precision' is 'bf16'.*not in fp32"):
        DenseRetriever.load(tmp_path / "idx", precision="fp32")


def test_an_encoding_resumed_in_another_precision_is_refused(tiny_encoder: str, tmp_path: Path) -> None:
    from rankwise.retrieve.dense import DenseRetriever

    DenseRetriever(tiny_encoder, show_progress=False).encode_corpus(_corpus(), tmp_path)
    plan = tmp_path / "encoding.json"
    assert json.loads(plan.read_text())["precision"] == "fp32"
    with pytest.raises(IndexStoreError, match="precision='fp32', not 'bf16'"):
        DenseRetriever(tiny_encoder, show_progress=False, precision="bf16", runtime="torch").encode_corpus(
            _corpus(), tmp_path
        )
    old = {k: v for k, v in json.loads(plan.read_text()).items() if k != "precision"}  # written before the key
    plan.write_text(json.dumps(old))
    assert DenseRetriever(tiny_encoder, show_progress=False).encode_corpus(_corpus(), tmp_path).reused_shards == 1


def test_an_engine_worker_loads_the_encoder_in_the_index_precision(tiny_encoder: str, tmp_path: Path) -> None:
    """What a Ray actor receives is a picklable loader, and it loads the int8 encoder, not an fp32 one."""
    import pickle

    from rankwise.retrieve.dense import DenseRetriever
    from rankwise.retrieve.encoders import Int8SentenceEncoder

    retriever = DenseRetriever(tiny_encoder, precision="int8", int8_cache=tmp_path / "int8", show_progress=False)
    loader = pickle.loads(pickle.dumps(retriever._loader()))
    encoder = loader()
    assert isinstance(encoder, Int8SentenceEncoder)
    expected = retriever.encoder.encode(["a cat"], normalize_embeddings=True)
    np.testing.assert_allclose(encoder.encode(["a cat"], normalize_embeddings=True), expected, atol=1e-6)


# --------------------------------------------------------------------------------------- config and CLI


def test_sections_carry_precision_to_the_built_stages(tiny_cross_encoder_dir: Path, monkeypatch, pretend_cpu) -> None:
    from pydantic import ValidationError

    from rankwise.build import build_reranker, build_retriever
    from rankwise.config.precision import llm_dtype
    from rankwise.config.sections import CrossEncoderConfig, DenseConfig, LLMRerankConfig, LocalGenerateConfig

    pretend_cpu(torch_says=False, flags=("avx2",))
    assert DenseConfig().precision == "fp32" and CrossEncoderConfig().precision == "fp32"
    assert build_retriever(DenseConfig(precision="auto"), show_progress=False).precision == "fp32"
    section = CrossEncoderConfig(model=str(tiny_cross_encoder_dir), precision="bf16")
    assert build_reranker(section, show_progress=False).precision == "bf16"
    assert llm_dtype(LLMRerankConfig(dtype="float16"), "llm") == "float16"  # no precision: dtype as before
    assert llm_dtype(LLMRerankConfig(precision="bf16"), "llm") == "bfloat16"
    assert llm_dtype(LocalGenerateConfig(precision="auto"), "generator") == "float32"  # no native bf16 here
    with pytest.raises(ValidationError, match="precision"):
        LLMRerankConfig(precision="int8")
    with pytest.raises(ValidationError, match="precision"):
        DenseConfig(precision="fp16")


def test_cli_index_precision_is_recorded_and_refused_where_it_does_not_apply(
    tiny_encoder: str, tmp_path: Path, capsys
) -> None:
    from rankwise.cli import main

    data = tmp_path / "data"
    (data / "qrels").mkdir(parents=True)
    (data / "corpus.jsonl").write_text(
        "".join(json.dumps({"_id": f"d{i}", "text": t}) + "\n" for i, t in enumerate(TEXTS))
    )
    (data / "queries.jsonl").write_text(json.dumps({"_id": "q0", "text": QUESTIONS[0]}) + "\n")
    (data / "qrels" / "test.tsv").write_text("query-id\tcorpus-id\tscore\nq0\td0\t1\n")
    out = tmp_path / "idx"
    assert (
        main(["index", str(data), "--kind", "dense", "--model", tiny_encoder, "--precision", "int8", "--out", str(out)])
        == 0
    )
    assert "dense: precision int8 (int8: asked for)" in capsys.readouterr().err
    assert json.loads((out / "manifest.json").read_text())["params"]["precision"] == "int8"
    assert main(["search", "--index", str(out), "--queries", str(data), "--out", str(tmp_path / "run.trec")]) == 0
    assert (tmp_path / "run.trec").read_text().startswith("q0 Q0 ")
    assert main(["index", str(data), "--kind", "bm25", "--precision", "bf16", "--out", str(tmp_path / "b")]) == 2
    assert "--precision applies to --kind dense only" in capsys.readouterr().err
    assert main(["index", str(data), "--kind", "dense", "--precision", "fp16", "--out", str(tmp_path / "c")]) == 2
    assert "--precision" in capsys.readouterr().err


def test_int8_cache_sits_beside_the_model_but_never_inside_an_installation(tmp_path: Path, monkeypatch) -> None:
    from rankwise.config.export_cache import default_cache_root

    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    (tmp_path / "models" / "ce").mkdir(parents=True)
    assert default_cache_root(tmp_path / "models" / "ce") == tmp_path / "models" / "ce.rankwise-int8"
    (tmp_path / "site-packages" / "pkg" / "model").mkdir(parents=True)
    assert default_cache_root(tmp_path / "site-packages" / "pkg" / "model") == tmp_path / "xdg" / "rankwise" / "int8"
    assert default_cache_root("org/hub-name") == tmp_path / "xdg" / "rankwise" / "int8"
