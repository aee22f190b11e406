"""The HTML report: self-contained, with its tables, plots and example rankings, rendered in headless Chromium."""

from __future__ import annotations

import os
import shutil
import subprocess
from html.parser import HTMLParser
from pathlib import Path

import pytest

from rankwise.config.experiment import load_config
from rankwise.experiment import load_output, run_experiment
from rankwise.experiment.report import build_report, write_report

CONFIG = """\
name: {name}
retrieve:
  bm25: {{k: 100}}
  bm25-pyserini: {{kind: bm25, k: 100, k1: 0.9, b: 0.4}}
fuse: {{method: rrf}}
"""


@pytest.fixture(scope="module")
def outputs(tmp_path_factory: pytest.TempPathFactory, cranfield_dir: Path) -> list[Path]:
    root = tmp_path_factory.mktemp("report")
    folders = []
    for name, extra in (("cran-a", ""), ("cran-b", "data: {max_queries: 100}\n")):
        path = root / f"{name}.yaml"
        path.write_text(CONFIG.format(name=name) + extra, encoding="utf-8")
        folders += run_experiment(load_config(path), [str(cranfield_dir)], root / "out", show_progress=False, log=str)
    return folders


class Page(HTMLParser):
    """Counts what a reader would see: tables, images (with inline data), gold marks, external references."""

    def __init__(self) -> None:
        super().__init__()
        self.tags: dict[str, int] = {}
        self.images: list[str] = []
        self.external: list[str] = []
        self.gold = 0
        self.text: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.tags[tag] = self.tags.get(tag, 0) + 1
        values = dict(attrs)
        if tag == "img":
            self.images.append(values.get("src") or "")
        for key in ("src", "href"):
            value = values.get(key) or ""
            if value and not value.startswith("data:"):
                self.external.append(value)
        if tag == "li" and values.get("class") == "gold":
            self.gold += 1

    def handle_data(self, data: str) -> None:
        self.text.append(data)


def parse(text: str) -> Page:
    page = Page()
    page.feed(text)
    return page


def test_report_has_tables_plots_and_examples(outputs):
    text = build_report([load_output(p) for p in outputs], examples=2, title="Cranfield <BM25>")
    page = parse(text)
    assert page.external == []  # self-contained: every image is inline data, no links to fetch
    assert len(page.images) == 4 and all(src.startswith("data:image/png;base64,") for src in page.images)
    # metric table + 3 significance tables (one per metric), per data set
    assert page.tags["table"] == 4
    words = " ".join(page.text)
    assert "Cranfield <BM25>" in words  # escaped in the page, shown as written
    for label in ("cran-a/cranfield:bm25", "cran-b/cranfield:fuse", "nDCG@10", "R@100", "Recall@k", "baseline"):
        assert label in words or label in text
    # before/after rankings for the 2 queries that moved most in each output, gold documents marked
    assert text.count("class='example'") == 4 and page.gold > 0
    assert "Before / after: bm25 → fuse" in words


def test_write_report_is_atomic_and_expands_experiment_folders(outputs, tmp_path):
    path = write_report([outputs[0].parent], tmp_path / "sub" / "report.html", examples=0)
    page = parse(path.read_text(encoding="utf-8"))
    assert "class='example'" not in path.read_text(encoding="utf-8")
    assert len(page.images) == 4
    assert [p.name for p in tmp_path.joinpath("sub").iterdir()] == ["report.html"]


def _chromium() -> str | None:
    for name in ("chromium", "chromium-browser", "google-chrome"):
        found = shutil.which(name)
        if found:
            return found
    return None


def _headless(binary: str, profile: Path, *args: str) -> subprocess.CompletedProcess[str]:
    command = [
        binary,
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-quic",
        "--no-first-run",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        f"--user-data-dir={profile}",
        *args,
    ]
    return subprocess.run(command, capture_output=True, text=True, timeout=120, check=False)


def test_report_renders_in_headless_chromium(outputs, tmp_path):
    binary = _chromium()
    if binary is None:
        message = "headless Chromium not found: apt-get install chromium"
        if os.environ.get("CI", "").lower() == "true":
            pytest.fail(message)
        pytest.skip(message)
    report = write_report(outputs, tmp_path / "report.html", examples=1)
    url = report.resolve().as_uri()
    dom = _headless(binary, tmp_path / "profile-dom", "--virtual-time-budget=10000", "--dump-dom", url)
    assert dom.returncode == 0, dom.stderr[-2000:]
    rendered = parse(dom.stdout)
    # the page's own script ran after load and counted the images that decoded
    assert 'data-images-total="4"' in dom.stdout and 'data-images-ok="4"' in dom.stdout
    assert rendered.tags.get("table", 0) == 4 and rendered.gold > 0
    shot = tmp_path / "report.png"
    result = _headless(binary, tmp_path / "profile-shot", "--window-size=1280,2400", f"--screenshot={shot}", url)
    assert result.returncode == 0 and shot.is_file(), result.stderr[-2000:]
    import matplotlib.image

    pixels = matplotlib.image.imread(str(shot))
    assert pixels.shape[0] >= 2000 and pixels.shape[1] >= 1200
    assert pixels[..., :3].std() > 0.05  # not a blank page: text, tables and plots drew something
