"""Experiment configuration: one typed (pydantic) model per stage, loaded from YAML, overridable from the CLI.

A config file is a YAML mapping::

    name: scifact-hybrid
    datasets: [scifact]              # used when `rankwise run` gets no -d
    retrieve:                        # name -> retriever; the order is the fusion order (ties: first wins)
      bm25: {kind: bm25, k: 100}
      dense: {kind: dense, model: sentence-transformers/all-MiniLM-L6-v2, k: 100}
    fuse: {method: rrf, k: 60, depth: 100}
    rerank: {kind: cross-encoder, model: path/to/model, top_n: 100}
    generate: {kind: local, model: smollm2, top_k: 5}   # answers.jsonl + QA metrics
    evaluate: {metrics: [nDCG@10, RR@10, R@100]}

``load_config(path, overrides)`` reads it with ``yaml.safe_load``, applies ``key=value`` overrides
(``rerank.top_n=50``, ``retrieve.bm25.k1=0.9``; values are YAML, so ``50`` is an int and ``null`` is None) and
validates it. An unknown key or a wrong type raises :class:`ConfigError` naming the file, the line (when the key
is in the file) and the dotted key. A retriever's ``kind`` defaults to its name when that names a kind.

Only this module and :mod:`rankwise.experiment` read configuration; every other module takes plain arguments.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Annotated, Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, PositiveInt, ValidationError, field_validator, model_validator

from rankwise.errors import ConfigError, RankwiseError
from rankwise.yaml_keys import apply_overrides, line_of, parse_override

DEFAULT_DENSE_MODEL = "sentence-transformers/all-MiniLM-L6-v2"
RESERVED_STAGE_NAMES = ("rewrite", "fuse", "rerank", "generate", "evaluate")
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.\-]*$")


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", validate_assignment=True)


class DataConfig(Strict):
    split: str = "test"
    format: Literal["beir", "smart", "hotpotqa"] | None = None
    max_queries: PositiveInt | None = Field(None, description="keep the first N judged queries (quick runs)")


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
    seed: int = 0

    def index_params(self) -> dict[str, Any]:
        """What the saved index depends on (search-time settings such as ef_search and nprobe excluded)."""
        return self.model_dump(exclude={"k", "batch_size", "query_prompt", "ef_search", "nprobe"})


class SparseConfig(Strict):
    """Learned sparse retrieval (SPLADE); ``splade-tiny`` is the small offline model (weak, for trying it out)."""

    kind: Literal["sparse"] = "sparse"
    k: PositiveInt = 100
    model: str = "splade-tiny"
    batch_size: PositiveInt = 32
    max_active_dims: PositiveInt | None = None
    max_seq_length: PositiveInt | None = None
    trust_remote_code: bool = False

    def index_params(self) -> dict[str, Any]:
        return self.model_dump(exclude={"k", "batch_size"})


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
    interpolate: float | None = Field(
        None, ge=0, le=1, description="weight of the first-stage score, min-max fused with the reranker's"
    )
    checkpoint_every: PositiveInt | None = Field(
        None,
        description="save progress every N queries so a killed run resumes mid-stage (scores then equal an "
        "unchunked run's to float rounding, not bit for bit); None = an interrupted stage restarts",
    )


class CrossEncoderConfig(_RerankCommon):
    kind: Literal["cross-encoder"] = "cross-encoder"
    model: str = "cross-encoder/ms-marco-MiniLM-L6-v2"
    max_length: PositiveInt | None = None
    batch_size: PositiveInt = 128
    max_tokens: PositiveInt = 16384
    trust_remote_code: bool = False
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
        from rankwise.train.reranker_config import RerankerTrainConfig

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
    model: str = "smollm2"
    gguf_file: str | None = None
    template: str | None = Field(None, description="prompt with {question} and {passage} (default: RankRAG's)")
    system_prompt: str | None = None
    max_passage_tokens: PositiveInt = 256
    batch_size: PositiveInt = 8
    max_tokens: PositiveInt = 4096
    dtype: str = "float32"
    trust_remote_code: bool = False


class HTTPRerankConfig(_RerankCommon):
    kind: Literal["http"] = "http"
    url: str
    model: str | None = None
    api_key_env: str | None = Field(None, description="environment variable holding the API key")
    timeout: float = Field(30.0, gt=0)
    max_documents: PositiveInt = 100


RERANKER_CONFIGS: dict[str, type[Strict]] = {
    "cross-encoder": CrossEncoderConfig,
    "llm": LLMRerankConfig,
    "http": HTTPRerankConfig,
}
RerankConfig = Annotated[CrossEncoderConfig | LLMRerankConfig | HTTPRerankConfig, Field(discriminator="kind")]


class RewriteConfig(Strict):
    """How a conversational question becomes the search query (retrieval and reranking see the rewrite; the
    generator sees the question with its history)."""

    strategy: Literal["last_turn", "full_history", "llm", "human"] = "last_turn"
    model: str = Field("smollm2", description="llm: the chat model that rewrites (local name/path)")
    max_new_tokens: PositiveInt = 48
    threads: PositiveInt | None = None


class _GenerateCommon(Strict):
    top_k: PositiveInt = Field(5, description="passages shown to the generator, from the final ranking")
    template: str = Field("default", description="prompt template name or YAML file (rankwise.generate.prompts)")
    max_new_tokens: PositiveInt = 96
    max_passage_words: PositiveInt | None = None
    checkpoint_every: PositiveInt | None = Field(
        16, description="answers saved every N questions, so a killed run resumes; None = all in one go"
    )


class LocalGenerateConfig(_GenerateCommon):
    kind: Literal["local"] = "local"
    model: str = Field("smollm2", description="'smollm2' (bundled GGUF), a hub name, a directory or a .gguf file")
    gguf_file: str | None = None
    batch_size: PositiveInt = 4
    dtype: str = "float32"
    threads: PositiveInt | None = Field(None, description="torch CPU threads (a process-wide setting)")
    max_input_tokens: PositiveInt | None = None
    trust_remote_code: bool = False


class HTTPGenerateConfig(_GenerateCommon):
    kind: Literal["http"] = "http"
    base_url: str
    model: str
    api_key_env: str | None = Field(None, description="environment variable holding the API key")
    temperature: float = Field(0.0, ge=0)
    timeout: float = Field(60.0, gt=0)
    concurrency: PositiveInt = 4


GENERATOR_CONFIGS: dict[str, type[Strict]] = {"local": LocalGenerateConfig, "http": HTTPGenerateConfig}
GenerateConfig = Annotated[LocalGenerateConfig | HTTPGenerateConfig, Field(discriminator="kind")]


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


class ExperimentConfig(Strict):
    name: str
    description: str = ""
    datasets: list[str] = Field(default_factory=list, description="data sets run when no -d is given")
    data: DataConfig = Field(default_factory=DataConfig)
    rewrite: RewriteConfig | None = None
    retrieve: dict[str, RetrieverConfig] = Field(min_length=1)
    fuse: FuseConfig | None = None
    rerank: RerankConfig | None = None
    generate: GenerateConfig | None = None
    evaluate: EvaluateConfig = Field(default_factory=EvaluateConfig)
    tracking: TrackingConfig = Field(default_factory=TrackingConfig)

    @field_validator("name")
    @classmethod
    def _safe_name(cls, name: str) -> str:
        if not _NAME.match(name):
            raise ValueError(f"{name!r} must be letters, digits, '.', '_' or '-' (it names the output folder)")
        return name

    @model_validator(mode="before")
    @classmethod
    def _default_kinds(cls, data: Any) -> Any:
        retrieve = data.get("retrieve") if isinstance(data, dict) else None
        if isinstance(retrieve, dict):
            data = {**data, "retrieve": {n: _with_kind(n, c, RETRIEVER_CONFIGS) for n, c in retrieve.items()}}
        return data

    @model_validator(mode="after")
    def _consistent(self) -> ExperimentConfig:
        for name in self.retrieve:
            if name in RESERVED_STAGE_NAMES or not _NAME.match(name):
                raise ValueError(f"retriever name {name!r} is reserved or not a plain name (it names a run file)")
        if len(self.retrieve) > 1 and self.fuse is None:
            raise ValueError(f"{len(self.retrieve)} retrievers need a 'fuse' section (e.g. fuse: {{method: rrf}})")
        if self.fuse is not None and self.fuse.weights is not None:
            unknown = sorted(set(self.fuse.weights) - set(self.retrieve))
            if unknown:
                raise ValueError(f"fuse.weights names unknown retrievers {unknown} (known: {list(self.retrieve)})")
        return self

    def ranking_stages(self) -> list[str]:
        """Names of the stages that produce a run, in execution order."""
        stages = list(self.retrieve)
        if len(self.retrieve) > 1:
            stages.append("fuse")
        if self.rerank is not None:
            stages.append("rerank")
        return stages


def _with_kind(name: str, section: Any, table: dict[str, type[Strict]]) -> Any:
    if isinstance(section, dict) and "kind" not in section and name in table:
        return {**section, "kind": name}
    return section


# ---------------------------------------------------------------------------------------------------- loading


def load_config(path: str | Path, overrides: list[str] | tuple[str, ...] = ()) -> ExperimentConfig:
    """Read, override and validate an experiment config; raise :class:`ConfigError` on any problem."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise ConfigError(f"{path}: cannot read config ({exc.strerror or exc})") from None
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise ConfigError(f"{path}: not valid YAML ({exc})") from None
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: a config must be a YAML mapping (name:, retrieve:, ...)")
    data = apply_overrides(data, overrides)
    try:
        return ExperimentConfig.model_validate(data)
    except ValidationError as exc:
        raise ConfigError(format_errors(exc, path, text, overrides)) from None


def _error_key(loc: tuple[Any, ...]) -> list[str]:
    """Dotted key of a pydantic error location, without the discriminator tags pydantic inserts."""
    parts = [str(p) for p in loc]
    if len(parts) > 2 and parts[0] == "retrieve" and parts[2] in RETRIEVER_CONFIGS:
        del parts[2]
    elif len(parts) > 1 and parts[1] in {"rerank": RERANKER_CONFIGS, "generate": GENERATOR_CONFIGS}.get(parts[0], {}):
        del parts[1]
    return parts


def format_errors(exc: ValidationError, path: Path, text: str, overrides: list[str] | tuple[str, ...] = ()) -> str:
    lines = []
    for error in exc.errors():
        parts = _error_key(error["loc"])
        key = ".".join(parts) or "(top level)"
        message = error["msg"]
        if error["type"] == "extra_forbidden":
            message = "unknown key"
        elif error["type"] == "missing":
            message = "required key is missing"
        elif "input" in error and error["type"] not in ("union_tag_invalid", "value_error"):
            message = f"{message} (got {error['input']!r})"
        origin = _origin(parts, text, overrides)
        lines.append(f"{path}{origin}: {key}: {message}")
    return "\n".join(lines) if len(lines) == 1 else "invalid config:\n  " + "\n  ".join(lines)


def _origin(parts: list[str], text: str, overrides: list[str] | tuple[str, ...]) -> str:
    """`` (from -o ...)`` when an override set the key, else ``, line N`` of the deepest key found in the file."""
    for override in reversed(overrides):
        keys, _ = parse_override(override)
        if keys == parts[: len(keys)] or parts == keys[: len(parts)]:
            return f" (from -o {override})"
    line = line_of(parts, text)
    return f", line {line}" if line is not None else ""


def dump_config(config: ExperimentConfig) -> str:
    """The resolved config (defaults filled in) as YAML text, in field order."""
    return yaml.safe_dump(config.model_dump(mode="json"), sort_keys=False, allow_unicode=True)
