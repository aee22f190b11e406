"""The sections of an experiment config, one typed (pydantic) model per stage: data, retrieve (bm25, dense,
sparse), fuse, rerank (cross-encoder, llm, http, rankrag), rewrite, generate (local, http, rankrag), evaluate and
tracking. :mod:`rankwise.config.experiment` puts them together (``ExperimentConfig``) and reads the YAML.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import (
    AliasChoices,
    BaseModel,
    ConfigDict,
    Field,
    NonNegativeInt,
    PositiveInt,
    ValidationError,
    field_validator,
    model_validator,
)

from rankwise.config.defaults import DEFAULT_MODELS, DEFAULT_STRIDE, DEFAULT_WORDS, Aggregate
from rankwise.errors import RankwiseError

DEFAULT_DENSE_MODEL = DEFAULT_MODELS["dense"]
# How a neural stage runs (rankwise.config.precision): auto = bf16 where the hardware runs it natively, else fp32.
PRECISION_HELP = "fp32 | bf16 | int8 (onnxruntime, CPU) | auto (bf16 where native, else fp32); see config/precision.py"
LLM_PRECISION_HELP = "fp32 | bf16 | auto (bf16 where native, else fp32); when set it replaces dtype"
ANSWER_ENGINE_HELP = "where the generate stage answers (shards = its checkpoint_every chunks); ask/serve: in-process"


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", validate_assignment=True)


class DataConfig(Strict):
    split: str = "test"
    format: Literal["beir", "smart", "hotpotqa"] | None = None
    max_queries: PositiveInt | None = Field(None, description="keep the first N judged queries (quick runs)")
    setting: Literal["open", "distractor"] = Field(
        "open", description="HotpotQA: open = rank the whole corpus; distractor = each question's own paragraphs"
    )
    sentence_lines: bool = Field(
        False, description="HotpotQA: one sentence per line in each paragraph (what [n.s] citations number)"
    )
    answerability: list[Literal["ANSWERABLE", "PARTIAL", "UNANSWERABLE", "UNDERSPECIFIED"]] | None = Field(
        None, description="MT-RAG generation tasks (mtrag-tasks:DOMAIN): keep the tasks with these labels"
    )
    per_label_limit: PositiveInt | None = Field(
        None, description="MT-RAG generation tasks: keep the first N tasks of each answerability label"
    )


class BM25Config(Strict):
    kind: Literal["bm25"] = "bm25"
    k: PositiveInt = 100
    k1: float = Field(1.5, ge=0)
    b: float = Field(0.75, ge=0, le=1)
    method: str = "lucene"
    stopwords: str | None = "en"
    stemmer: str | None = "english"

    def index_params(self) -> dict[str, Any]:
        return self.model_dump(exclude={"k"})


class EngineConfig(Strict):
    """Where a stage's batch inference runs: ``local`` (this process) or ``ray`` (one model per Ray actor, on this
    machine or a cluster; ``pip install 'rankwise[ray]'``). Execution only: results are the same either way."""

    kind: Literal["local", "ray"] = "local"
    address: str | None = Field(
        None,
        description="ray: None = start a local Ray instance with this machine's cores for the command; 'auto' = "
        "join the running cluster (ray start); 'ray://host:10001' = a remote one",
    )
    actors: PositiveInt | None = Field(None, description="ray: model copies (default: CPUs / cpus_per_actor)")
    cpus_per_actor: float = Field(1.0, gt=0, description="ray: CPUs (torch threads) each actor reserves")
    gpus_per_actor: float = Field(0.0, ge=0, description="ray: GPUs each actor reserves (1 = one GPU each)")
    retries: NonNegativeInt = Field(2, description="ray: runs again of a shard whose worker died")
    batch_size: PositiveInt | None = Field(None, description="items per forward pass (None = the stage's)")

    @model_validator(mode="after")
    def _ray_settings_need_ray(self) -> EngineConfig:
        ray_only = ("address", "actors", "cpus_per_actor", "gpus_per_actor", "retries")
        given = [name for name in ray_only if getattr(self, name) != type(self).model_fields[name].default]
        if self.kind == "local" and given:
            raise ValueError(f"{', '.join(given)} apply to kind: ray only")
        return self


class DenseConfig(Strict):
    kind: Literal["dense"] = "dense"
    k: PositiveInt = 100
    model: str = DEFAULT_DENSE_MODEL
    batch_size: PositiveInt = 64
    query_prompt: str = ""
    document_prompt: str = ""
    trust_remote_code: bool = False
    index_kind: Literal["exact", "hnsw", "ivf"] = "exact"
    hnsw_m: PositiveInt = 32
    ef_construction: PositiveInt = 200
    ef_search: PositiveInt = 128
    hnsw_storage: Literal["float16", "float32"] = "float16"
    nlist: PositiveInt | None = None
    nprobe: PositiveInt = 16
    dtype: Literal["float32", "float16"] = "float32"
    precision: Literal["auto", "fp32", "bf16", "int8"] = Field("fp32", description=PRECISION_HELP)
    seed: int = 0
    shard_size: PositiveInt = Field(10_000, description="documents per saved embedding shard (the resume unit)")
    devices: list[str] | None = Field(None, description="removed: use engine: {kind: ray, actors: N}")
    engine: EngineConfig = Field(default_factory=EngineConfig, description="where corpus encoding runs")

    @field_validator("devices")
    @classmethod
    def _devices_removed(cls, value: list[str] | None) -> None:
        if value:
            raise ValueError(
                "the multi-process pool was replaced by the Ray engine: engine: {kind: ray, actors: N} "
                "(gpus_per_actor: 1 for one GPU each); pip install 'rankwise[ray]'"
            )
        return None

    def index_params(self) -> dict[str, Any]:
        """What the saved index depends on (search-time and execution settings excluded)."""
        return self.model_dump(
            exclude={"k", "batch_size", "query_prompt", "ef_search", "nprobe", "shard_size", "devices", "engine"}
        )


class SparseConfig(Strict):
    """Learned sparse retrieval (SPLADE); ``splade-tiny`` is the small offline model (weak, for trying it out)."""

    kind: Literal["sparse"] = "sparse"
    k: PositiveInt = 100
    model: str = DEFAULT_MODELS["sparse"]
    batch_size: PositiveInt = 32
    max_active_dims: PositiveInt | None = None
    max_seq_length: PositiveInt | None = None
    trust_remote_code: bool = False
    engine: EngineConfig = Field(default_factory=EngineConfig, description="where corpus encoding runs")

    def index_params(self) -> dict[str, Any]:
        return self.model_dump(exclude={"k", "batch_size", "engine"})


# name -> config class of each retriever kind (the experiment's factory table uses the same keys).
RETRIEVER_CONFIGS: dict[str, type[Strict]] = {"bm25": BM25Config, "dense": DenseConfig, "sparse": SparseConfig}
RetrieverConfig = Annotated[BM25Config | DenseConfig | SparseConfig, Field(discriminator="kind")]


class FuseConfig(Strict):
    method: Literal["rrf", "weighted"] = "rrf"
    k: int | float = Field(60, ge=0, description="RRF constant (rrf only)")
    weights: dict[str, float] | None = Field(None, description="retriever name -> weight (default 1 each)")
    depth: PositiveInt | None = 100


class _RerankCommon(Strict):
    top_n: PositiveInt = Field(100, description="rerank the top N of the previous ranking (the rest is dropped)")
    interpolate: Annotated[float, Field(ge=0, le=1)] | Literal["auto"] | None = Field(
        None,
        description="weight of the first-stage score, min-max fused with the reranker's; 'auto' (cross-encoder) = "
        "the weight `rankwise train reranker` picked on its dev split, stored with the model",
    )
    checkpoint_every: PositiveInt | None = Field(
        None,
        description="save progress every N queries so a killed run resumes mid-stage (scores then equal an "
        "unchunked run's to float rounding, not bit for bit); None = an interrupted stage restarts",
    )

    @field_validator("interpolate")
    @classmethod
    def _auto_needs_a_trained_cross_encoder(cls, value: Any) -> Any:
        if value == "auto" and cls.model_fields["kind"].default != "cross-encoder":
            raise ValueError("'auto' reads the weight stored with a trained cross-encoder; give a number in [0, 1]")
        return value


class CrossEncoderConfig(_RerankCommon):
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


class LLMRerankConfig(_RerankCommon):
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
    trust_remote_code: bool = False
    engine: EngineConfig = Field(default_factory=EngineConfig, description="where scoring runs (shards of queries)")


class HTTPRerankConfig(_RerankCommon):
    kind: Literal["http"] = "http"
    url: str
    model: str | None = None
    api_key_env: str | None = Field(None, description="environment variable holding the API key")
    timeout: float = Field(30.0, gt=0)
    max_documents: PositiveInt = 100


class _RankRAGModel(Strict):
    """The model both RankRAG stages load (one copy when they name the same model and dtype)."""

    kind: Literal["rankrag"] = "rankrag"
    model: str = Field("smollm2", description="a RankRAG model directory ('smollm2': the zero-shot base)")
    dtype: str = "auto"
    threads: PositiveInt | None = Field(None, description="torch CPU threads (a process-wide setting)")


class RankRAGRerankConfig(_RankRAGModel, _RerankCommon):
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


class RankRAGGenerateConfig(_RankRAGModel, _GenerateCommon):
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


class EvaluateConfig(Strict):
    metrics: list[str] = Field(default_factory=lambda: ["nDCG@10", "RR@10", "R@100"], min_length=1)
    missing: Literal["skip", "zero"] = "skip"
    sweep: list[PositiveInt] = Field(
        default_factory=lambda: [1, 3, 5, 10, 20, 50, 100], description="cutoffs k for the nDCG@k / R@k sweep"
    )

    @field_validator("metrics")
    @classmethod
    def _known_metrics(cls, names: list[str]) -> list[str]:
        from rankwise.evaluate.retrieval import parse_measures

        try:
            parse_measures(names)
        except RankwiseError as exc:
            raise ValueError(str(exc)) from None
        return names

    @field_validator("sweep")
    @classmethod
    def _sorted_sweep(cls, cutoffs: list[int]) -> list[int]:
        return sorted(set(cutoffs))


class TrackingConfig(Strict):
    backend: Literal["none", "mlflow", "wandb"] = "none"
    uri: str | None = Field(None, description="mlflow: tracking URI (default file store ./mlruns); wandb: dir")
    project: str = "rankwise"
