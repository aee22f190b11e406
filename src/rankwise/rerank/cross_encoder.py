"""Cross-encoder reranking with a sentence-transformers ``CrossEncoder`` (any hub name or local path).

Scores equal ``CrossEncoder.predict`` (same tokenisation, same activation) but the batching is ours:
every pair is tokenised once up front, pairs are sorted by their *token* count (``predict`` sorts by character
count), and a batch holds as many pairs as fit a token budget (``max_tokens``), so short pairs run in large
batches and long ones in small, with almost no padding. ``benchmarks/rerank.py`` measures the gain.

``precision`` (:mod:`rankwise.config.precision`): ``fp32`` (the default), ``bf16`` (the model cast to bfloat16
but its head kept in float32, see :func:`keep_head_fp32`; 1.8x fp32 for MiniLM on an AVX512-BF16 CPU, Spearman
0.9997 with the fp32 scores), ``int8`` (an int8 ONNX export run
by onnxruntime, cached, :mod:`rankwise.config.onnx_int8`) or ``auto`` (bf16 where native, else fp32).
``benchmarks/speed.py`` measures each against ``CrossEncoder.predict``.
``runtime`` (:mod:`rankwise.config.openvino_ir`): ``auto`` runs bf16 on OpenVINO on a CPU where it is installed and
reports bf16 (the trained SciFact model, 128 tokens, 400 pairs: 122-125 pairs/s against 94 in torch bf16 and 51-53
in fp32; 400 distinct scores, Spearman 0.9999 with fp32), else torch; ``torch`` | ``openvino`` ask for one.

The default budget depends on the device. On a CPU, batches past a few thousand tokens run *slower* per pair
(their activations no longer stay in cache). SciFact pairs, 2 cores: at 256 tokens, 2,048 tokens a batch scored
15.1 pairs/s, 4,096 15.4 and 16,384 13.3, against 13.1 for ``predict``'s 32 pairs a batch; at 128 tokens, 2,048
beat ``predict`` by 1.07-1.20x in three runs, while 4,096 (``predict``'s own 32 pairs) only matched it. An
accelerator wants large batches, and so does bfloat16 on a CPU: at 128 tokens on an AVX512-BF16 EPYC (2 busy
cores) bf16 scored 0.95x ``predict`` with 2,048 tokens a batch, 1.36x with 4,096, 1.82x with 8,192 and 1.74x
with 16,384; int8 2.10x, 2.16x, 2.36x and 2.17x.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from rankwise.config.defaults import DEFAULT_MODELS
from rankwise.config.models import resolve_path
from rankwise.config.openvino_ir import choose_runtime
from rankwise.config.precision import choose_precision
from rankwise.errors import RankwiseError, loading_model
from rankwise.rerank.base import Reranker, assemble_run, collect_candidates, progress
from rankwise.rerank.windows import DEFAULT_STRIDE, DEFAULT_WORDS, check_windows, fold, passage_windows
from rankwise.types import Document, Query, Run

if TYPE_CHECKING:
    from sentence_transformers import CrossEncoder

# A hub cross-encoder for real use; no package bundles a trained one, so offline users pass a trained path
# (``rankwise train reranker`` writes one).
DEFAULT_MODEL = DEFAULT_MODELS["cross-encoder"]
# Written next to the weights by ``rankwise train reranker``: the first-stage weight it picked on its dev split,
# read back by ``rankwise rerank --interpolate auto``.
TRAINED_SETTINGS = "rankwise_rerank.json"
# Padded tokens per forward pass when the caller gives no ``max_tokens`` (see the module docstring).
CPU_TOKEN_BUDGET = 2048
CPU_TOKEN_BUDGET_REDUCED = 8192  # bf16 and int8 on a CPU
ACCELERATOR_TOKEN_BUDGET = 16384
# Pairs tokenized at a time (see CrossEncoderReranker._encode).
ENCODE_CHUNK = 4096


def trained_pick(model: str) -> tuple[float, str]:
    """(first-stage weight, window aggregate it was picked with) stored by ``rankwise train reranker``."""
    import json
    from pathlib import Path

    from rankwise.rerank.windows import AGGREGATES

    path = Path(model) / TRAINED_SETTINGS
    if not path.is_file():
        raise RankwiseError(
            f"interpolate auto needs a model written by `rankwise train reranker` or `rankwise rankrag train` "
            f"with a dev split ({path} does not exist); "
            "pass a weight in [0, 1] instead"
        )
    try:
        settings = json.loads(path.read_text(encoding="utf-8"))
        weight = settings["first_stage_weight"]
        windows = settings.get("windows", "first")  # models trained before window scoring: plain
    except (ValueError, KeyError, TypeError, AttributeError) as exc:
        raise RankwiseError(f"{path}: no readable 'first_stage_weight' ({exc})") from exc
    if not isinstance(weight, int | float) or not 0 <= weight <= 1:
        raise RankwiseError(f"{path}: 'first_stage_weight' must be a number in [0, 1], not {weight!r}")
    if windows not in AGGREGATES:
        raise RankwiseError(f"{path}: 'windows' must be one of {', '.join(AGGREGATES)}, not {windows!r}")
    return float(weight), windows


def load_cross_encoder(
    model: str,
    max_length: int | None = None,
    device: str | None = None,
    trust_remote_code: bool = False,
    num_labels: int | None = None,
) -> CrossEncoder:
    """Load a ``CrossEncoder`` by hub name or path (``"minilm"`` = the bundled MiniLM body, see models.py)."""
    from sentence_transformers import CrossEncoder

    path = resolve_path(model)
    kwargs: dict[str, Any] = {"trust_remote_code": trust_remote_code}
    if max_length is not None:
        kwargs["max_length"] = max_length
    if device is not None:
        kwargs["device"] = device
    if num_labels is not None:
        kwargs["num_labels"] = num_labels
    with loading_model(model, "cross-encoder"):
        return CrossEncoder(path, **kwargs)


class CrossEncoderReranker(Reranker):
    """Rerank with a cross-encoder; ``model`` is a name, a path or a loaded ``CrossEncoder``.

    ``max_length`` caps query + passage tokens (default: the model's own limit). ``batch_size`` caps pairs per
    forward pass; ``max_tokens`` caps padded tokens per forward pass (the length-bucketing budget; default
    :data:`CPU_TOKEN_BUDGET` on a CPU in fp32, :data:`CPU_TOKEN_BUDGET_REDUCED` in bf16/int8,
    :data:`ACCELERATOR_TOKEN_BUDGET` on an accelerator).

    ``windows`` other than ``"first"`` scores each document as several windows (``rerank/windows.py``): its
    contents, then its title before each ``window_words``-word stretch of the text starting every
    ``window_stride`` words, folded into one score by ``max``, ``mean`` or ``top2``. It costs a forward pass per
    window; with 128 tokens, 70 words and a stride of 60 suit SciFact-length abstracts.
    """

    def __init__(
        self,
        model: str | CrossEncoder = DEFAULT_MODEL,
        max_length: int | None = None,
        batch_size: int = 128,
        max_tokens: int | None = None,
        device: str | None = None,
        trust_remote_code: bool = False,
        show_progress: bool = True,
        windows: str = "first",
        window_words: int = DEFAULT_WORDS,
        window_stride: int = DEFAULT_STRIDE,
        precision: str = "fp32",
        int8_cache: str | Path | None = None,
        runtime: str = "auto",
        openvino_cache: str | Path | None = None,
    ) -> None:
        check_windows(windows, window_words, window_stride)
        self.windows, self.window_words, self.window_stride = windows, window_words, window_stride
        if batch_size < 1 or (max_tokens is not None and max_tokens < 1):
            raise RankwiseError(f"batch_size and max_tokens must be positive, got {batch_size}, {max_tokens}")
        loaded_here = isinstance(model, str)
        model_dir = resolve_path(model) if isinstance(model, str) else None
        if isinstance(model, str):
            model = load_cross_encoder(model, max_length, device, trust_remote_code)
        self.precision_choice = choose_precision(precision, "cross-encoder", str(model.device))
        self.runtime, why = choose_runtime(runtime, self.precision_choice.precision, str(model.device))
        self.runtime_line = f"cross-encoder: runtime {self.runtime} ({runtime}: {why})"
        if model_dir is None:
            model_dir = getattr(getattr(model.model, "config", None), "_name_or_path", None)
        self._session: Any = None  # an int8 onnxruntime or OpenVINO session runs the model instead of torch
        if self.runtime == "openvino":
            from rankwise.config.openvino_ir import OpenVinoSession

            xml = _export(model, model_dir, openvino_cache, "openvino")
            self._session = OpenVinoSession(xml, self.precision_choice.precision)
        elif self.precision_choice.precision == "bf16":
            import copy

            import torch

            if not loaded_here:
                model = copy.deepcopy(model)
            keep_head_fp32(model.model.to(torch.bfloat16))
        elif self.precision_choice.precision == "int8":
            from rankwise.config.onnx_int8 import Int8Session

            self._session = Int8Session(_export(model, model_dir, int8_cache, "int8"))
        self.model = model
        self.max_length = max_length or model.max_seq_length or model.tokenizer.model_max_length
        self.batch_size = batch_size
        if max_tokens is None:
            on_cpu = model.device.type == "cpu"
            cpu_budget = CPU_TOKEN_BUDGET if self.precision == "fp32" else CPU_TOKEN_BUDGET_REDUCED
            max_tokens = cpu_budget if on_cpu else ACCELERATOR_TOKEN_BUDGET
        self.max_tokens = max_tokens
        self.show_progress = show_progress

    @property
    def precision(self) -> str:
        """The precision this reranker runs in (``auto`` resolved): fp32, bf16 or int8."""
        return self.precision_choice.precision

    def rerank(
        self, queries: Mapping[str, Query], run: Run, corpus: Mapping[str, Document], k: int | None = 100
    ) -> Run:
        """As :meth:`Reranker.rerank`; with ``windows`` set, each document scores as its folded window scores."""
        if self.windows == "first":
            return super().rerank(queries, run, corpus, k)
        candidates = collect_candidates(queries, run, corpus, k)
        pairs: list[tuple[str, str]] = []
        owner: list[int] = []
        for index, ((_, doc_id), (query, _)) in enumerate(zip(candidates.keys, candidates.pairs, strict=True)):
            for text in passage_windows(corpus[doc_id], self.window_words, self.window_stride):
                pairs.append((query, text))
                owner.append(index)
        per_doc: list[list[float]] = [[] for _ in candidates.keys]
        for index, value in zip(owner, self.score(pairs), strict=True):
            per_doc[index].append(value)
        return assemble_run(candidates.keys, [fold(values, self.windows) for values in per_doc])

    def _encode(self, pairs: Sequence[tuple[str, str]]) -> dict[str, list[Any]]:
        """The token ids of every pair, as one int32 array per pair and key (``tokenizer.pad`` takes them).

        Tokenized a chunk at a time: a fast tokenizer's output for all pairs at once (Python lists of ints plus
        per-token ``Encoding`` objects) held ~6 GB for a 110k-pair window rerank of SciFact.
        """
        import numpy as np

        encoded: dict[str, list[Any]] = {}
        for start in range(0, len(pairs), ENCODE_CHUNK):
            chunk = pairs[start : start + ENCODE_CHUNK]
            batch = self.model.tokenizer(
                [query for query, _ in chunk],
                [passage for _, passage in chunk],
                truncation="longest_first",
                max_length=self.max_length,
                return_attention_mask=False,  # all ones until padded; tokenizer.pad writes it
            )
            for key, rows in batch.items():
                encoded.setdefault(key, []).extend(np.asarray(row, dtype=np.int32) for row in rows)
        return encoded

    def score(self, pairs: Sequence[tuple[str, str]]) -> list[float]:
        import numpy as np
        import torch

        if not pairs:
            return []
        tokenizer = self.model.tokenizer
        encoded = self._encode(pairs)
        lengths = np.array([len(ids) for ids in encoded["input_ids"]])
        order = np.argsort(-lengths, kind="stable")  # longest first: a memory problem shows up at once
        scores = np.empty(len(pairs), dtype=np.float64)
        hf_model: Any = self.model.model  # the transformers model under the sentence-transformers wrapper
        if hf_model is None:
            raise RankwiseError("this CrossEncoder has no underlying transformers model to run")
        activation = self.model.activation_fn
        was_training = hf_model.training
        hf_model.eval()
        try:
            with torch.inference_mode(), progress(len(pairs), self.show_progress) as advance:
                start = 0
                while start < len(order):
                    size = max(1, min(self.batch_size, self.max_tokens // int(lengths[order[start]])))
                    batch = order[start : start + size]
                    features = tokenizer.pad(
                        {key: [values[i] for i in batch] for key, values in encoded.items()},
                        return_tensors="np" if self._session is not None else "pt",
                    )
                    if self._session is not None:
                        logits = torch.from_numpy(self._session(features)).float()
                    else:
                        logits = hf_model(**features.to(hf_model.device)).logits.float()
                    if activation is not None:
                        logits = activation(logits)
                    scores[batch] = logits[:, 0].cpu().numpy()
                    start += size
                    advance(len(batch))
        finally:
            hf_model.train(was_training)
        return scores.tolist()


HEAD_MODULES = ("pooler", "classifier")


def keep_head_fp32(model: Any) -> Any:
    """Put ``model``'s pooler and classifier (the modules so named) back in float32, their inputs cast up to it.

    A bfloat16 head returns logits with 8 significant bits: a trained SciFact cross-encoder's logits around 2.5
    came back in steps of 1/64, so different documents tied (two queries' top documents both scored exactly
    0.92303919 after the sigmoid) and the ranking among them fell to the first stage's order. The head is a few
    thousand multiply-adds per pair against millions in the body, so float32 there costs nothing measurable.
    """
    import torch

    def upcast(_module: Any, args: tuple[Any, ...], kwargs: dict[str, Any]) -> tuple[tuple[Any, ...], dict[str, Any]]:
        def up(value: Any) -> Any:
            return value.float() if torch.is_tensor(value) and value.is_floating_point() else value

        return tuple(up(a) for a in args), {key: up(value) for key, value in kwargs.items()}

    for name, module in model.named_modules():
        if name.rsplit(".", 1)[-1] in HEAD_MODULES:
            module.float().register_forward_pre_hook(upcast, with_kwargs=True)
    return model


def _export(model: CrossEncoder, model_dir: str | None, cache_dir: str | Path | None, kind: str) -> Path:
    """The cached int8 ONNX export (``kind`` int8) or OpenVINO IR (``openvino``) of ``model``'s transformers model
    (logits from the tokenizer's outputs)."""
    from rankwise.config.onnx_int8 import int8_model
    from rankwise.config.openvino_ir import openvino_model

    hf_model: Any = model.model
    example = model.tokenizer(["a query"], ["a passage to score"], return_tensors="pt")
    convert = int8_model if kind == "int8" else openvino_model
    return convert(
        hf_model,
        lambda features: hf_model(**features).logits,
        dict(example),
        output="logits",
        stage="cross-encoder",
        model_dir=model_dir,
        cache_dir=cache_dir,
    )
