"""int8 inference: a torch model exported to ONNX (opset 17) and dynamically quantized by onnxruntime, cached.

:func:`int8_model` exports a forward function of a torch module (``torch.onnx.export``, TorchScript exporter: a
BERT-size model takes seconds), quantizes its weight matmuls to int8 (``quantize_dynamic``: int8 weights per output
channel, activations quantized per batch at run time; per-channel weights kept a cosine of 0.994 with the fp32
MiniLM sentence vectors, per-tensor ones only 0.93) and caches the result. :class:`Int8Session` runs it.

The cache holds ONNX protobuf and JSON only (nothing pickled). Its folder sits beside the model directory
(``<model dir>.rankwise-int8/``, outside the model folder so that the model's own files, and what hashes them,
stay untouched) when that is writable and not inside a Python installation, else under
``$XDG_CACHE_HOME/rankwise/int8`` (``~/.cache``). An entry is
keyed by a sha256 of the module's weights and config, its input and output names, the quantization recipe and
the torch / transformers / onnx / onnxruntime versions, so a changed model, recipe or library builds a new one;
each entry's ``info.json`` lists what went into its key and the sha256 of its ``.onnx`` file, checked on reuse.
"""

from __future__ import annotations

import hashlib
import importlib.metadata
import json
import logging
import os
import shutil
import tempfile
import warnings
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

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
INFO_FILE = "info.json"
VERSIONED = ("torch", "transformers", "sentence-transformers", "onnx", "onnxruntime")


def library_versions() -> dict[str, str]:
    versions = {}
    for name in VERSIONED:
        try:
            versions[name] = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            versions[name] = "-"
    return versions


def weights_digest(module: torch.nn.Module) -> str:
    """sha256 over the module's class, its config (if it has one) and every tensor of its state dict."""
    import torch

    digest = hashlib.sha256(type(module).__qualname__.encode())
    config = getattr(module, "config", None)
    if config is not None and hasattr(config, "to_json_string"):
        digest.update(config.to_json_string(use_diff=False).encode())
    for name, tensor in sorted(module.state_dict().items()):
        flat = tensor.detach().cpu().contiguous().reshape(-1)
        digest.update(f"{name}|{flat.dtype}|{tuple(tensor.shape)}".encode())
        digest.update(flat.view(torch.uint8).numpy().data)
    return digest.hexdigest()


def default_cache_root(model_dir: str | Path | None) -> Path:
    """``<model dir>.rankwise-int8`` beside a local, writable model directory, else the user cache (also for
    models installed as Python packages, such as the bundled MiniLM: an installation is no place for caches)."""
    if model_dir is not None:
        path = Path(model_dir).expanduser().resolve()
        installed = {"site-packages", "dist-packages"} & set(path.parts)
        if path.is_dir() and not installed and os.access(path.parent, os.W_OK):
            return path.parent / f"{path.name}.rankwise-int8"
    base = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache")
    return base / "rankwise" / "int8"


def _wrap(module: torch.nn.Module, names: Sequence[str], forward: Callable[[dict[str, Any]], Any]) -> Any:
    """The module to trace: positional tensors (named ``names``) -> ``forward(features)``, ``module`` inside."""
    import torch

    class Wrapped(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.inner = module

        def forward(self, *tensors: torch.Tensor) -> torch.Tensor:
            return forward(dict(zip(names, tensors, strict=True)))

    return Wrapped().eval()


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _valid_entry(directory: Path, key: str) -> bool:
    info_path, model_path = directory / INFO_FILE, directory / MODEL_FILE
    if not info_path.is_file() or not model_path.is_file():
        return False
    try:
        info = json.loads(info_path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return False
    return bool(isinstance(info, dict) and info.get("key") == key and info.get("sha256") == _sha256(model_path))


class _QuietQuantizer(logging.Filter):
    # onnxruntime's quantizer logs on the root logger: a generic pre-processing hint and a line per tensor it
    # leaves in float (the attention's activation x activation matmuls, by design); errors still show.
    def filter(self, record: logging.LogRecord) -> bool:
        return record.levelno >= logging.ERROR


def _export(wrapped: Any, example: Mapping[str, torch.Tensor], names: Sequence[str], output: str, tmp: Path) -> None:
    import torch
    from onnxruntime.quantization import QuantType, quantize_dynamic

    fp32_path = tmp / "model.fp32.onnx"
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
    root (default: :func:`default_cache_root` of ``model_dir``).
    """
    check_int8_available()
    names = sorted(example)
    key_parts = {
        "stage": stage,
        "weights_sha256": weights_digest(module),
        "inputs": names,
        "output": output,
        "opset": OPSET,
        "recipe": RECIPE,
        "versions": library_versions(),
    }
    key = hashlib.sha256(json.dumps(key_parts, sort_keys=True).encode()).hexdigest()
    root = Path(cache_dir) if cache_dir is not None else default_cache_root(model_dir)
    directory = root / f"{stage}-{key[:16]}"
    if _valid_entry(directory, key):
        logger.info("%s: reusing the int8 ONNX model in %s", stage, directory)
        return directory / MODEL_FILE
    logger.info("%s: exporting and quantizing to int8 ONNX in %s (once per model and library versions)", stage, root)
    try:
        root.mkdir(parents=True, exist_ok=True)
        tmp = Path(tempfile.mkdtemp(prefix=f".{directory.name}.", dir=root))
    except OSError as exc:
        raise RankwiseError(f"{root}: cannot write the int8 model cache ({exc.strerror or exc})") from exc
    try:
        was_training = module.training
        module.eval()
        try:
            _export(_wrap(module, names, forward), example, names, output, tmp)
        finally:
            module.train(was_training)
        info = {"key": key, **key_parts, "sha256": _sha256(tmp / MODEL_FILE)}
        (tmp / INFO_FILE).write_text(json.dumps(info, indent=1) + "\n", encoding="utf-8")
        if directory.exists():  # a stale or corrupted entry under the same key (a race loses nothing: same bytes)
            shutil.rmtree(directory, ignore_errors=True)
        os.replace(tmp, directory)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return directory / MODEL_FILE


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
