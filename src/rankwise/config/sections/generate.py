"""Query rewriting and generate sections: local, http (OpenAI-compatible) and rankrag."""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import (
    AliasChoices,
    Field,
    PositiveInt,
    model_validator,
)

from rankwise.config.defaults import DEFAULT_MODELS
from rankwise.config.sections.base import (
    ANSWER_ENGINE_HELP,
    DEVICE_HELP,
    LLM_PRECISION_HELP,
    EngineConfig,
    RankRAGModel,
    Strict,
)


class RewriteConfig(Strict):
    """How a conversational question becomes the search query (retrieval and reranking see the rewrite; the
    generator sees the question with its history)."""

    strategy: Literal["last_turn", "full_history", "llm", "human"] = Field(
        "last_turn", validation_alias=AliasChoices("strategy", "kind"), description="also spelled kind"
    )
    model: str = Field(
        "smollm2", description="llm: the chat model that rewrites (a local name/path, or the name served at endpoint)"
    )
    endpoint: str | None = Field(
        None,
        description="llm: an OpenAI-compatible server's base URL (http(s)://host/v1) that serves model; its own, "
        "separate from the generator's",
    )
    api_key_env: str | None = Field(None, description="llm with endpoint: environment variable holding the API key")
    max_new_tokens: PositiveInt = 48
    threads: PositiveInt | None = None
    cache: str | None = Field(None, description="llm: JSONL file of rewrites reused (same question) and extended")

    @model_validator(mode="after")
    def _endpoint_settings(self) -> RewriteConfig:
        if self.endpoint is not None and not self.endpoint.startswith(("http://", "https://")):
            raise ValueError(f"endpoint must be an http(s):// URL, not {self.endpoint!r}")
        if self.strategy != "llm" and (self.endpoint is not None or self.api_key_env is not None):
            raise ValueError("endpoint and api_key_env apply to the llm strategy only")
        if self.api_key_env is not None and self.endpoint is None:
            raise ValueError("api_key_env goes with an endpoint")
        if self.endpoint is not None and self.threads is not None:
            raise ValueError("threads applies to a local rewriting model, not to an endpoint")
        return self


class _GenerateCommon(Strict):
    top_k: PositiveInt = Field(5, description="passages shown to the generator, from the final ranking")
    template: str = Field("default", description="prompt template name or YAML file (rankwise.generate.prompts)")
    max_new_tokens: PositiveInt = 96
    max_passage_words: PositiveInt | None = None
    checkpoint_every: PositiveInt | None = Field(
        16, description="answers saved every N questions, so a killed run resumes; None = all in one go"
    )
    passages: Literal["ranking", "reference"] = Field(
        "ranking",
        description="ranking = the top_k of the final ranking; reference = all of the data set's reference "
        "passages of the question (MT-RAG's; elsewhere the judged relevant ones), whatever the ranking",
    )


class LocalGenerateConfig(_GenerateCommon):
    kind: Literal["local"] = "local"
    model: str = Field(
        DEFAULT_MODELS["generator"], description="'smollm2' (bundled GGUF), a hub name, a directory or a .gguf file"
    )
    gguf_file: str | None = None
    batch_size: PositiveInt = 4
    dtype: str = "float32"
    precision: Literal["auto", "fp32", "bf16"] | None = Field(None, description=LLM_PRECISION_HELP)
    device: str | None = Field(None, description=DEVICE_HELP)
    threads: PositiveInt | None = Field(None, description="torch CPU threads (a process-wide setting)")
    max_input_tokens: PositiveInt | None = None
    trust_remote_code: bool = False
    engine: EngineConfig = Field(default_factory=EngineConfig, description=ANSWER_ENGINE_HELP)


class HTTPGenerateConfig(_GenerateCommon):
    kind: Literal["http"] = "http"
    base_url: str
    model: str
    api_key_env: str | None = Field(None, description="environment variable holding the API key")
    temperature: float = Field(0.0, ge=0)
    timeout: float = Field(60.0, gt=0)
    concurrency: PositiveInt = 4


class RankRAGGenerateConfig(RankRAGModel, _GenerateCommon):
    """A RankRAG model as the generator; ``template: default`` and an unset ``max_passage_words`` mean the ones
    it was trained with. Shares the loaded model with a ``rerank: {kind: rankrag}`` stage on the same model."""

    max_new_tokens: PositiveInt = 64
    batch_size: PositiveInt = 4
    engine: EngineConfig = Field(default_factory=EngineConfig, description=ANSWER_ENGINE_HELP)


GENERATOR_CONFIGS: dict[str, type[Strict]] = {
    "local": LocalGenerateConfig,
    "http": HTTPGenerateConfig,
    "rankrag": RankRAGGenerateConfig,
}
GenerateConfig = Annotated[
    LocalGenerateConfig | HTTPGenerateConfig | RankRAGGenerateConfig, Field(discriminator="kind")
]
