"""OpenVINO: a torch model's forward converted to OpenVINO IR, cached, and run by OpenVINO's CPU plugin in the
precision the stage resolved (fp32 or bf16: an inference hint, so one IR serves both).

Why at all: on this project's quiet 2-core AMD EPYC (avx512_bf16), encoding the quickstart's 5,183 SciFact
abstracts with MiniLM took 105.3 s in OpenVINO bf16, 135.8 s in torch bf16 and 231.2 s in fp32 (README, "Speed").
OpenVINO fuses the attention and the element-wise ops around the bf16 matmuls that torch runs one by one.

Why by hand: sentence-transformers' ``backend="openvino"`` goes through optimum-intel, which (like optimum-onnx,
issue 22) does not install beside transformers 5; ``openvino`` itself does. The module is traced by OpenVINO's
PyTorch frontend (``TorchScriptPythonDecoder`` + ``FrontEndManager``: what ``openvino.convert_model`` runs, the
same model to the bit) rather than by ``convert_model`` itself, which also sends usage telemetry unless the user
opted out: rankwise does not phone home. Reading an ONNX export instead ran ~10% slower (model calls on 600
abstracts: 48-52 docs/s against 54-57).

:func:`choose_runtime` decides where a dense encoder or cross-encoder runs: ``auto`` takes OpenVINO for bf16 on a
CPU when the package is installed (the ``openvino`` extra) and OpenVINO reports bf16 there, torch otherwise; fp32
stays on torch under ``auto`` (it is the reference every other precision is checked against), and int8 runs on
onnxruntime (:mod:`rankwise.config.onnx_int8`). IR files (XML + weights, never pickled) are cached by
:mod:`rankwise.config.export_cache` (kind ``openvino``), keyed by the module's weights, the recipe and the library
versions; the weights are stored in float32 (``compress_to_fp16=False``), so the fp32 path loses nothing.
"""

from __future__ import annotations

import importlib.util
import logging
import sys
import warnings
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

from rankwise.config.export_cache import cached_conversion, evaluating, module_key, positional_module
from rankwise.errors import MissingExtraError, RankwiseError

logger = logging.getLogger(__name__)

if TYPE_CHECKING:
    import numpy as np
    import torch

RUNTIMES = ("auto", "torch", "openvino")
# Bump when the conversion changes: old cache entries are then not reused.
RECIPE = "pytorch-frontend-float32-weights/v1"
XML_FILE, BIN_FILE = "model.xml", "model.bin"
VERSIONED = ("torch", "transformers", "sentence-transformers", "openvino")
HINTS = {"fp32": "f32", "bf16": "bf16"}


def import_openvino() -> Any:
    """``import openvino``, without its usage telemetry.

    Importing openvino sends an "import" event to Google Analytics (``openvino/tools/ovc/__init__.py``) unless the
    user opted out, and its converter sends more; where ``openvino_telemetry`` cannot be imported, openvino uses its
    own no-op stub. So, before openvino's first import in this process, that import is blocked (a ``None`` entry in
    ``sys.modules``: the import system's documented way to make an import fail). rankwise does not phone home.
    """
    if "openvino" not in sys.modules:
        sys.modules.setdefault("openvino_telemetry", None)  # type: ignore[assignment]
    import openvino

    return openvino


def openvino_installed() -> bool:
    return importlib.util.find_spec("openvino") is not None


def openvino_bf16() -> bool:
    """Whether OpenVINO's CPU plugin runs bf16 on this machine (its own check: AVX512-BF16 or AMX)."""
    try:
        ov = import_openvino()
        return "BF16" in ov.Core().get_property("CPU", "OPTIMIZATION_CAPABILITIES")
    except (ImportError, RuntimeError) as exc:  # a broken installation: auto falls back to torch
        logger.warning("openvino is installed but does not load (%s); not using it", exc)
        return False


def _on_cpu(device: str | None) -> bool:
    if device is not None:
        return str(device).startswith("cpu")
    import torch

    return not torch.cuda.is_available()


def choose_runtime(requested: str, precision: str, device: str | None = None) -> tuple[str, str]:
    """``(runtime, why)`` for an encoder or cross-encoder in ``precision`` (resolved: fp32 | bf16 | int8) on
    ``device``."""
    if requested not in RUNTIMES:
        raise RankwiseError(f"runtime must be one of {', '.join(RUNTIMES)}, not {requested!r}")
    if requested == "torch":
        return "torch", "asked for"
    if requested == "openvino":
        if not _on_cpu(device):
            raise RankwiseError(f"runtime openvino runs on the CPU only, not on device '{device or 'cuda'}'")
        if precision not in HINTS:
            raise RankwiseError(
                f"runtime openvino takes precision fp32 or bf16, not {precision} (int8 runs on onnxruntime)"
            )
        if not openvino_installed():
            raise MissingExtraError("openvino", "openvino")
        if precision == "bf16" and not openvino_bf16():
            raise RankwiseError(
                "runtime openvino: this CPU has no bf16 in OpenVINO (no avx512_bf16/amx); use precision fp32 or "
                "runtime torch"
            )
        return "openvino", "asked for"
    if precision != "bf16":
        return "torch", f"{precision} runs on {'onnxruntime' if precision == 'int8' else 'torch'}"
    if not _on_cpu(device):
        return "torch", "bf16 on a GPU runs on torch"
    if not openvino_installed():
        return "torch", "openvino is not installed (pip install 'rankwise[openvino]': bf16 ~1.3x faster on a CPU)"
    if not openvino_bf16():
        return "torch", "OpenVINO reports no bf16 on this CPU"
    return "openvino", "bf16 on this CPU runs ~1.3x faster in OpenVINO than in torch"


def openvino_model(
    module: torch.nn.Module,
    forward: Callable[[dict[str, Any]], Any],
    example: Mapping[str, torch.Tensor],
    *,
    output: str,
    stage: str,
    model_dir: str | Path | None = None,
    cache_dir: str | Path | None = None,
) -> Path:
    """The cached IR (``model.xml``) of ``forward(features) -> tensor`` over ``module``'s weights; converted if
    missing. ``example`` holds one batch of the input tensors (their names become the IR's input names; batch and
    sequence stay dynamic)."""
    if not openvino_installed():
        raise MissingExtraError("openvino", "openvino")
    names = sorted(example)
    key_parts = module_key(stage, module, names, output, RECIPE, VERSIONED)

    def build(tmp: Path) -> None:
        import torch

        ov = import_openvino()
        from openvino.frontend import FrontEndManager
        from openvino.frontend.pytorch.ts_decoder import TorchScriptPythonDecoder

        with evaluating(module), warnings.catch_warnings(), torch.inference_mode(False), torch.no_grad():
            warnings.simplefilter("ignore")  # tracer warnings
            wrapped = positional_module(module, names, forward)
            decoder = TorchScriptPythonDecoder(wrapped, example_input=tuple(example[name] for name in names))
            frontend = FrontEndManager().load_by_framework("pytorch")
            converted = frontend.convert(frontend.load(decoder))
        for port, name in zip(converted.inputs, names, strict=True):
            port.get_tensor().set_names({name})
        converted.outputs[0].get_tensor().set_names({output})
        ov.save_model(converted, str(tmp / XML_FILE), compress_to_fp16=False)

    entry = cached_conversion(
        key_parts,
        build,
        files=[XML_FILE, BIN_FILE],
        stage=stage,
        kind="openvino",
        model_dir=model_dir,
        cache_dir=cache_dir,
    )
    return entry / XML_FILE


class OpenVinoSession:
    """An IR compiled for the CPU in ``precision`` (fp32 | bf16); ``session(features) -> first output`` (numpy).

    Runs on torch's CPU thread count (``torch.get_num_threads()``), so a thread setting applies to both paths.
    """

    def __init__(self, path: str | Path, precision: str) -> None:
        import torch

        ov = import_openvino()
        if precision not in HINTS:
            raise RankwiseError(f"runtime openvino takes precision fp32 or bf16, not {precision}")
        self.path = Path(path)
        self.precision = precision
        config = {
            "INFERENCE_PRECISION_HINT": HINTS[precision],
            "PERFORMANCE_HINT": "LATENCY",
            "INFERENCE_NUM_THREADS": torch.get_num_threads(),
        }
        self.compiled = ov.Core().compile_model(str(self.path), "CPU", config)
        self.inputs = tuple(port.get_any_name() for port in self.compiled.inputs)

    def __call__(self, features: Mapping[str, np.ndarray]) -> np.ndarray:
        import numpy as np

        missing = [name for name in self.inputs if name not in features]
        if missing:
            raise RankwiseError(f"{self.path}: the OpenVINO model needs inputs {missing} the tokenizer did not give")
        feed = {name: np.ascontiguousarray(features[name], dtype=np.int64) for name in self.inputs}
        return np.asarray(self.compiled(feed)[0], dtype=np.float32)
