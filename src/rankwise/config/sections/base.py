"""The pieces every section shares: the strict base model, the engine section, the RankRAG model and help texts."""

from __future__ import annotations

from typing import Literal

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    NonNegativeInt,
    PositiveInt,
    model_validator,
)

from rankwise.config.defaults import DEFAULT_MODELS

DEFAULT_DENSE_MODEL = DEFAULT_MODELS["dense"]
# How a neural stage runs (rankwise.config.precision): auto = bf16 where the hardware runs it natively, else fp32.
PRECISION_HELP = "fp32 | bf16 | int8 (onnxruntime, CPU) | auto (bf16 where native, else fp32); see config/precision.py"
LLM_PRECISION_HELP = "fp32 | bf16 | auto (bf16 where native, else fp32); when set it replaces dtype"
DEVICE_HELP = "cpu | cuda | cuda:N; default: the GPU where torch sees one (cpu keeps this LLM off it)"
ANSWER_ENGINE_HELP = "where the generate stage answers (shards = its checkpoint_every chunks); ask/serve: in-process"


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", validate_assignment=True)


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


class RankRAGModel(Strict):
    """The model both RankRAG stages load (one copy when they name the same model, dtype and device)."""

    kind: Literal["rankrag"] = "rankrag"
    model: str = Field("smollm2", description="a RankRAG model directory ('smollm2': the zero-shot base)")
    dtype: str = "auto"
    device: str | None = Field(None, description=DEVICE_HELP)
    threads: PositiveInt | None = Field(None, description="torch CPU threads (a process-wide setting)")
