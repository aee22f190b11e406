"""Fetch the open-domain QA files (NQ-open, TriviaQA unfiltered, PopQA, DPR's Wikipedia passages) into the cache
of :mod:`rankwise.data.download`, checksummed the way it checks every download.

:data:`OPEN_QA_FILES` pins each file's URL (NQ-open at a fixed commit of google-research-datasets/natural-questions)
and its sha256 where known. Where :data:`OPEN_QA_FILES` has no sha256 (this table was written on a machine with no
network), the digest computed on the first download is recorded in the manifest and every later use is checked
against it (trust on first use, as :func:`rankwise.data.download.ensure_file` does); pass ``sha256=`` to pin it.
``base_url`` replaces everything before the file name with a mirror (or a ``file://`` folder: what the tests use).

TriviaQA's question files ship inside ``triviaqa-unfiltered.tar.gz``: the archive is verified, then the one
member asked for is extracted next to it (a member path leaving the archive is refused). DPR's passages stay
gzipped: :func:`rankwise.data.open_qa.iter_dpr_passages` streams the ``.tsv.gz`` directly.
"""

from __future__ import annotations

import os
import tarfile
import tempfile
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

from rankwise.data.download import DEFAULT_TIMEOUT, cache_root, ensure_file
from rankwise.errors import RankwiseError

NQ_OPEN_BASE = (
    "https://raw.githubusercontent.com/google-research-datasets/natural-questions/"
    "a7d6452c0905c7772e9fbbb9a20b5fcab07c668f/nq_open"
)


@dataclass(frozen=True)
class OpenQAFile:
    url: str
    sha256: str | None = None  # None: recorded on first download (see the module docstring)
    member: str | None = None  # a file inside the tar.gz at ``url`` to extract
    format: str | None = None  # the rankwise.data.open_qa format of the question file; None for passages


OPEN_QA_FILES: dict[str, OpenQAFile] = {
    "nq-open-dev": OpenQAFile(f"{NQ_OPEN_BASE}/NQ-open.dev.jsonl", format="nq-open"),
    "nq-open-train": OpenQAFile(f"{NQ_OPEN_BASE}/NQ-open.train.jsonl", format="nq-open"),
    "triviaqa-unfiltered-dev": OpenQAFile(
        "https://nlp.cs.washington.edu/triviaqa/data/triviaqa-unfiltered.tar.gz",
        member="triviaqa-unfiltered/unfiltered-web-dev.json",
        format="triviaqa",
    ),
    "triviaqa-unfiltered-train": OpenQAFile(
        "https://nlp.cs.washington.edu/triviaqa/data/triviaqa-unfiltered.tar.gz",
        member="triviaqa-unfiltered/unfiltered-web-train.json",
        format="triviaqa",
    ),
    "popqa": OpenQAFile("https://huggingface.co/datasets/akariasai/PopQA/resolve/main/test.tsv", format="popqa"),
    "psgs_w100": OpenQAFile("https://dl.fbaipublicfiles.com/dpr/wikipedia_split/psgs_w100.tsv.gz"),
}


def ensure_open_qa(
    name: str,
    cache_dir: str | Path | None = None,
    base_url: str | None = None,
    sha256: str | None = None,
    *,
    timeout: float = DEFAULT_TIMEOUT,
    progress: bool = True,
) -> Path:
    """The local path of :data:`OPEN_QA_FILES` entry ``name`` (``<cache>/open-qa/<file>``), downloaded and
    verified unless a verified copy is cached; a TriviaQA entry gives its extracted question file."""
    entry = OPEN_QA_FILES.get(name)
    if entry is None:
        raise RankwiseError(f"unknown open-domain QA file '{name}' (known: {', '.join(OPEN_QA_FILES)})")
    filename = entry.url.rsplit("/", 1)[-1]
    url = f"{base_url.rstrip('/')}/{filename}" if base_url else entry.url
    path = ensure_file(
        url, f"open-qa/{filename}", cache_dir=cache_dir, sha256=sha256 or entry.sha256, timeout=timeout,
        progress=progress,
    )  # fmt: skip
    if entry.member is None:
        return path
    return _extract_member(path, entry.member, cache_root(cache_dir) / "open-qa", url)


def _extract_member(archive: Path, member: str, into: Path, url: str) -> Path:
    """Extract ``member`` of a verified tar archive to ``into/<member name>`` atomically (once per archive)."""
    parts = PurePosixPath(member).parts
    target = into / f"{archive.name.split('.')[0]}-{PurePosixPath(member).name}"
    if member.startswith("/") or ".." in parts:
        raise RankwiseError(f"{url}: refusing member {member!r} outside the archive")
    if target.is_file() and target.stat().st_mtime >= archive.stat().st_mtime:
        return target
    try:
        with tarfile.open(archive) as tar:
            try:
                source = tar.extractfile(member)
            except KeyError:
                source = None
            if source is None:
                raise RankwiseError(f"{url}: no file {member!r} in the archive")
            fd, tmp = tempfile.mkstemp(dir=into, prefix=f".{target.name}.", suffix=".part")
            try:
                with os.fdopen(fd, "wb") as out:
                    while chunk := source.read(1 << 20):
                        out.write(chunk)
                os.replace(tmp, target)
            except BaseException:
                Path(tmp).unlink(missing_ok=True)
                raise
    except tarfile.TarError as exc:
        raise RankwiseError(f"{url}: not a readable tar archive ({exc})") from None
    return target
