"""Retrieval sections: bm25, dense, sparse (SPLADE), and how their runs are fused."""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import (
    Field,
    PositiveInt,
    field_validator,
)

from rankwise.config.defaults import DEFAULT_MODELS
from rankwise.config.sections.base import DEFAULT_DENSE_MODEL, PRECISION_HELP, EngineConfig, Strict

SPARSE_PRECISION_HELP = "fp32 | bf16 | auto (bf16 where native, else fp32); queries are encoded like the index"


class BM25Config(Strict):
    kind: Literal["bm25"] = "bm25"
    k: PositiveInt = 100
    k1: float = Field(1.5, ge=0)
    b: float = Field(0.75, ge=0, le=1)
    method: str = "lucene"
    stopwords: str | None = "en"
    stemmer: str | None = "english"
    backend: Literal["auto", "numpy", "numba"] = Field(
        "auto", description="bm25s retrieval: numba (compiled, cached on disk) | numpy | auto (numba when installed)"
    )

    def index_params(self) -> dict[str, Any]:
        """What the saved index depends on (the search backend is not: both give the same runs)."""
        return self.model_dump(exclude={"k", "backend"})


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
    runtime: Literal["auto", "torch", "openvino"] = Field(
        "auto",
        description="what runs the encoder: torch | openvino (CPU; fp32 or bf16) | auto (openvino for bf16 on a "
        "CPU where the openvino extra is installed, else torch); the index manifest records which ran",
    )
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
            exclude={
                "k",
                "batch_size",
                "query_prompt",
                "ef_search",
                "nprobe",
                "shard_size",
                "devices",
                "engine",
                "runtime",
            }
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
    precision: Literal["auto", "fp32", "bf16"] = Field("fp32", description=SPARSE_PRECISION_HELP)
    engine: EngineConfig = Field(default_factory=EngineConfig, description="where corpus encoding runs")

    def index_params(self) -> dict[str, Any]:
        return self.model_dump(exclude={"k", "batch_size", "engine"})

    def load_options(self) -> dict[str, Any]:
        """What opening a saved index takes from this section (the precision must be the index's own, or auto)."""
        return {"batch_size": self.batch_size, "trust_remote_code": self.trust_remote_code, "precision": self.precision}


# name -> config class of each retriever kind (the experiment's factory table uses the same keys).
RETRIEVER_CONFIGS: dict[str, type[Strict]] = {"bm25": BM25Config, "dense": DenseConfig, "sparse": SparseConfig}
RetrieverConfig = Annotated[BM25Config | DenseConfig | SparseConfig, Field(discriminator="kind")]


class FuseConfig(Strict):
    method: Literal["rrf", "weighted"] = "rrf"
    k: int | float = Field(60, ge=0, description="RRF constant (rrf only)")
    weights: dict[str, float] | None = Field(None, description="retriever name -> weight (default 1 each)")
    depth: PositiveInt | None = 100
