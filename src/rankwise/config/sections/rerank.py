"""Rerank sections: cross-encoder, llm (P(True)), http (hosted rerank APIs) and rankrag."""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import (
    Field,
    PositiveInt,
    ValidationError,
    field_validator,
)

from rankwise.config.defaults import DEFAULT_MODELS, DEFAULT_STRIDE, DEFAULT_WORDS, Aggregate
from rankwise.config.sections.base import (
    DEVICE_HELP,
    LLM_PRECISION_HELP,
    PRECISION_HELP,
    EngineConfig,
    RankRAGModel,
    Strict,
)


class RerankCommon(Strict):
    top_n: PositiveInt = Field(100, description="rerank the top N of the previous ranking (the rest is dropped)")
    interpolate: Annotated[float, Field(ge=0, le=1)] | Literal["auto"] | None = Field(
        None,
        description="weight of the first-stage score, min-max fused with the reranker's; 'auto' (cross-encoder, "
        "rankrag) = the weight `rankwise train reranker` / `rankrag train` picked on its dev split, stored with "
        "the model",
    )
    checkpoint_every: PositiveInt | None = Field(
        None,
        description="save progress every N queries so a killed run resumes mid-stage (scores then equal an "
        "unchunked run's to float rounding, not bit for bit); None = an interrupted stage restarts",
    )

    @field_validator("interpolate")
    @classmethod
    def _auto_needs_a_trained_model(cls, value: Any) -> Any:
        if value == "auto" and cls.model_fields["kind"].default not in ("cross-encoder", "rankrag"):
            raise ValueError(
                "'auto' reads the weight stored with a trained cross-encoder or RankRAG model; give a number in [0, 1]"
            )
        return value


class CrossEncoderConfig(RerankCommon):
    kind: Literal["cross-encoder"] = "cross-encoder"
    model: str = DEFAULT_MODELS["cross-encoder"]
    max_length: PositiveInt | None = None
    batch_size: PositiveInt = 128
    max_tokens: PositiveInt | None = Field(
        None,
        description="padded tokens per forward pass; None = 2048 on a CPU (8192 in bf16/int8), 16384 on an accelerator",
    )
    windows: Aggregate = Field(
        "first",
        description="first = plain; max/mean/top2 also score the title before later stretches of each passage "
        "and fold the window scores (a forward pass per window)",
    )
    window_words: PositiveInt = DEFAULT_WORDS
    window_stride: PositiveInt = DEFAULT_STRIDE
    precision: Literal["auto", "fp32", "bf16", "int8"] = Field("fp32", description=PRECISION_HELP)
    runtime: Literal["auto", "torch", "openvino"] = Field(
        "auto",
        description="what runs the model: torch | openvino (CPU; fp32 or bf16) | auto (openvino for bf16 on a CPU "
        "where the openvino extra is installed, else torch)",
    )
    trust_remote_code: bool = False
    engine: EngineConfig = Field(default_factory=EngineConfig, description="where scoring runs (shards of queries)")
    train: dict[str, Any] | None = Field(
        None,
        description="train the cross-encoder first (rankwise train reranker settings without output_dir; "
        "'model' is then the starting point); the trained model is cached by these settings",
    )

    @field_validator("train")
    @classmethod
    def _train_settings(cls, train: dict[str, Any] | None) -> dict[str, Any] | None:
        if train is None:
            return None
        from rankwise.config.train_reranker import RerankerTrainConfig

        if "output_dir" in train or "model" in train:
            raise ValueError("'output_dir' and 'model' are set by the experiment (use rerank.model for the start)")
        try:
            RerankerTrainConfig.model_validate({"output_dir": "-", **train})
        except ValidationError as exc:
            error = exc.errors()[0]
            key = ".".join(str(p) for p in error["loc"])
            problem = "unknown key" if error["type"] == "extra_forbidden" else error["msg"]
            raise ValueError(f"train.{key}: {problem}") from None
        return train


class LLMRerankConfig(RerankCommon):
    kind: Literal["llm"] = "llm"
    model: str = DEFAULT_MODELS["llm"]
    gguf_file: str | None = None
    template: str | None = Field(None, description="prompt with {question} and {passage} (default: RankRAG's)")
    system_prompt: str | None = None
    max_passage_tokens: PositiveInt = 256
    batch_size: PositiveInt = 8
    max_tokens: PositiveInt = 4096
    dtype: str = "float32"
    precision: Literal["auto", "fp32", "bf16"] | None = Field(None, description=LLM_PRECISION_HELP)
    device: str | None = Field(None, description=DEVICE_HELP)
    trust_remote_code: bool = False
    engine: EngineConfig = Field(default_factory=EngineConfig, description="where scoring runs (shards of queries)")


class HTTPRerankConfig(RerankCommon):
    kind: Literal["http"] = "http"
    url: str
    model: str | None = None
    api_key_env: str | None = Field(None, description="environment variable holding the API key")
    timeout: float = Field(30.0, gt=0)
    max_documents: PositiveInt = 100


class RankRAGRerankConfig(RankRAGModel, RerankCommon):
    """A ``rankwise rankrag train`` model as the P(True) reranker, with the prompt settings it was trained with
    (its ``rankrag.json``; the ranking prompt settings left None); with ``generate: {kind: rankrag}`` on the same
    model, ONE loaded copy plays both."""

    top_n: PositiveInt = Field(20, description="rerank the top N of the previous ranking (the rest is dropped)")
    batch_size: PositiveInt = 16
    max_passage_tokens: PositiveInt | None = Field(None, description="passage cut in the ranking prompt")
    ranking_template: str | None = Field(None, description="ranking prompt with {question} and {passage}")
    ranking_system_prompt: str | None = Field(None, description="system turn of the ranking prompt")


RERANKER_CONFIGS: dict[str, type[Strict]] = {
    "cross-encoder": CrossEncoderConfig,
    "llm": LLMRerankConfig,
    "http": HTTPRerankConfig,
    "rankrag": RankRAGRerankConfig,
}
RerankConfig = Annotated[
    CrossEncoderConfig | LLMRerankConfig | HTTPRerankConfig | RankRAGRerankConfig, Field(discriminator="kind")
]
