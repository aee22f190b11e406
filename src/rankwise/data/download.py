"""Fetch data for users who are online: BEIR zips from their published URL, files from the Hugging Face hub.

Everything lands in one cache directory: the ``cache_dir`` argument, else ``$RANKWISE_CACHE``, else
``~/.cache/rankwise`` (read when a function is called, never at import)::

    <cache>/manifest.json                     what was fetched, from where, with which checksums
    <cache>/beir/<name>/                      an extracted BEIR data set (corpus.jsonl, queries.jsonl, qrels/)
    <cache>/hf/<type>s/<repo_id>/<revision>/<filename>

Checksums: a download is verified against the md5/sha256 the caller gives or, for BEIR, the md5 BEIR
publishes (:data:`BEIR_MD5`). Without a known checksum the one computed on first download is recorded in the
manifest (trust on first use). On reuse every cached file is re-hashed and compared with the manifest; a
cached copy that fails is fetched again (with a warning), so a hit never touches the network. A mismatch on
download raises :class:`RankwiseError` naming the URL, expected and actual checksum, and leaves nothing
behind: bytes go to a temporary file beside the target, zips are extracted into a temporary directory, and
only a verified result is moved into place with ``os.replace``.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import tempfile
import urllib.error
import urllib.request
import warnings
import zipfile
from collections.abc import Mapping
from pathlib import Path, PurePosixPath
from typing import IO, Any
from urllib.parse import quote

from rankwise.errors import RankwiseError

BEIR_BASE_URL = "https://public.ukp.informatik.tu-darmstadt.de/thakur/BEIR/datasets"
# md5 of each zip as published in the BEIR README's data set table (github.com/beir-cellar/beir).
BEIR_MD5: dict[str, str] = {
    "msmarco": "444067daf65d982533ea17ebd59501e4",
    "trec-covid": "ce62140cb23feb9becf6270d0d1fe6d1",
    "nfcorpus": "a89dba18a62ef92f7d323ec890a0d38d",
    "nq": "d4d3d2e48787a744b6f6e691ff534307",
    "hotpotqa": "f412724f78b0d91183a0e86805e16114",
    "fiqa": "17918ed23cd04fb15047f73e6c3bd9d9",
    "arguana": "8ad3e3c2a5867cdced806d6503f29b99",
    "webis-touche2020": "46f650ba5a527fc69e0a6521c5a23563",
    "cqadupstack": "4e41456d7df8ee7760a7f866133bda78",
    "quora": "18fb154900ba42a600f84b839c173167",
    "dbpedia-entity": "c2a39eb420a3164af735795df012ac2c",
    "scidocs": "38121350fc3a4d2f48850f6aff52e4a9",
    "fever": "5a818580227bfb4b35bb6fa46d9b6c03",
    "climate-fever": "8b66f0a9126c521bae2bde127b4dc99d",
    "scifact": "5f7d1de60b170fc8027bb7898e2efca1",
}
HF_ENDPOINT = "https://huggingface.co"
MANIFEST = "manifest.json"
DEFAULT_TIMEOUT = 60.0  # seconds without data before a download fails
_CHUNK = 1 << 20
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")
_REPO_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]*(/[A-Za-z0-9][A-Za-z0-9_.-]*)?$")
_HF_PREFIX = {"dataset": "datasets/", "model": "", "space": "spaces/"}


def cache_root(cache_dir: str | Path | None = None) -> Path:
    """The cache directory: ``cache_dir``, else ``$RANKWISE_CACHE``, else ``~/.cache/rankwise``."""
    if cache_dir is not None:
        return Path(cache_dir).expanduser()
    env = os.environ.get("RANKWISE_CACHE")
    return Path(env).expanduser() if env else Path.home() / ".cache" / "rankwise"


def file_digests(path: Path) -> dict[str, Any]:
    """``{"md5": hex, "sha256": hex, "bytes": size}`` of a file, read in 1 MiB chunks."""
    md5, sha256, size = hashlib.md5(usedforsecurity=False), hashlib.sha256(), 0
    with path.open("rb") as f:
        while chunk := f.read(_CHUNK):
            md5.update(chunk)
            sha256.update(chunk)
            size += len(chunk)
    return {"md5": md5.hexdigest(), "sha256": sha256.hexdigest(), "bytes": size}


def _check_digests(source: str, actual: Mapping[str, Any], md5: str | None, sha256: str | None) -> None:
    for kind, expected in (("md5", md5), ("sha256", sha256)):
        if expected and expected.lower() != actual[kind]:
            raise RankwiseError(
                f"checksum mismatch for {source}: expected {kind} {expected.lower()}, got {actual[kind]}; "
                "the download was discarded"
            )


# --- downloading one URL ---------------------------------------------------------------------------------


def _open(url: str, headers: Mapping[str, str], secret_headers: Mapping[str, str], timeout: float) -> Any:
    from rankwise import __version__

    request = urllib.request.Request(url, headers={"User-Agent": f"rankwise/{__version__}", **headers})
    for key, value in secret_headers.items():  # not forwarded when the server redirects elsewhere
        request.add_unredirected_header(key, value)
    try:
        return urllib.request.urlopen(request, timeout=timeout)
    except urllib.error.HTTPError as exc:
        raise RankwiseError(f"download failed: {url}: HTTP {exc.code} {exc.reason}") from None
    except (urllib.error.URLError, TimeoutError, OSError) as exc:
        reason = getattr(exc, "reason", exc)
        raise RankwiseError(f"download failed: {url}: {reason} (timeout {timeout:g} s)") from None


def _copy(response: Any, out: IO[bytes], url: str, timeout: float, progress: bool) -> None:
    length = response.headers.get("Content-Length")
    total = int(length) if length and length.isdigit() else None
    received = 0
    bar = None
    if progress and total:
        from rich.console import Console
        from rich.progress import BarColumn, DownloadColumn, Progress, TextColumn, TransferSpeedColumn

        bar = Progress(
            TextColumn("{task.description}"),
            BarColumn(),
            DownloadColumn(),
            TransferSpeedColumn(),
            console=Console(stderr=True),
            transient=True,
        )
        bar.start()
        task = bar.add_task(f"download {url.rsplit('/', 1)[-1]}", total=total)
    try:
        while True:
            try:
                chunk = response.read(_CHUNK)
            except (TimeoutError, OSError) as exc:
                raise RankwiseError(f"download failed: {url}: {exc} (timeout {timeout:g} s)") from None
            if not chunk:
                break
            out.write(chunk)
            received += len(chunk)
            if bar is not None:
                bar.update(task, completed=received)
    finally:
        if bar is not None:
            bar.stop()
    if total is not None and received != total:
        raise RankwiseError(f"download failed: {url}: connection closed after {received} of {total} bytes")


def download(
    url: str,
    dest: str | Path,
    *,
    md5: str | None = None,
    sha256: str | None = None,
    timeout: float = DEFAULT_TIMEOUT,
    progress: bool = True,
    headers: Mapping[str, str] | None = None,
    secret_headers: Mapping[str, str] | None = None,
) -> dict[str, Any]:
    """Download ``url`` (http, https or file) to ``dest`` atomically and verify it; returns its digests.

    The bytes go to a temporary file beside ``dest`` which replaces ``dest`` only once the checksums
    match; on any error the temporary file is removed and ``dest`` is left as it was.
    ``secret_headers`` (e.g. ``Authorization``) are not sent on to a redirect's target.
    """
    dest = Path(dest)
    dest.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp_name = tempfile.mkstemp(dir=dest.parent, prefix=f".{dest.name}.", suffix=".part")
    tmp = Path(tmp_name)
    try:
        with os.fdopen(fd, "wb") as out, _open(url, headers or {}, secret_headers or {}, timeout) as response:
            _copy(response, out, url, timeout, progress)
        digests = file_digests(tmp)
        _check_digests(url, digests, md5, sha256)
        os.replace(tmp, dest)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    return digests


# --- the manifest ----------------------------------------------------------------------------------------


def _read_manifest(root: Path) -> dict[str, Any]:
    path = root / MANIFEST
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        return {}
    except (OSError, ValueError) as exc:
        warnings.warn(f"{path}: unreadable cache manifest ({exc}); cached files will be fetched again", stacklevel=3)
        return {}
    return data if isinstance(data, dict) else {}


def _record(root: Path, key: str, entry: dict[str, Any]) -> None:
    manifest = _read_manifest(root)
    manifest[key] = entry
    fd, tmp = tempfile.mkstemp(dir=root, prefix=f".{MANIFEST}.", suffix=".part")
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            json.dump(manifest, f, indent=2, sort_keys=True)
            f.write("\n")
        os.replace(tmp, root / MANIFEST)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def _cached(root: Path, key: str, target: Path, md5: str | None, sha256: str | None) -> bool:
    """True when ``target`` was recorded under ``key`` and every file still has its recorded sha256."""
    entry = _read_manifest(root).get(key)
    if not isinstance(entry, dict) or not target.exists():
        return False
    if (md5 and md5.lower() != entry.get("md5")) or (sha256 and sha256.lower() != entry.get("sha256")):
        return False  # the caller expects different bytes than those cached: fetch again
    files = entry.get("files", {})
    if not isinstance(files, dict) or not files:
        return False
    for relative, recorded in files.items():
        path = target / relative if relative else target
        if not path.is_file() or file_digests(path)["sha256"] != recorded.get("sha256"):
            warnings.warn(f"cached {path} failed verification; fetching {entry.get('url')} again", stacklevel=3)
            return False
    return True


# --- one file from a URL / the Hugging Face hub ----------------------------------------------------------


def _safe_relative(path: str, what: str) -> PurePosixPath:
    parts = PurePosixPath(path)
    if not path or parts.is_absolute() or any(part in ("", ".", "..") for part in path.split("/")):
        raise RankwiseError(f"{what} {path!r} must be a relative path without '.' or '..' parts")
    return parts


def ensure_file(
    url: str,
    relative: str,
    *,
    cache_dir: str | Path | None = None,
    md5: str | None = None,
    sha256: str | None = None,
    timeout: float = DEFAULT_TIMEOUT,
    progress: bool = True,
    secret_headers: Mapping[str, str] | None = None,
) -> Path:
    """Return ``<cache>/<relative>``, downloading ``url`` there unless a verified copy is cached."""
    root = cache_root(cache_dir)
    target = root / _safe_relative(relative, "cache path")
    if _cached(root, relative, target, md5, sha256):
        return target
    digests = download(
        url, target, md5=md5, sha256=sha256, timeout=timeout, progress=progress, secret_headers=secret_headers
    )
    _record(root, relative, {"url": url, **digests, "files": {"": {"sha256": digests["sha256"]}}})
    return target


def hf_resolve_url(
    repo_id: str,
    filename: str,
    *,
    revision: str = "main",
    repo_type: str = "dataset",
    endpoint: str | None = None,
) -> str:
    """The hub's plain download URL: ``{endpoint}/datasets/{repo_id}/resolve/{revision}/{filename}``.

    ``endpoint`` defaults to ``$HF_ENDPOINT``, else https://huggingface.co; models have no type prefix.
    """
    if repo_type not in _HF_PREFIX:
        raise RankwiseError(f"repo_type must be one of {', '.join(_HF_PREFIX)}, not {repo_type!r}")
    if not _REPO_ID.match(repo_id):
        raise RankwiseError(f"invalid Hugging Face repo id {repo_id!r}: expected 'owner/name'")
    _safe_relative(filename, "file name")
    base = (endpoint or os.environ.get("HF_ENDPOINT") or HF_ENDPOINT).rstrip("/")
    return f"{base}/{_HF_PREFIX[repo_type]}{repo_id}/resolve/{quote(revision, safe='')}/{quote(filename)}"


def ensure_hf_file(
    repo_id: str,
    filename: str,
    *,
    revision: str = "main",
    repo_type: str = "dataset",
    endpoint: str | None = None,
    cache_dir: str | Path | None = None,
    md5: str | None = None,
    sha256: str | None = None,
    token: str | None = None,
    timeout: float = DEFAULT_TIMEOUT,
    progress: bool = True,
) -> Path:
    """Download one file of a hub repo (cached at ``<cache>/hf/<type>s/<repo_id>/<revision>/<filename>``).

    ``token`` (default ``$HF_TOKEN``) is sent as a bearer token for gated or private repos. Pin ``revision``
    to a commit hash for reproducible data: a branch such as ``main`` is cached under its name.
    """
    url = hf_resolve_url(repo_id, filename, revision=revision, repo_type=repo_type, endpoint=endpoint)
    relative = f"hf/{repo_type}s/{repo_id}/{quote(revision, safe='')}/{filename}"
    token = token or os.environ.get("HF_TOKEN")
    secret = {"Authorization": f"Bearer {token}"} if token else {}
    return ensure_file(
        url,
        relative,
        cache_dir=cache_dir,
        md5=md5,
        sha256=sha256,
        timeout=timeout,
        progress=progress,
        secret_headers=secret,
    )


# --- BEIR zips -------------------------------------------------------------------------------------------


def _extract(archive: Path, into: Path, url: str) -> None:
    try:
        with zipfile.ZipFile(archive) as zf:
            for member in zf.namelist():
                parts = PurePosixPath(member.replace("\\", "/")).parts
                if member.startswith(("/", "\\")) or ".." in parts or (parts and ":" in parts[0]):
                    raise RankwiseError(f"{url}: refusing zip entry {member!r} that points outside the archive")
            zf.extractall(into)
    except zipfile.BadZipFile as exc:
        raise RankwiseError(f"{url}: not a valid zip file ({exc})") from None


def _dataset_root(extracted: Path, name: str, url: str) -> Path:
    """BEIR zips hold ``<name>/corpus.jsonl ...``; also accept the files at the top or one other folder."""
    if (extracted / name).is_dir():
        return extracted / name
    if (extracted / "corpus.jsonl").is_file():
        return extracted
    entries = [p for p in extracted.iterdir() if not p.name.startswith(("__MACOSX", "."))]
    if len(entries) == 1 and entries[0].is_dir():
        return entries[0]
    listing = ", ".join(sorted(p.name for p in entries)) or "nothing"
    raise RankwiseError(f"{url}: expected a folder {name!r} with corpus.jsonl in the zip, found: {listing}")


def ensure_beir(
    name: str,
    cache_dir: str | Path | None = None,
    base_url: str | None = None,
    md5: str | None = None,
    *,
    sha256: str | None = None,
    timeout: float = DEFAULT_TIMEOUT,
    progress: bool = True,
) -> Path:
    """Return the directory of BEIR data set ``name`` (``<cache>/beir/<name>``), downloading it if needed.

    The zip comes from ``{base_url}/{name}.zip`` (default: BEIR's published URL; a mirror or a ``file://``
    URL works too) and must match ``md5`` / ``sha256`` when given, else BEIR's published md5 for ``name``
    (:data:`BEIR_MD5`), else the checksum recorded on first download.
    """
    if not _NAME.match(name):
        raise RankwiseError(f"invalid BEIR data set name {name!r} (expected e.g. 'scifact')")
    root = cache_root(cache_dir)
    url = f"{(base_url or BEIR_BASE_URL).rstrip('/')}/{name}.zip"
    md5 = md5 or (None if sha256 else BEIR_MD5.get(name))
    key = f"beir/{name}"
    target = root / "beir" / name
    if _cached(root, key, target, md5, sha256):
        return target

    (root / "beir").mkdir(parents=True, exist_ok=True)
    work = Path(tempfile.mkdtemp(dir=root / "beir", prefix=f".{name}."))
    try:
        archive = work / f"{name}.zip"
        digests = download(url, archive, md5=md5, sha256=sha256, timeout=timeout, progress=progress)
        _extract(archive, work / "x", url)
        found = _dataset_root(work / "x", name, url)
        files = {
            p.relative_to(found).as_posix(): {"sha256": file_digests(p)["sha256"]}
            for p in sorted(found.rglob("*"))
            if p.is_file()
        }
        if target.exists():  # a stale copy that failed verification
            shutil.rmtree(target)
        os.replace(found, target)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    _record(root, key, {"url": url, **digests, "files": files})
    return target
