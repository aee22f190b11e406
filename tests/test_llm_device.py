"""Where the LLM stages run: the ``device`` key of the llm reranker, local generator and RankRAG sections (and the
``--device``/``--precision`` flags of ask/serve) reaches the model. A causal LM goes to the GPU when no device is
named; "meta" stands in here for the GPU these tests have not got, so a model that ignored the key would land there.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from rankwise.build import build_generator, build_reranker
from rankwise.config.sections import LLMRerankConfig, LocalGenerateConfig, RankRAGRerankConfig
from rankwise.errors import RankwiseError


@pytest.fixture
def pretend_gpu(monkeypatch: pytest.MonkeyPatch) -> None:
    import rankwise.config.models as models
    from rankwise.rankrag.preset import shared_model

    monkeypatch.setattr(models, "default_device", lambda: "meta")
    shared_model.cache_clear()
    yield
    shared_model.cache_clear()


def _device(model: object) -> str:
    return next(model.parameters()).device.type  # type: ignore[attr-defined]


def test_device_cpu_keeps_each_llm_stage_off_the_gpu(tiny_lm_dir: Path, pretend_gpu: None) -> None:
    model = str(tiny_lm_dir)
    reranker = build_reranker(LLMRerankConfig(model=model, device="cpu"), show_progress=False)
    assert _device(reranker.model) == "cpu"
    generator = build_generator(LocalGenerateConfig(model=model, device="cpu"), show_progress=False)
    assert _device(generator.model_and_tokenizer()[0]) == "cpu"
    rankrag = build_reranker(RankRAGRerankConfig(model=model, dtype="float32", device="cpu"), show_progress=False)
    assert _device(rankrag.model) == "cpu"


def test_without_the_key_the_default_device_is_used(tiny_lm_dir: Path, pretend_gpu: None) -> None:
    reranker = build_reranker(LLMRerankConfig(model=str(tiny_lm_dir)), show_progress=False)
    assert _device(reranker.model) == "meta"  # the guard above is not vacuous


def test_flags_become_the_sections_of_the_stages_that_take_them(tmp_path: Path) -> None:
    from rankwise.experiment.ask_parts import _check_taken, generator_flags, rankrag_sections, reranker_section

    answer = {"template": "default", "max_new_tokens": 8, "max_passage_words": None, "threads": None}
    local = generator_flags("smollm2", None, None, precision="bf16", device="cpu", **answer)
    assert (local.precision, local.device) == ("bf16", "cpu")
    llm = reranker_section("llm", None, 10, "auto", "cuda:1")
    assert (llm.precision, llm.device) == ("auto", "cuda:1")
    cross = reranker_section("cross-encoder", "some/model", 10, "int8", "cpu")
    assert cross.precision == "int8" and "device" not in type(cross).model_fields
    generate, rerank = rankrag_sections(tmp_path, "none", "smollm2", None, dtype="bfloat16", device="cpu")
    assert (generate.dtype, generate.device) == (rerank.dtype, rerank.device) == ("bfloat16", "cpu")
    http = generator_flags("http://127.0.0.1:9/v1", "m", None, precision="bf16", device="cpu", **answer)
    with pytest.raises(RankwiseError, match="--device applies to a local model"):
        _check_taken(None, "cpu", http, None)
    _check_taken("bf16", None, http, cross)  # the cross-encoder takes the precision
    with pytest.raises(RankwiseError, match="--device applies"):
        _check_taken(None, "cpu", http, cross)
    with pytest.raises(RankwiseError, match="--precision: "):
        generator_flags("smollm2", None, None, precision="int8", **answer)  # int8 is a cross-encoder's
