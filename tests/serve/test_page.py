"""The page at ``/`` in headless Chromium (Debian's ``chromium``, as the report test uses): type a question, see
the streamed answer with its passages, click a citation, and see "insufficient context" shown as such.

Chromium is driven over the DevTools protocol on a pipe (``--remote-debugging-pipe``: NUL-separated JSON on file
descriptors 3 and 4), so no WebSocket client and no browser-automation package is needed.
"""

from __future__ import annotations

import base64
import contextlib
import json
import os
import shutil
import subprocess
import time
from pathlib import Path
from typing import Any

import pytest
from serve_helpers import build, live


def _chromium() -> str:
    for name in ("chromium", "chromium-browser", "google-chrome"):
        found = shutil.which(name)
        if found:
            return found
    message = "headless Chromium not found: apt-get install chromium"
    if os.environ.get("CI", "").lower() == "true":
        pytest.fail(message)
    pytest.skip(message)


class Browser:
    """One headless Chromium with one page, spoken to over the DevTools pipe."""

    def __init__(self, binary: str, profile: Path) -> None:
        to_chrome_read, self._to_chrome = os.pipe()
        self._from_chrome, from_chrome_write = os.pipe()
        flags = [
            "--headless", "--no-sandbox", "--disable-gpu", "--no-first-run", "--disable-background-networking",
            "--disable-component-update", "--disable-sync", "--window-size=1280,900",
            f"--user-data-dir={profile}", "--remote-debugging-pipe",
        ]  # fmt: skip
        # Chromium reads commands from fd 3 and writes replies to fd 4 (bash: dash takes one-digit fds only).
        script = f'exec "$@" 3<&{to_chrome_read} 4>&{from_chrome_write}'
        self.process = subprocess.Popen(
            ["bash", "-c", script, "bash", binary, *flags, "about:blank"],
            pass_fds=(to_chrome_read, from_chrome_write),
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        os.close(to_chrome_read)
        os.close(from_chrome_write)
        self._buffer = b""
        self._next_id = 0
        self.session: str | None = None

    def send(self, method: str, params: dict[str, Any] | None = None, session: bool = True) -> dict[str, Any]:
        self._next_id += 1
        message: dict[str, Any] = {"id": self._next_id, "method": method, "params": params or {}}
        if session and self.session is not None:
            message["sessionId"] = self.session
        os.write(self._to_chrome, json.dumps(message).encode() + b"\0")
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            while b"\0" not in self._buffer:
                chunk = os.read(self._from_chrome, 1 << 16)
                if not chunk:
                    raise RuntimeError(f"{method}: Chromium closed the DevTools pipe")
                self._buffer += chunk
            raw, self._buffer = self._buffer.split(b"\0", 1)
            reply = json.loads(raw)
            if reply.get("id") == self._next_id:
                if "error" in reply:
                    raise RuntimeError(f"{method}: {reply['error']}")
                return reply.get("result", {})
        raise TimeoutError(method)

    def open(self, url: str) -> None:
        target = self.send("Target.createTarget", {"url": url}, session=False)["targetId"]
        attached = self.send("Target.attachToTarget", {"targetId": target, "flatten": True}, session=False)
        self.session = attached["sessionId"]
        self.wait_for("document.readyState === 'complete' && !!document.getElementById('pipeline')")

    def evaluate(self, expression: str) -> Any:
        result = self.send("Runtime.evaluate", {"expression": expression, "returnByValue": True})
        return result["result"].get("value")

    def wait_for(self, expression: str, timeout: float = 30) -> Any:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            value = self.evaluate(expression)
            if value:
                return value
            time.sleep(0.05)
        raise TimeoutError(expression)

    def type_and_enter(self, selector: str, text: str) -> None:
        self.evaluate(f"document.querySelector({json.dumps(selector)}).focus()")
        self.send("Input.insertText", {"text": text})
        for kind in ("keyDown", "keyUp"):
            self.send("Input.dispatchKeyEvent", {"type": kind, "key": "Enter", "code": "Enter",
                                                 "windowsVirtualKeyCode": 13, "text": "\r"})  # fmt: skip

    def click(self, selector: str) -> None:
        box = self.evaluate(
            f"(() => {{ const r = document.querySelector({json.dumps(selector)}).getBoundingClientRect();"
            " return {x: r.x + r.width / 2, y: r.y + r.height / 2}; })()"
        )
        for kind in ("mousePressed", "mouseReleased"):
            self.send("Input.dispatchMouseEvent", {"type": kind, "x": box["x"], "y": box["y"], "button": "left",
                                                   "clickCount": 1})  # fmt: skip

    def screenshot(self, path: Path) -> None:
        path.write_bytes(base64.b64decode(self.send("Page.captureScreenshot", {"format": "png"})["data"]))

    def close(self) -> None:
        with contextlib.suppress(RuntimeError, TimeoutError, OSError):
            self.send("Browser.close", session=False)
        try:
            self.process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()
        os.close(self._to_chrome)
        os.close(self._from_chrome)


def test_ask_on_the_page_and_follow_a_citation(toy, tiny_cross_encoder_dir, scripted_llm, tmp_path):
    binary = _chromium()
    with live(build(toy, tiny_cross_encoder_dir, scripted_llm)) as url:
        browser = Browser(binary, tmp_path / "profile")
        try:
            browser.open(url + "/")
            header = browser.wait_for("document.getElementById('pipeline').textContent.includes('→') && "
                                      "document.getElementById('pipeline').textContent")  # fmt: skip
            assert "retrieve → rerank → generate over 6 documents" in header

            browser.type_and_enter("#question", "why do cats purr")
            browser.wait_for("document.getElementById('answer').dataset.state === 'done'")
            answer = browser.evaluate("document.getElementById('answer').textContent")
            first_text = browser.evaluate("document.querySelector('#passage-1 .text').textContent")
            assert answer.endswith(" [1].") and first_text.startswith(answer.removesuffix(" [1]."))
            passages = browser.evaluate("[...document.querySelectorAll('li.passage')].map(li => li.textContent)")
            assert len(passages) == 3 and all("first stage #" in p for p in passages)
            assert browser.evaluate("document.querySelector('li.passage.cited').id") == "passage-1"
            assert browser.evaluate("document.querySelectorAll('li.passage.active').length") == 0

            browser.click("#answer a.cite")
            browser.wait_for("document.body.dataset.activePassage === '1'")
            assert browser.evaluate("document.querySelector('li.passage.active').id") == "passage-1"
            assert browser.evaluate("location.hash") == "#passage-1"
            browser.screenshot(tmp_path / "answer.png")

            browser.type_and_enter("#question", " — and how far away is the moon?")
            browser.wait_for("document.getElementById('answer').dataset.state === 'done'")
            status = browser.evaluate("document.getElementById('status')")
            assert browser.evaluate("document.getElementById('status').className") == "abstained", status
            assert "Insufficient context" in browser.evaluate("document.getElementById('status').textContent")
        finally:
            browser.close()
    assert (tmp_path / "answer.png").stat().st_size > 10_000
