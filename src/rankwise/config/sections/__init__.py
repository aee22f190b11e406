"""The sections of an experiment config, one typed (pydantic) model per stage: data, retrieve (bm25, dense,
sparse), fuse, rerank (cross-encoder, llm, http, rankrag), rewrite, generate (local, http, rankrag), evaluate and
tracking. :mod:`rankwise.config.experiment` puts them together (``ExperimentConfig``) and reads the YAML.

One module per part: ``base`` (the strict model, the engine section), ``retrieve``, ``rerank``, ``generate`` (with
rewrite) and ``run`` (data, evaluate, tracking); a new kind's section goes beside its stage's.
"""

from rankwise.config.sections.base import DEFAULT_DENSE_MODEL as DEFAULT_DENSE_MODEL
from rankwise.config.sections.base import EngineConfig as EngineConfig
from rankwise.config.sections.base import Strict as Strict
from rankwise.config.sections.generate import GENERATOR_CONFIGS as GENERATOR_CONFIGS
from rankwise.config.sections.generate import GenerateConfig as GenerateConfig
from rankwise.config.sections.generate import HTTPGenerateConfig as HTTPGenerateConfig
from rankwise.config.sections.generate import LocalGenerateConfig as LocalGenerateConfig
from rankwise.config.sections.generate import RankRAGGenerateConfig as RankRAGGenerateConfig
from rankwise.config.sections.generate import RewriteConfig as RewriteConfig
from rankwise.config.sections.rerank import RERANKER_CONFIGS as RERANKER_CONFIGS
from rankwise.config.sections.rerank import CrossEncoderConfig as CrossEncoderConfig
from rankwise.config.sections.rerank import HTTPRerankConfig as HTTPRerankConfig
from rankwise.config.sections.rerank import LLMRerankConfig as LLMRerankConfig
from rankwise.config.sections.rerank import RankRAGRerankConfig as RankRAGRerankConfig
from rankwise.config.sections.rerank import RerankCommon as RerankCommon
from rankwise.config.sections.rerank import RerankConfig as RerankConfig
from rankwise.config.sections.retrieve import RETRIEVER_CONFIGS as RETRIEVER_CONFIGS
from rankwise.config.sections.retrieve import BM25Config as BM25Config
from rankwise.config.sections.retrieve import DenseConfig as DenseConfig
from rankwise.config.sections.retrieve import FuseConfig as FuseConfig
from rankwise.config.sections.retrieve import RetrieverConfig as RetrieverConfig
from rankwise.config.sections.retrieve import SparseConfig as SparseConfig
from rankwise.config.sections.run import DataConfig as DataConfig
from rankwise.config.sections.run import EvaluateConfig as EvaluateConfig
from rankwise.config.sections.run import TrackingConfig as TrackingConfig
