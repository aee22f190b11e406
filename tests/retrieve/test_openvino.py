"""The dense encoder on OpenVINO (issue 22): where ``runtime: auto`` takes it, that it encodes within tolerance of
torch fp32, that its IR is cached beside the model, reused, and rebuilt when the model changes or the files are
damaged, and that an index records which runtime encoded it."""

from __future__ import annotations

import json
import pickle
import shutil
from pathlib import Path

import numpy as np
import pytest
from precision_texts import QUESTIONS, TEXTS
from scipy.stats import spearmanr

from rankwise.config import openvino_ir
from rankwise.config.openvino_ir import choose_runtime
from rankwise.errors import IndexStoreError, MissingExtraError, RankwiseError
from rankwise.types import Document, Query

pytestmark = pytest.mark.usefixtures("one_thread")


def _pretend(monkeypatch: pytest.MonkeyPatch, installed: bool = True, bf16: bool = True) -> None:
    import torch

    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    monkeypatch.setattr(openvino_ir, "openvino_installed", lambda: installed)
    monkeypatch.setattr(openvino_ir, "openvino_bf16", lambda: bf16)


def test_auto_takes_openvino_for_bf16_on_a_cpu_only(monkeypatch: pytest.MonkeyPatch) -> None:
    _pretend(monkeypatch)
    assert choose_runtime("auto", "bf16")[0] == "openvino"
    assert choose_runtime("auto", "bf16", "cpu")[0] == "openvino"
    assert choose_runtime("auto", "fp32") == ("torch", "fp32 runs on torch")  # the reference stays as it was
    assert choose_runtime("auto", "int8") == ("torch", "int8 runs on onnxruntime")
    assert choose_runtime("auto", "bf16", "cuda:0") == ("torch", "bf16 on a GPU runs on torch")
    assert choose_runtime("torch", "bf16") == ("torch", "asked for")
    assert choose_runtime("openvino", "fp32") == ("openvino", "asked for")

    _pretend(monkeypatch, bf16=False)  # e.g. an AVX2-only CPU
    assert choose_runtime("auto", "bf16") == ("torch", "OpenVINO reports no bf16 on this CPU")
    with pytest.raises(RankwiseError, match="no bf16 in OpenVINO"):
        choose_runtime("openvino", "bf16")
    assert choose_runtime("openvino", "fp32")[0] == "openvino"

    _pretend(monkeypatch, installed=False)
    runtime, why = choose_runtime("auto", "bf16")
    assert runtime == "torch" and "pip install 'rankwise[openvino]'" in why
    with pytest.raises(MissingExtraError, match=r"pip install 'rankwise\[openvino\]'"):
        choose_runtime("openvino", "fp32")


def test_runtime_openvino_is_refused_where_it_cannot_run(monkeypatch: pytest.MonkeyPatch) -> None:
    _pretend(monkeypatch)
    with pytest.raises(RankwiseError, match="CPU only, not on device 'cuda'"):
        choose_runtime("openvino", "bf16", "cuda")
    with pytest.raises(RankwiseError, match="not int8"):
        choose_runtime("openvino", "int8")
    with pytest.raises(RankwiseError, match="runtime must be one of auto, torch, openvino, not 'onnx'"):
        choose_runtime("onnx", "fp32")


def _precisions() -> list[str]:
    return ["fp32", "bf16"] if openvino_ir.openvino_bf16() else ["fp32"]  # bf16 only where OpenVINO runs it


@pytest.mark.parametrize("precision", _precisions())
def test_openvino_vectors_within_tolerance_of_torch_fp32(tiny_encoder: str, precision: str, tmp_path: Path) -> None:
    from rankwise.retrieve.dense import DenseRetriever
    from rankwise.retrieve.encoders import OpenVinoSentenceEncoder

    reference = DenseRetriever(tiny_encoder, show_progress=False, runtime="torch").encode(TEXTS)
    retriever = DenseRetriever(
        tiny_encoder, show_progress=False, precision=precision, runtime="openvino", openvino_cache=tmp_path
    )
    assert isinstance(retriever.encoder, OpenVinoSentenceEncoder)
    vectors = retriever.encode(TEXTS)
    assert vectors.dtype == np.float32 and vectors.shape == reference.shape
    assert np.allclose(np.linalg.norm(vectors, axis=1), 1.0, atol=1e-5)
    floor = 0.99999 if precision == "fp32" else 0.995
    assert float(np.min(np.sum(vectors * reference, axis=1))) > floor
    assert retriever.encode([]).shape == (0, reference.shape[1])


def test_the_ir_is_cached_beside_the_model_reused_and_rebuilt(tiny_encoder: str, tmp_path: Path) -> None:
    import torch
    from sentence_transformers import SentenceTransformer

    from rankwise.retrieve.dense import DenseRetriever

    model_dir = tmp_path / "model"
    shutil.copytree(tiny_encoder, model_dir)

    def encoder() -> DenseRetriever:
        return DenseRetriever(str(model_dir), show_progress=False, runtime="openvino")

    first = encoder()
    vectors = first.encode(TEXTS)
    cache = tmp_path / "model.rankwise-openvino"  # beside the model folder, not inside it
    entries = sorted(cache.iterdir())
    assert len(entries) == 1 and sorted(p.name for p in entries[0].iterdir()) == ["info.json", "model.bin", "model.xml"]
    assert not any(p.name.startswith(".") or p.suffix in (".pkl", ".pt") for p in model_dir.rglob("*"))
    info = json.loads((entries[0] / "info.json").read_text())
    assert info["versions"]["openvino"] != "-" and len(info["weights_sha256"]) == 64
    stamp = (entries[0] / "model.bin").stat().st_mtime_ns

    again = encoder()
    np.testing.assert_array_equal(again.encode(TEXTS), vectors)
    assert (entries[0] / "model.bin").stat().st_mtime_ns == stamp and len(list(cache.iterdir())) == 1  # reused

    changed = SentenceTransformer(str(model_dir), device="cpu")  # "retrain": new weights saved in place
    torch.manual_seed(0)
    with torch.no_grad():
        for parameter in changed.parameters():
            parameter.add_(0.5 * torch.randn_like(parameter))
    changed.save(str(model_dir))
    third = encoder()
    new = third.encode(TEXTS)
    assert len(list(cache.iterdir())) == 2 and not np.allclose(new, vectors, atol=1e-3)
    torch_now = DenseRetriever(str(model_dir), show_progress=False, runtime="torch").encode(TEXTS)
    assert float(np.min(np.sum(new * torch_now, axis=1))) > 0.99999  # the new weights, not the stale IR

    newest = max(cache.iterdir(), key=lambda p: p.stat().st_mtime_ns)
    with (newest / "model.bin").open("ab") as handle:  # a damaged entry is rebuilt, not loaded
        handle.write(b"junk")
    np.testing.assert_array_equal(encoder().encode(TEXTS), new)
    assert len(list(cache.iterdir())) == 2


def test_an_index_records_its_runtime_and_an_encoding_is_not_resumed_on_another(
    tiny_encoder: str, tmp_path: Path
) -> None:
    from rankwise.retrieve.dense import DenseRetriever

    corpus = {f"d{i}": Document(f"d{i}", text, "") for i, text in enumerate(TEXTS)}
    queries = {"q0": Query("q0", "aspirin and heart attacks"), "q1": Query("q1", "vitamin D fractures")}
    retriever = DenseRetriever(tiny_encoder, show_progress=False, runtime="openvino", openvino_cache=tmp_path / "c")
    retriever.index(corpus)
    retriever.save(tmp_path / "idx")
    choice = json.loads((tmp_path / "idx" / "manifest.json").read_text())["params"]["precision_choice"]
    assert choice["runtime"] == "openvino" and choice["runtime_reason"] == "asked for"
    options = {"show_progress": False, "runtime": "openvino", "openvino_cache": tmp_path / "c"}
    loaded = DenseRetriever.load(tmp_path / "idx", **options)
    assert loaded.search(queries, k=3) == retriever.search(queries, k=3)

    DenseRetriever(tiny_encoder, show_progress=False, runtime="torch").encode_corpus(corpus, tmp_path / "enc")
    with pytest.raises(IndexStoreError, match=r"precision='fp32', not 'fp32 \(openvino\)'"):
        retriever.encode_corpus(corpus, tmp_path / "enc")


def test_a_worker_loads_the_openvino_encoder_and_the_config_carries_the_runtime(
    tiny_encoder: str, tmp_path: Path
) -> None:
    """What a Ray actor receives is a picklable loader, and it loads the same OpenVINO encoder."""
    from pydantic import ValidationError

    from rankwise.build import build_retriever
    from rankwise.config.sections import DenseConfig
    from rankwise.retrieve.dense import DenseRetriever
    from rankwise.retrieve.encoders import OpenVinoSentenceEncoder

    retriever = DenseRetriever(tiny_encoder, show_progress=False, runtime="openvino", openvino_cache=tmp_path)
    encoder = pickle.loads(pickle.dumps(retriever._loader()))()
    assert isinstance(encoder, OpenVinoSentenceEncoder)
    expected = retriever.encoder.encode(["a cat"], normalize_embeddings=True)
    np.testing.assert_allclose(encoder.encode(["a cat"], normalize_embeddings=True), expected, atol=1e-6)

    built = build_retriever(DenseConfig(model=tiny_encoder, runtime="torch"), show_progress=False)
    assert built.runtime == "torch" and "runtime" not in DenseConfig().index_params()  # execution only
    with pytest.raises(ValidationError, match="runtime"):
        DenseConfig(runtime="onnx")


def test_openvino_is_imported_without_its_usage_telemetry() -> None:
    """``import openvino`` sends an "import" event to Google Analytics unless the user opted out; rankwise makes
    openvino fall back to its no-op stub (checked in a fresh interpreter, where openvino was not imported yet)."""
    import subprocess
    import sys

    code = (
        "from rankwise.config.openvino_ir import openvino_bf16\n"
        "openvino_bf16()\n"
        "import sys, openvino.tools.ovc.telemetry_utils as t\n"
        "print(sys.modules.get('openvino_telemetry'), t.tm.__name__)\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120, check=True)
    assert done.stdout.split() == ["None", "openvino.tools.ovc.telemetry_stub"]


def test_cli_index_takes_runtime_for_dense_only(tiny_encoder: str, tmp_path: Path, capsys) -> None:
    from rankwise.cli import main

    data = tmp_path / "data"
    data.mkdir()
    (data / "corpus.jsonl").write_text(
        "".join(json.dumps({"_id": f"d{i}", "text": t}) + "\n" for i, t in enumerate(TEXTS))
    )
    (data / "queries.jsonl").write_text(json.dumps({"_id": "q0", "text": "aspirin"}) + "\n")
    out = tmp_path / "idx"
    args = ["index", str(data), "--kind", "dense", "--model", tiny_encoder, "--out", str(out)]
    assert main([*args, "--runtime", "torch"]) == 0
    assert "dense: runtime torch (torch: asked for)" in capsys.readouterr().err
    assert json.loads((out / "manifest.json").read_text())["params"]["precision_choice"]["runtime"] == "torch"
    assert main([*args, "--runtime", "onnx"]) == 2
    assert "--runtime" in capsys.readouterr().err
    assert main(["index", str(data), "--kind", "bm25", "--runtime", "torch", "--out", str(tmp_path / "b")]) == 2
    assert "--runtime applies to --kind dense only" in capsys.readouterr().err


def test_a_broken_openvino_installation_is_not_used_by_auto(monkeypatch: pytest.MonkeyPatch, caplog) -> None:
    def broken() -> None:
        raise ImportError("libopenvino.so: cannot open shared object file")

    monkeypatch.setattr(openvino_ir, "import_openvino", broken)
    assert openvino_ir.openvino_bf16() is False
    assert "does not load (libopenvino.so" in caplog.text


# ------------------------------------------------------------------------------------------- cross-encoder


@pytest.mark.parametrize("precision", _precisions())
def test_openvino_cross_encoder_scores_within_tolerance_of_torch_fp32(
    minilm_ce, precision: str, tmp_path: Path
) -> None:
    import torch

    from rankwise.rerank.cross_encoder import CrossEncoderReranker

    pairs = [(question, text) for question in QUESTIONS for text in TEXTS]
    reference = np.asarray(CrossEncoderReranker(minilm_ce, show_progress=False).score(pairs))
    reranker = CrossEncoderReranker(
        minilm_ce, show_progress=False, precision=precision, runtime="openvino", openvino_cache=tmp_path
    )
    assert reranker.runtime == "openvino" and "runtime openvino (openvino: asked for)" in reranker.runtime_line
    scores = np.asarray(reranker.score(pairs))  # the model's activation applied, as torch's path does
    bound = {"fp32": 1e-4, "bf16": 0.05}[precision]
    assert np.max(np.abs(scores - reference)) < bound * np.ptp(reference)
    assert spearmanr(scores, reference)[0] > {"fp32": 0.9999, "bf16": 0.99}[precision]
    assert len(set(scores.tolist())) == len(pairs)  # no ties from a rounded head
    assert next(minilm_ce.model.parameters()).dtype == torch.float32  # the model passed in is left alone
    assert [p.name.rsplit("-", 1)[0] for p in tmp_path.iterdir()] == ["cross-encoder"]  # its IR, cached


def test_the_cross_encoder_config_carries_the_runtime(tiny_cross_encoder_dir: Path, monkeypatch) -> None:
    from pydantic import ValidationError

    from rankwise.build import build_reranker
    from rankwise.config.sections import CrossEncoderConfig

    _pretend(monkeypatch, installed=False)
    built = build_reranker(CrossEncoderConfig(model=str(tiny_cross_encoder_dir), precision="bf16"), show_progress=False)
    assert built.runtime == "torch" and "openvino is not installed" in built.runtime_line
    with pytest.raises(ValidationError, match="runtime"):
        CrossEncoderConfig(runtime="onnx")
