"""Download code against a local HTTP server serving the real SciFact files; nothing touches the internet."""

from __future__ import annotations

import hashlib
import http.server
import threading
import zipfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from rankwise.data import download as dl
from rankwise.errors import RankwiseError

SCIFACT_FILES = ["corpus.jsonl", "queries.jsonl", "qrels/test.tsv", "qrels/train.tsv"]


class Server:
    """A HTTP server on 127.0.0.1 (port 0) serving ``root``; records each request's path and headers."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.requests: list[tuple[str, dict[str, str]]] = []
        requests = self.requests

        class Handler(http.server.SimpleHTTPRequestHandler):
            def __init__(self, *args, **kwargs) -> None:
                super().__init__(*args, directory=str(root), **kwargs)

            def do_GET(self) -> None:
                requests.append((self.path, dict(self.headers)))
                super().do_GET()

            def log_message(self, format: str, *args: object) -> None:  # keep test output quiet
                pass

        self.httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}"
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)

    def paths(self) -> list[str]:
        return [path for path, _ in self.requests]


def _zip_dataset(source: Path, archive: Path, folder: str) -> str:
    """Zip ``source``'s BEIR files laid out like BEIR's zips (``folder/corpus.jsonl``...); returns the md5."""
    archive.parent.mkdir(parents=True, exist_ok=True)
    with zipfile.ZipFile(archive, "w", compression=zipfile.ZIP_DEFLATED, compresslevel=1) as zf:
        for name in SCIFACT_FILES:
            zf.write(source / name, f"{folder}/{name}")
    return hashlib.md5(archive.read_bytes(), usedforsecurity=False).hexdigest()


@pytest.fixture(scope="module")
def served(scifact_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Server, dict[str, str]]]:
    root = tmp_path_factory.mktemp("www")
    md5 = {
        "scifact": _zip_dataset(scifact_dir, root / "beir" / "scifact.zip", "scifact"),
        "scifact-mirror": _zip_dataset(scifact_dir, root / "beir" / "scifact-mirror.zip", "scifact-mirror"),
    }
    hf_file = root / "datasets" / "BeIR" / "scifact-qrels" / "resolve" / "main" / "test.tsv"
    hf_file.parent.mkdir(parents=True)
    hf_file.write_bytes((scifact_dir / "qrels" / "test.tsv").read_bytes())
    with zipfile.ZipFile(root / "beir" / "evil.zip", "w") as zf:
        zf.writestr("../outside.txt", "x")
    server = Server(root)
    server.thread.start()
    yield server, md5
    server.httpd.shutdown()
    server.httpd.server_close()


@pytest.fixture
def server(served: tuple[Server, dict[str, str]]) -> Server:
    served[0].requests.clear()
    return served[0]


def _files(root: Path) -> list[Path]:
    return sorted(p for p in root.rglob("*") if p.is_file())


def test_ensure_beir_downloads_verifies_and_reuses(server, served, scifact_dir: Path, tmp_path: Path) -> None:
    md5 = served[1]["scifact"]
    path = dl.ensure_beir("scifact", cache_dir=tmp_path, base_url=f"{server.url}/beir", md5=md5)
    assert path == tmp_path / "beir" / "scifact"
    for name in SCIFACT_FILES:  # byte-for-byte the local copy
        assert (path / name).read_bytes() == (scifact_dir / name).read_bytes(), name
    assert server.paths() == ["/beir/scifact.zip"]
    # only the data set and the manifest are left: no zip, no temporary files
    assert _files(tmp_path) == sorted([tmp_path / "manifest.json", *(path / n for n in SCIFACT_FILES)])

    again = dl.ensure_beir("scifact", cache_dir=tmp_path, base_url=f"{server.url}/beir", md5=md5)
    assert again == path
    assert server.paths() == ["/beir/scifact.zip"]  # second call: no request


def test_corrupted_cache_is_fetched_again(server, served, tmp_path: Path) -> None:
    md5 = served[1]["scifact"]
    path = dl.ensure_beir("scifact", cache_dir=tmp_path, base_url=f"{server.url}/beir", md5=md5, progress=False)
    (path / "qrels" / "test.tsv").write_text("query-id\tcorpus-id\tscore\n1\t2\t1\n", encoding="utf-8")
    with pytest.warns(UserWarning, match="failed verification"):
        dl.ensure_beir("scifact", cache_dir=tmp_path, base_url=f"{server.url}/beir", md5=md5, progress=False)
    assert len(server.paths()) == 2
    assert (path / "qrels" / "test.tsv").read_text(encoding="utf-8").count("\n") == 340  # header + 339


def test_wrong_checksum_raises_and_leaves_nothing(server, tmp_path: Path) -> None:
    url = f"{server.url}/beir/scifact.zip"
    # without md5=, the md5 BEIR publishes for scifact applies, and our locally built zip differs from it
    with pytest.raises(RankwiseError, match=rf"checksum mismatch for {url}: expected md5 {dl.BEIR_MD5['scifact']}"):
        dl.ensure_beir("scifact", cache_dir=tmp_path, base_url=f"{server.url}/beir", progress=False)
    with pytest.raises(RankwiseError, match=r"expected sha256 0{64}, got [0-9a-f]{64}"):
        dl.ensure_beir("scifact", cache_dir=tmp_path, base_url=f"{server.url}/beir", sha256="0" * 64)
    assert _files(tmp_path) == []
    assert not (tmp_path / "beir" / "scifact").exists()


def test_trust_on_first_use_records_checksum(server, served, tmp_path: Path) -> None:
    path = dl.ensure_beir("scifact-mirror", cache_dir=tmp_path, base_url=f"{server.url}/beir", progress=False)
    assert (path / "corpus.jsonl").is_file()
    manifest = (tmp_path / "manifest.json").read_text(encoding="utf-8")
    assert served[1]["scifact-mirror"] in manifest  # the zip's md5, recorded for later verification
    # a caller who now expects other bytes gets a fresh download, verified against their checksum
    with pytest.raises(RankwiseError, match="checksum mismatch"):
        dl.ensure_beir("scifact-mirror", cache_dir=tmp_path, base_url=f"{server.url}/beir", md5="f" * 32)
    assert (path / "corpus.jsonl").is_file()  # the verified copy survives a failed re-download


def test_cache_dir_from_environment(server, served, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("RANKWISE_CACHE", str(tmp_path / "env-cache"))
    assert dl.cache_root() == tmp_path / "env-cache"
    assert dl.cache_root(tmp_path / "arg") == tmp_path / "arg"
    path = dl.ensure_beir("scifact", base_url=f"{server.url}/beir", md5=served[1]["scifact"], progress=False)
    assert path == tmp_path / "env-cache" / "beir" / "scifact"


def test_hf_resolve_url() -> None:
    assert (
        dl.hf_resolve_url("BeIR/scifact", "corpus.jsonl.gz", endpoint="https://hf.example/")
        == "https://hf.example/datasets/BeIR/scifact/resolve/main/corpus.jsonl.gz"
    )
    assert (
        dl.hf_resolve_url("org/model", "a b.json", revision="refs/pr/1", repo_type="model", endpoint="http://h")
        == "http://h/org/model/resolve/refs%2Fpr%2F1/a%20b.json"
    )
    for bad in [("../x", "f"), ("BeIR/scifact", "../etc/passwd"), ("BeIR/scifact", "/abs")]:
        with pytest.raises(RankwiseError):
            dl.hf_resolve_url(*bad)


def test_ensure_hf_file(server, scifact_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    expected = (scifact_dir / "qrels" / "test.tsv").read_bytes()
    sha = hashlib.sha256(expected).hexdigest()
    monkeypatch.setenv("HF_ENDPOINT", server.url)
    monkeypatch.delenv("HF_TOKEN", raising=False)
    path = dl.ensure_hf_file("BeIR/scifact-qrels", "test.tsv", cache_dir=tmp_path, sha256=sha, token="hf_secret")
    assert path == tmp_path / "hf" / "datasets" / "BeIR" / "scifact-qrels" / "main" / "test.tsv"
    assert path.read_bytes() == expected
    [(request_path, headers)] = server.requests
    assert request_path == "/datasets/BeIR/scifact-qrels/resolve/main/test.tsv"
    assert headers["Authorization"] == "Bearer hf_secret"
    assert headers["User-Agent"].startswith("rankwise/")
    # cached and verified: no second request, even without a checksum argument
    assert dl.ensure_hf_file("BeIR/scifact-qrels", "test.tsv", cache_dir=tmp_path) == path
    assert len(server.requests) == 1


def test_http_errors_name_the_url_and_leave_nothing(server, tmp_path: Path) -> None:
    with pytest.raises(RankwiseError, match=rf"download failed: {server.url}/beir/nope.zip: HTTP 404"):
        dl.ensure_beir("nope", cache_dir=tmp_path, base_url=f"{server.url}/beir")
    with pytest.raises(RankwiseError, match="HTTP 404"):
        dl.ensure_hf_file("BeIR/missing", "x.tsv", cache_dir=tmp_path, endpoint=server.url)
    with pytest.raises(RankwiseError, match="outside the archive"):
        dl.ensure_beir("evil", cache_dir=tmp_path, base_url=f"{server.url}/beir")
    assert _files(tmp_path) == []
    assert not (tmp_path.parent / "outside.txt").exists()
    with pytest.raises(RankwiseError, match="invalid BEIR data set name"):
        dl.ensure_beir("../scifact", cache_dir=tmp_path)


def test_file_url(scifact_dir: Path, tmp_path: Path) -> None:
    source = tmp_path / "src" / "test.tsv"
    source.parent.mkdir()
    source.write_bytes((scifact_dir / "qrels" / "test.tsv").read_bytes())
    path = dl.ensure_file(source.as_uri(), "local/test.tsv", cache_dir=tmp_path / "cache")
    assert path.read_bytes() == source.read_bytes()


def test_cli_download_then_stats(server, served, tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    from rankwise.cli import main

    args = ["data", "download", "scifact", "--cache-dir", str(tmp_path), "--base-url", f"{server.url}/beir"]
    assert main([*args, "--md5", served[1]["scifact"]]) == 0
    path = capsys.readouterr().out.strip()
    assert path == str(tmp_path / "beir" / "scifact")
    assert main(["data", "stats", path, "--json"]) == 0
    assert '"documents": 5183' in capsys.readouterr().out
    assert main([*args, "--md5", "0" * 32]) == 2  # the cached copy does not match: re-fetched, then refused
    assert "md5" in capsys.readouterr().err
