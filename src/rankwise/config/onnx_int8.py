"""int8 inference: a torch model exported to ONNX (opset 17) and dynamically quantized by onnxruntime, cached.

:func:`int8_model` exports a forward function of a torch module (``torch.onnx.export``, TorchScript exporter: a
BERT-size model takes seconds), quantizes its weight matmuls to int8 (``quantize_dynamic``: int8 weights per output
channel, activations quantized per batch at run time; per-channel weights kept a cosine of 0.994 with the fp32
MiniLM sentence vectors, per-tensor ones only 0.93) and caches the result. :class:`Int8Session` runs it.

The cache (:mod:`rankwise.config.export_cache`, kind ``int8``: ``<model dir>.rankwise-int8/`` or
``~/.cache/rankwise/int8``) holds ONNX protobuf and JSON only (nothing pickled). An entry is keyed by a sha256 of
the module's weights and config, its input and output names, the quantization recipe and the torch /
transformers / onnx / onnxruntime versions, so a changed model, recipe or library builds a new one.
"""

from __future__ import annotations

import logging
import warnings
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from rankwise.config.export_cache import cached_conversion, evaluating, module_key, positional_module
from rankwise.config.precision import check_int8_available
from rankwise.errors import RankwiseError

if TYPE_CHECKING:
    import numpy as np
    import torch

logger = logging.getLogger(__name__)

OPSET = 17
# Bump when the export or quantization settings change: old cache entries are then not reused.
RECIPE = "torchscript-export/quantize_dynamic-matmul-qint8-per-channel/v1"
MODEL_FILE = "model.int8.onnx"
VERSIONED = ("torch", "transformers", "sentence-transformers", "onnx", "onnxruntime")


class _QuietQuantizer(logging.Filter):
    # onnxruntime's quantizer logs on the root logger: a generic pre-processing hint and a line per tensor it
    # leaves in float (the attention's activation x activation matmuls, by design); errors still show.
    def filter(self, record: logging.LogRecord) -> bool:
        return record.levelno >= logging.ERROR


def export_onnx(
    wrapped: Any, example: Mapping[str, torch.Tensor], names: Sequence[str], output: str, fp32_path: Path
) -> None:
    """``wrapped`` (:func:`positional_module`) exported to float32 ONNX at ``fp32_path``, batch and sequence axes
    dynamic."""
    import torch

    axes = {name: {0: "batch", 1: "sequence"} for name in names}
    with warnings.catch_warnings(), torch.inference_mode(False), torch.no_grad():
        warnings.simplefilter("ignore")  # the TorchScript exporter's deprecation note and tracer warnings
        torch.onnx.export(
            wrapped,
            tuple(example[name] for name in names),
            str(fp32_path),
            input_names=list(names),
            output_names=[output],
            dynamic_axes={**axes, output: {0: "batch"}},
            opset_version=OPSET,
            do_constant_folding=True,
            dynamo=False,
        )


def _export(wrapped: Any, example: Mapping[str, torch.Tensor], names: Sequence[str], output: str, tmp: Path) -> None:
    from onnxruntime.quantization import QuantType, quantize_dynamic

    fp32_path = tmp / "model.fp32.onnx"
    export_onnx(wrapped, example, names, output, fp32_path)
    quiet = _QuietQuantizer()
    logging.getLogger().addFilter(quiet)
    try:
        quantize_dynamic(
            fp32_path,
            tmp / MODEL_FILE,
            weight_type=QuantType.QInt8,
            per_channel=True,
            op_types_to_quantize=["MatMul"],
            extra_options={"MatMulConstBOnly": True},
        )
    finally:
        logging.getLogger().removeFilter(quiet)
    fp32_path.unlink()


def int8_model(
    module: torch.nn.Module,
    forward: Callable[[dict[str, Any]], Any],
    example: Mapping[str, torch.Tensor],
    *,
    output: str,
    stage: str,
    model_dir: str | Path | None = None,
    cache_dir: str | Path | None = None,
) -> Path:
    """The cached int8 ONNX file of ``forward(features) -> tensor`` over ``module``'s weights; built if missing.

    ``example`` holds one batch of the input tensors (their names become the ONNX input names; batch and sequence
    axes stay dynamic). ``stage`` (e.g. ``"cross-encoder"``) names the entry; ``cache_dir`` overrides the cache
    root (default: :func:`~rankwise.config.export_cache.default_cache_root` of ``model_dir``).
    """
    check_int8_available()
    names = sorted(example)
    key_parts = module_key(stage, module, names, output, RECIPE, VERSIONED, opset=OPSET)

    def build(tmp: Path) -> None:
        with evaluating(module):
            _export(positional_module(module, names, forward), example, names, output, tmp)

    entry = cached_conversion(
        key_parts, build, files=[MODEL_FILE], stage=stage, kind="int8", model_dir=model_dir, cache_dir=cache_dir
    )
    return entry / MODEL_FILE


class Int8Session:
    """An onnxruntime CPU session over an int8 model; ``session(features) -> first output`` (numpy arrays).

    Runs on torch's CPU thread count (``torch.get_num_threads()``), so a thread setting applies to both paths.
    """

    def __init__(self, path: str | Path) -> None:
        import onnxruntime as ort
        import torch

        options = ort.SessionOptions()
        options.intra_op_num_threads = torch.get_num_threads()
        options.inter_op_num_threads = 1
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        options.log_severity_level = 3  # errors only
        self.path = Path(path)
        self.session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
        self.inputs = tuple(item.name for item in self.session.get_inputs())

    def __call__(self, features: Mapping[str, np.ndarray]) -> np.ndarray:
        import numpy as np

        missing = [name for name in self.inputs if name not in features]
        if missing:
            raise RankwiseError(f"{self.path}: the int8 model needs inputs {missing} the tokenizer did not give")
        feed = {name: np.ascontiguousarray(features[name], dtype=np.int64) for name in self.inputs}
        return self.session.run(None, feed)[0]
