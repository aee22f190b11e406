"""A cache of models converted for another runtime (int8 ONNX, OpenVINO IR), keyed by what went into them.

An entry is a folder ``<stage>-<key prefix>`` under a cache root, holding the converted files and an ``info.json``
that lists what went into its key (a sha256 of the torch module's weights and config, the recipe, the library
versions, ...) and the sha256 of every file, checked on reuse; so a changed model, recipe or library builds a new
entry, and a corrupted one is rebuilt. Entries are built in a temporary folder and moved into place, so a killed
build leaves nothing half-written. Nothing in it is pickled.

The root sits beside the model directory (``<model dir>.rankwise-<kind>/``, outside the model folder so that the
model's own files, and what hashes them, stay untouched) when that is writable and not inside a Python
installation, else under ``$XDG_CACHE_HOME/rankwise/<kind>`` (``~/.cache``).
"""

from __future__ import annotations

import hashlib
import importlib.metadata
import json
import logging
import os
import shutil
import tempfile
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any

from rankwise.errors import RankwiseError

if TYPE_CHECKING:
    import torch

logger = logging.getLogger(__name__)

INFO_FILE = "info.json"


def library_versions(names: Iterable[str]) -> dict[str, str]:
    """``{package: installed version}`` ("-" where not installed)."""
    versions = {}
    for name in names:
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


def module_key(
    stage: str,
    module: torch.nn.Module,
    names: Sequence[str],
    output: str,
    recipe: str,
    versioned: Iterable[str],
    **extra: Any,
) -> dict[str, Any]:
    """What a conversion of ``module``'s forward depends on: the key parts :func:`cached_conversion` hashes."""
    return {
        "stage": stage,
        "weights_sha256": weights_digest(module),
        "inputs": list(names),
        "output": output,
        **extra,
        "recipe": recipe,
        "versions": library_versions(versioned),
    }


@contextmanager
def evaluating(module: torch.nn.Module) -> Iterator[None]:
    """``module`` in eval mode inside the block (traced without dropout), its own mode restored after."""
    was_training = module.training
    module.eval()
    try:
        yield
    finally:
        module.train(was_training)


def positional_module(
    module: torch.nn.Module, names: Sequence[str], forward: Callable[[dict[str, Any]], Any]
) -> torch.nn.Module:
    """The module to trace: positional tensors (named ``names``) -> ``forward(features)``, ``module`` inside (what
    both the int8 ONNX export and the OpenVINO conversion trace)."""
    import torch

    class Wrapped(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.inner = module

        def forward(self, *tensors: torch.Tensor) -> torch.Tensor:
            return forward(dict(zip(names, tensors, strict=True)))

    return Wrapped().eval()


def default_cache_root(model_dir: str | Path | None, kind: str = "int8") -> Path:
    """``<model dir>.rankwise-<kind>`` beside a local, writable model directory, else the user cache (also for
    models installed as Python packages, such as the bundled MiniLM: an installation is no place for caches)."""
    if model_dir is not None:
        path = Path(model_dir).expanduser().resolve()
        installed = {"site-packages", "dist-packages"} & set(path.parts)
        if path.is_dir() and not installed and os.access(path.parent, os.W_OK):
            return path.parent / f"{path.name}.rankwise-{kind}"
    base = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache")
    return base / "rankwise" / kind


def sha256_of(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _valid_entry(directory: Path, key: str, files: Sequence[str]) -> bool:
    info_path = directory / INFO_FILE
    if not info_path.is_file() or not all((directory / name).is_file() for name in files):
        return False
    try:
        info = json.loads(info_path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return False
    if not isinstance(info, dict) or info.get("key") != key:
        return False
    recorded = info.get("sha256")
    return isinstance(recorded, dict) and all(recorded.get(name) == sha256_of(directory / name) for name in files)


def cached_conversion(
    key_parts: Mapping[str, Any],
    build: Callable[[Path], None],
    *,
    files: Sequence[str],
    stage: str,
    kind: str,
    model_dir: str | Path | None = None,
    cache_dir: str | Path | None = None,
) -> Path:
    """The cache entry (a folder) for ``key_parts``; built by ``build(tmp)``, which writes ``files`` into ``tmp``,
    when missing or invalid. ``kind`` (``int8``, ``openvino``) names the default root, ``stage`` the entry."""
    key = hashlib.sha256(json.dumps(dict(key_parts), sort_keys=True).encode()).hexdigest()
    root = Path(cache_dir) if cache_dir is not None else default_cache_root(model_dir, kind)
    directory = root / f"{stage}-{key[:16]}"
    if _valid_entry(directory, key, files):
        logger.info("%s: reusing the %s model in %s", stage, kind, directory)
        return directory
    logger.info("%s: converting the model for %s in %s (once per model and library versions)", stage, kind, root)
    try:
        root.mkdir(parents=True, exist_ok=True)
        tmp = Path(tempfile.mkdtemp(prefix=f".{directory.name}.", dir=root))
    except OSError as exc:
        raise RankwiseError(f"{root}: cannot write the {kind} model cache ({exc.strerror or exc})") from exc
    try:
        build(tmp)
        info = {"key": key, **key_parts, "sha256": {name: sha256_of(tmp / name) for name in files}}
        (tmp / INFO_FILE).write_text(json.dumps(info, indent=1) + "\n", encoding="utf-8")
        if directory.exists():  # a stale or corrupted entry under the same key (a race loses nothing: same bytes)
            shutil.rmtree(directory, ignore_errors=True)
        os.replace(tmp, directory)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return directory
