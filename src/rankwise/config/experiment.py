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

``rerank: {kind: rankrag, model: DIR}`` with ``generate: {kind: rankrag, model: DIR}`` is the RankRAG preset: one
tuned model reranks and answers. The section models live in :mod:`rankwise.config.sections`; this module puts
them together (``ExperimentConfig``) and re-exports them.

``load_config(path, overrides)`` reads it (``yaml.safe_load``, repeated keys refused), applies ``key=value`` overrides
(``rerank.top_n=50``, ``retrieve.bm25.k1=0.9``; values are YAML, so ``50`` is an int and ``null`` is None) and
validates it. An unknown key or a wrong type raises :class:`ConfigError` naming the file, the line (when the key
is in the file) and the dotted key. A retriever's ``kind`` defaults to its name when that names a kind.

Only these two modules and :mod:`rankwise.experiment` read configuration; every other module takes plain arguments.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Annotated, Any, Union

import yaml
from pydantic import Field, ValidationError, field_validator, model_validator

from rankwise.config.sections import (
    DEFAULT_DENSE_MODEL,
    GENERATOR_CONFIGS,
    RERANKER_CONFIGS,
    RETRIEVER_CONFIGS,
    BM25Config,
    CrossEncoderConfig,
    DataConfig,
    DenseConfig,
    EvaluateConfig,
    FuseConfig,
    GenerateConfig,
    HTTPGenerateConfig,
    HTTPRerankConfig,
    LLMRerankConfig,
    LocalGenerateConfig,
    RankRAGGenerateConfig,
    RankRAGRerankConfig,
    RerankConfig,
    RetrieverConfig,
    RewriteConfig,
    SparseConfig,
    Strict,
    TrackingConfig,
)
from rankwise.config.yaml_keys import apply_overrides, line_of, parse_override, read_yaml
from rankwise.errors import ConfigError

__all__ = [  # the section models are defined in config_sections and imported from here
    "DEFAULT_DENSE_MODEL",
    "GENERATOR_CONFIGS",
    "RERANKER_CONFIGS",
    "RESERVED_STAGE_NAMES",
    "RETRIEVER_CONFIGS",
    "BM25Config",
    "ConfigError",
    "CrossEncoderConfig",
    "DataConfig",
    "DenseConfig",
    "EvaluateConfig",
    "ExperimentConfig",
    "FuseConfig",
    "GenerateConfig",
    "HTTPGenerateConfig",
    "HTTPRerankConfig",
    "LLMRerankConfig",
    "LocalGenerateConfig",
    "RankRAGGenerateConfig",
    "RankRAGRerankConfig",
    "RerankConfig",
    "RetrieverConfig",
    "RewriteConfig",
    "SparseConfig",
    "Strict",
    "TrackingConfig",
    "apply_overrides",
    "dump_config",
    "format_errors",
    "load_config",
    "parse_override",
]

RESERVED_STAGE_NAMES = ("rewrite", "fuse", "rerank", "generate", "evaluate")
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.\-]*$")


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
        rerank, generate = self.rerank, self.generate
        if (
            isinstance(rerank, RankRAGRerankConfig)
            and isinstance(generate, RankRAGGenerateConfig)
            and (rerank.model, rerank.dtype, rerank.device) != (generate.model, generate.dtype, generate.device)
        ):
            raise ValueError(
                "rerank and generate of kind rankrag are one model: give both the same model, dtype and device"
            )
        return self

    def ranking_stages(self) -> list[str]:
        """Names of the stages that produce a run, in execution order."""
        stages = list(self.retrieve)
        if len(self.retrieve) > 1:
            stages.append("fuse")
        if self.rerank is not None:
            stages.append("rerank")
        return stages


def register_section(stage: str, kind: str, section: type[Strict] | None) -> None:
    """Accept ``{stage}: {kind: KIND, ...}`` in experiment configs, validated by ``section`` (used by
    :func:`rankwise.build.register_reranker`; the built-in kinds are listed in :mod:`.sections`); ``section``
    None removes the kind again."""
    if stage != "rerank":
        raise ConfigError(f"only rerank kinds can be registered, not {stage!r}")
    if section is None:
        RERANKER_CONFIGS.pop(kind, None)
    else:
        RERANKER_CONFIGS[kind] = section
    union = Union[tuple(RERANKER_CONFIGS.values())]  # noqa: UP007 - a union built at run time
    field = ExperimentConfig.__pydantic_fields__["rerank"]
    field.annotation = Annotated[union, Field(discriminator="kind")] | None
    ExperimentConfig.model_rebuild(force=True)


def _with_kind(name: str, section: Any, table: dict[str, type[Strict]]) -> Any:
    if isinstance(section, dict) and "kind" not in section and name in table:
        return {**section, "kind": name}
    return section


# ---------------------------------------------------------------------------------------------------- loading


def load_config(path: str | Path, overrides: list[str] | tuple[str, ...] = ()) -> ExperimentConfig:
    """Read, override and validate an experiment config; raise :class:`ConfigError` on any problem."""
    path = Path(path)
    text, data = read_yaml(path)
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
    """`` (from --set ...)`` when an override set the key, else ``, line N`` of the deepest key found in the file."""
    for override in reversed(overrides):
        keys, _ = parse_override(override)
        if keys == parts[: len(keys)] or parts == keys[: len(parts)]:
            return f" (from --set {override})"
    line = line_of(parts, text)
    return f", line {line}" if line is not None else ""


def dump_config(config: ExperimentConfig) -> str:
    """The resolved config (defaults filled in) as YAML text, in field order."""
    return yaml.safe_dump(config.model_dump(mode="json"), sort_keys=False, allow_unicode=True)
