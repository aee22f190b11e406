"""RankRAG training: LoRA instruction tuning of one causal LM on the RankRAG blend (arXiv 2407.02485).

``train_rankrag(config)``:

1. Stage-I (optional, ``stage1:``): general instruction SFT on a user-supplied data set (JSONL in trl's
   ``messages`` or ``prompt``/``completion`` format, or a Hugging Face dataset name). The adapter is merged into
   the base and saved to ``<output_dir>/stage1/model``, the start point of Stage-II.
2. Stage-II: the blend (``blend_path``, or a ``blend:`` section built on the fly into ``<output_dir>/blend.jsonl``)
   in trl's conversational prompt-completion format: ``SFTTrainer`` applies the chat template and puts the loss
   on the completion (assistant) tokens only (``completion_only_loss=True``), with logits computed at those
   positions only (:mod:`rankwise.rankrag.answer_loss`).
3. LoRA adapters (peft) on every linear layer by default; ``qlora: true`` loads the base in 4 bits
   (bitsandbytes, CUDA only — guarded, and untested on this project's CPU-only machines).
4. Writes ``adapter/`` (the LoRA weights), ``model/`` (a merged plain checkpoint with ``merge: true``, else the
   adapter; both load with :func:`rankwise.config.models.load_causal_lm`), ``metrics.json``, ``log.jsonl`` (loss and
   learning rate as they come) and ``config.json``.

Checkpoints go to ``<output_dir>/checkpoints`` every ``save_steps``; rerunning the same command after a kill
resumes from the last one (optimizer, scheduler, RNG and data order restored by the HF Trainer); rerunning it
after it finished returns the saved metrics. The budget is ``max_steps`` optimizer steps.

Multi-GPU: the trainer is the HF Trainer, so the same command runs data-parallel under a launcher, e.g.
``accelerate launch --num_processes 4 -m rankwise rankrag train --config train.yaml`` or
``torchrun --nproc-per-node 4 -m rankwise rankrag train --config train.yaml``; ``batch_size`` is then per
device. Only the main process writes the blend, the merged model and metrics.json.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Callable
from functools import partial
from pathlib import Path
from typing import Any

from rankwise.config.models import load_causal_lm, load_tokenizer, resolve_dtype, resolve_model, save_causal_lm
from rankwise.config.rankrag_train import RankRAGTrainConfig, blend_config
from rankwise.data.files import atomic_dir, atomic_write_text
from rankwise.errors import MissingExtraError, RankwiseError
from rankwise.rankrag.answer_loss import answer_only_trainer
from rankwise.rankrag.blend import build_blend, write_blend
from rankwise.rankrag.curriculum import apply_curriculum, apply_sequential
from rankwise.rankrag.sft_data import load_sft_dataset
from rankwise.train.tracking import start_tracking

logger = logging.getLogger(__name__)

PRESET_FILE = "rankrag.json"  # in model/: the prompt settings it was trained with (read by the preset)
BASE_FILE = "rankwise_base.json"  # in an adapter directory: the base model the adapter belongs to
RESUME_IGNORED = {"threads", "resume", "device", "tracking"}


def stage2_blend(config: RankRAGTrainConfig, out: Path, is_main: bool = True) -> Path:
    """The Stage-II blend file: ``blend_path``, or the ``blend:`` section built once into ``out/blend.jsonl``."""
    if config.blend_path is not None:
        return Path(config.blend_path)
    target = out / "blend.jsonl"
    if not target.is_file() and is_main:
        section = {"max_example_tokens": config.max_length, **(config.blend or {})}  # fit the trainer's window
        examples, summary = build_blend(blend_config(section))
        write_blend(examples, target)
        atomic_write_text(out / "blend_summary.json", json.dumps(summary, indent=2, default=str) + "\n")
    waited = 0
    while not target.is_file():  # other ranks of a multi-process launch wait for the main one to write it
        if waited > 3600:
            raise RankwiseError(f"{target}: the main process has not written the blend after an hour")
        time.sleep(2)
        waited += 2
    return target


def preset_settings(config: RankRAGTrainConfig) -> dict[str, Any]:
    """How the blend built its prompts, so the preset reranks and answers with the same ones."""
    if config.blend is None:
        return {}
    blend = blend_config(config.blend)
    return {
        "template": blend.qa_template,
        "max_passage_words": blend.max_passage_words,
        "max_passage_tokens": blend.max_passage_tokens,
        "ranking_template": blend.ranking_template,
        "ranking_system_prompt": blend.ranking_system_prompt,
    }


def train_rankrag(config: RankRAGTrainConfig, show_progress: bool = True, callbacks: list | None = None) -> dict:
    """Run Stage-I (if configured) and Stage-II (module docstring); returns the metrics in ``metrics.json``."""
    import torch
    from transformers import set_seed

    started, cpu_started = time.perf_counter(), time.process_time()
    if config.threads:
        torch.set_num_threads(config.threads)
    out = Path(config.output_dir)
    out.mkdir(parents=True, exist_ok=True)
    _check_resumable(config, out)
    finished = out / "metrics.json"
    if config.resume and finished.is_file() and (out / "model").is_dir():
        logger.info("%s: already trained", out)
        done = {**json.loads(finished.read_text(encoding="utf-8")), "already_done": True}
        if "interpolation" not in done and _picked(config, out, show_progress, done):  # trained before the pick
            kept = {key: value for key, value in done.items() if key != "already_done"}
            atomic_write_text(finished, json.dumps(kept, indent=2) + "\n")
        return done
    main = _is_main_process()
    atomic_write_text(out / "config.json", json.dumps(config.model_dump(mode="json"), indent=2) + "\n")
    blend_file = stage2_blend(config, out, main)
    tracker = start_tracking(config.tracking, "rankrag", config)  # logs every Trainer log; no dev metric: best = final
    callbacks = [tracker.callback(), *(callbacks or [])]

    base, stage1_steps = config.model, 0
    if config.stage1 is not None:
        stage1_out = out / "stage1"
        if not (stage1_out / "model").is_dir():
            set_seed(config.seed)
            dataset = load_sft_dataset(config.stage1.data, config.stage1.split, config.stage1.limit)
            lr = config.stage1.learning_rate or config.learning_rate
            trainer, tokenizer = _fit(config, config.model, dataset, stage1_out, config.stage1.max_steps, lr, callbacks)
            stage1_steps = trainer.state.global_step
            if main:
                with atomic_dir(stage1_out / "model") as tmp:
                    save_causal_lm(trainer.model.merge_and_unload(), tokenizer, tmp)
        base = str(stage1_out / "model")

    set_seed(config.seed)
    ordering = _ordering(config, out)
    dataset = load_sft_dataset(blend_file, keep_task=ordering is not None)
    settings = preset_settings(config)
    trainer, tokenizer = _fit(
        config, base, dataset, out, config.max_steps, config.learning_rate,
        [preset_callback(settings), *(callbacks or [])], show_progress, ordering,
    )  # fmt: skip
    state = trainer.state
    trainable = sum(p.numel() for p in trainer.model.parameters() if p.requires_grad)
    if main:
        with atomic_dir(out / "adapter") as tmp:
            trainer.model.save_pretrained(str(tmp))
            tokenizer.save_pretrained(str(tmp))
            atomic_write_text(tmp / BASE_FILE, json.dumps({"model": base}) + "\n")
        with atomic_dir(out / "model") as tmp:
            atomic_write_text(tmp / PRESET_FILE, json.dumps(settings, indent=2) + "\n")
            if config.merge:
                save_causal_lm(trainer.model.merge_and_unload(), tokenizer, tmp)
            else:
                trainer.model.save_pretrained(str(tmp))
                tokenizer.save_pretrained(str(tmp))
                atomic_write_text(tmp / BASE_FILE, json.dumps({"model": base}) + "\n")
    losses = [entry["loss"] for entry in state.log_history if "loss" in entry]
    metrics = {
        "steps": state.global_step,
        "stage1_steps": stage1_steps,
        "examples": len(dataset),
        "examples_trained": trainer.examples_trained,  # after trl dropped those cut before their answer
        "blend": str(blend_file),
        "first_loss": losses[0] if losses else None,
        "last_loss": losses[-1] if losses else None,
        "train_seconds": round(state.log_history[-1].get("train_runtime", 0.0), 1) if state.log_history else None,
        "seconds": round(time.perf_counter() - started, 1),
        "cpu_seconds": round(time.process_time() - cpu_started, 1),
        "trainable_parameters": trainable,
        "merged": config.merge,
        "resumed_from": trainer.resumed_from,
        "model_dir": str(out / "model"),
    }
    if getattr(trainer, "order", None):
        metrics["curriculum" if config.curriculum is not None else "sequential"] = trainer.order
    del trainer, state  # the pick loads the saved model afresh: free the trained copy and its optimizer first
    from accelerate.utils import release_memory  # installed: the Trainer that just ran needs it

    release_memory()  # accelerate's: collects the trainer's reference cycles, empties the device cache
    if main:
        atomic_write_text(finished, json.dumps(metrics, indent=2) + "\n")  # trained: a failed pick keeps that
        if _picked(config, out, show_progress, metrics):
            atomic_write_text(finished, json.dumps(metrics, indent=2) + "\n")
        tracker.finish(out / "model", metrics)
    return metrics


def _ordering(config: RankRAGTrainConfig, out: Path) -> Callable[[Any], dict[str, Any]] | None:
    """How Stage II orders its examples (:mod:`rankwise.rankrag.curriculum`); None = the trainer's shuffle."""
    if config.curriculum is not None:
        gold, mixed = config.curriculum.gold_until, config.curriculum.mixed_until
        return partial(apply_curriculum, gold_until=gold, mixed_until=mixed, seed=config.seed, out=out)
    if config.schedule == "sequential":
        return partial(apply_sequential, seed=config.seed, out=out)
    return None


def _picked(config: RankRAGTrainConfig, out: Path, show_progress: bool, metrics: dict[str, Any]) -> bool:
    """Pick the ``interpolate: auto`` weight on dev (:mod:`rankwise.rankrag.pick`) into ``metrics``, if configured."""
    from rankwise.rankrag.pick import dev_source, pick_interpolation

    if dev_source(config) is None:
        return False
    metrics["interpolation"] = pick_interpolation(config, out / "model", show_progress)
    return True


def _fit(
    config: RankRAGTrainConfig,
    base: str,
    dataset: Any,
    out: Path,
    max_steps: int,
    learning_rate: float,
    callbacks: list | None,
    show_progress: bool = True,
    ordering: Callable[[Any], dict[str, Any]] | None = None,
) -> tuple[Any, Any]:
    """LoRA-tune ``base`` on ``dataset`` for ``max_steps`` with checkpoints in ``out/checkpoints`` (resumed)."""
    import torch
    from peft import LoraConfig
    from transformers.trainer_utils import get_last_checkpoint
    from trl import SFTConfig, SFTTrainer

    model, tokenizer = load_base(base, config)
    checkpoints = out / "checkpoints"
    args = SFTConfig(
        output_dir=str(checkpoints),
        max_steps=max_steps,
        per_device_train_batch_size=config.batch_size,
        gradient_accumulation_steps=config.gradient_accumulation_steps,
        learning_rate=learning_rate,
        lr_scheduler_type="linear",
        warmup_steps=config.warmup_ratio,  # a float < 1 is a ratio of the total steps (transformers v5)
        weight_decay=config.weight_decay,
        max_length=config.max_length,
        completion_only_loss=True,
        activation_checkpointing=config.gradient_checkpointing,
        bf16=torch.cuda.is_available() and resolve_dtype(config.dtype) == torch.bfloat16,  # CPU: model in dtype
        fp16=False,
        logging_steps=config.logging_steps,
        save_strategy="steps",
        save_steps=config.save_steps,
        save_total_limit=config.save_total_limit,
        seed=config.seed,
        data_seed=config.seed,
        report_to="none",
        disable_tqdm=not show_progress,
        use_cpu=config.device == "cpu",
        dataloader_num_workers=0,
        dataloader_pin_memory=False,
        train_sampling_strategy="random" if ordering is None else "sequential",  # the curriculum's order
    )
    lora = LoraConfig(
        task_type="CAUSAL_LM",
        r=config.lora.r,
        lora_alpha=config.lora.alpha,
        lora_dropout=config.lora.dropout,
        **lora_targets(model, config.lora.target_modules, config.lora.layers),
    )
    trainer = answer_only_trainer(SFTTrainer)(
        model=model,
        args=args,
        train_dataset=dataset,
        processing_class=tokenizer,
        peft_config=lora,
        callbacks=[json_log_callback(out / "log.jsonl"), *(callbacks or [])],
    )
    # trl cuts each example at max_length and drops those left with no answer token: say so, they are lost data
    trainer.examples_trained = len(trainer.train_dataset)
    if trainer.examples_trained < len(dataset):
        logger.warning(
            "%d of %d examples have their whole answer beyond max_length %d and are dropped by trl: raise "
            "max_length or cut passages harder (blend: max_passage_words / max_passage_tokens)",
            len(dataset) - trainer.examples_trained, len(dataset), config.max_length,
        )  # fmt: skip
    if ordering is not None:
        trainer.order = ordering(trainer)
    last = get_last_checkpoint(str(checkpoints)) if checkpoints.is_dir() and config.resume else None
    if last:
        logger.info("resuming from %s", last)
    trainer.train(resume_from_checkpoint=last)
    trainer.resumed_from = last
    return trainer, tokenizer


def lora_targets(model: Any, target_modules: list[str] | str, layers: int | None) -> dict[str, Any]:
    """peft ``target_modules`` (+ ``layers_to_transform`` for the last ``layers`` transformer layers).

    peft refuses ``layers_to_transform`` with the string ``all-linear``, so with ``layers`` set that string is
    spelled out as the names of the model's linear layers, output head excepted (what peft's ``all-linear`` means).
    """
    if layers is None:
        return {"target_modules": target_modules}
    import torch

    total = model.config.num_hidden_layers
    if layers > total:
        raise RankwiseError(f"lora.layers: {layers} is more than the model's {total} layers")
    if target_modules == "all-linear":
        head = model.get_output_embeddings()
        target_modules = sorted(
            {name.rsplit(".", 1)[-1] for name, module in model.named_modules()
             if isinstance(module, torch.nn.Linear) and module is not head}
        )  # fmt: skip
    elif isinstance(target_modules, str):
        raise RankwiseError("lora.layers needs target_modules as a list of names (or 'all-linear'), not a regex")
    return {"target_modules": target_modules, "layers_to_transform": list(range(total - layers, total))}


def load_base(name: str, config: RankRAGTrainConfig) -> tuple[Any, Any]:
    """The model to put adapters on: plain (``dtype``), or 4-bit for QLoRA when bitsandbytes and CUDA exist."""
    import torch

    if not config.qlora:
        model, tokenizer = load_causal_lm(
            name, dtype=config.dtype, trust_remote_code=config.trust_remote_code, device=config.device
        )  # device None: the GPU where there is one (the Trainer's choice too); "cpu" keeps it off the GPU
        model.train()
        return model, tokenizer
    # QLoRA: untested here (no GPU on this project's machines); follows peft's documented recipe.
    if not torch.cuda.is_available():
        raise RankwiseError("qlora: true needs a CUDA GPU (bitsandbytes 4-bit); set qlora: false on the CPU")
    try:
        import bitsandbytes  # noqa: F401
    except ImportError as exc:
        raise MissingExtraError("bitsandbytes", "qlora") from exc
    from peft import prepare_model_for_kbit_training
    from transformers import AutoModelForCausalLM, BitsAndBytesConfig

    path, gguf = resolve_model(name)
    if gguf:
        raise RankwiseError("qlora needs a plain checkpoint (hub name or directory), not a GGUF file")
    quantization = BitsAndBytesConfig(
        load_in_4bit=True, bnb_4bit_quant_type="nf4", bnb_4bit_compute_dtype=resolve_dtype(config.dtype)
    )
    model = AutoModelForCausalLM.from_pretrained(
        path, quantization_config=quantization, trust_remote_code=config.trust_remote_code
    )
    model = prepare_model_for_kbit_training(model, use_gradient_checkpointing=config.gradient_checkpointing)
    return model, load_tokenizer(name, trust_remote_code=config.trust_remote_code)


def _is_main_process() -> bool:
    import os

    return int(os.environ.get("RANK", "0")) == 0


def _check_resumable(config: RankRAGTrainConfig, out: Path) -> None:
    """Refuse to resume checkpoints written under a different config (that would mix two experiments)."""
    saved = out / "config.json"
    if not (config.resume and saved.is_file()):
        return
    previous = json.loads(saved.read_text(encoding="utf-8"))
    current = config.model_dump(mode="json")
    defaults = RankRAGTrainConfig.model_construct().model_dump(mode="json")
    changed = sorted(k for k in current if k not in RESUME_IGNORED and previous.get(k, defaults.get(k)) != current[k])
    if changed:
        raise RankwiseError(
            f"{out} holds a run with different settings ({', '.join(changed)}): "
            "use another output_dir, or set resume: false to start over"
        )


def json_log_callback(path: Path) -> Any:
    """A ``TrainerCallback`` that appends every Trainer log (loss, learning rate, ...) with the wall time to a
    JSON-lines file and logs the loss."""
    from transformers import TrainerCallback

    class JsonLogCallback(TrainerCallback):
        def __init__(self) -> None:
            self.started = time.perf_counter()

        def on_log(self, args: Any, state: Any, control: Any, logs: dict | None = None, **kwargs: Any) -> None:
            if logs and state.is_world_process_zero:
                entry = {"step": state.global_step, "elapsed_s": round(time.perf_counter() - self.started, 1), **logs}
                with path.open("a", encoding="utf-8") as handle:
                    handle.write(json.dumps(entry) + "\n")
                if "loss" in logs:
                    logger.info("step %d/%d loss %.4f", state.global_step, state.max_steps, logs["loss"])

    return JsonLogCallback()


def preset_callback(settings: dict[str, Any]) -> Any:
    """A ``TrainerCallback`` that puts ``rankrag.json`` in every checkpoint, so that ``--rankrag checkpoint-N``
    prompts as the blend did (like ``model/``)."""
    from transformers import TrainerCallback

    class PresetCallback(TrainerCallback):
        def on_save(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
            folder = Path(args.output_dir) / f"checkpoint-{state.global_step}"
            if state.is_world_process_zero and folder.is_dir():
                atomic_write_text(folder / PRESET_FILE, json.dumps(settings, indent=2) + "\n")

    return PresetCallback()
