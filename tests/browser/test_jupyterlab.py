"""JupyterLab 4 in headless Chromium: run a %%agent cell, click Approve, stay safe.

Uses Debian's chromium (``apt-get install chromium``) through pip playwright with
``executable_path``; no browser is downloaded. Screenshots go to ``test-artifacts/``.
"""

from __future__ import annotations

import base64
import re
import struct
import zlib
from pathlib import Path

import pytest

from browser._jupyter import (
    ARTIFACTS,
    needs_chromium,
    write_notebook,
)
from nbagent.testing import ScriptedServer, call, say, use_tools

pytestmark = [needs_chromium, pytest.mark.browser]

XSS = (
    "Careful: <img src=x onerror=\"window.__nbagent_xss='img'\"> "
    "<script>window.__nbagent_xss='script'</script> "
    "[a link](javascript:window.__nbagent_xss='link') and **bold**."
)


def png(width: int, height: int) -> str:
    """A small two-colour PNG, base64 (what matplotlib's inline backend would send)."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        body = kind + data
        return struct.pack(">I", len(data)) + body + struct.pack(">I", zlib.crc32(body))

    rows = b"".join(
        b"\0"
        + b"".join(b"\x19\x76\xd2" if x < width // 2 else b"\xf5\x7c\x00" for x in range(width))
        for _ in range(height)
    )
    raw = (
        b"\x89PNG\r\n\x1a\n"
        + chunk(b"IHDR", struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0))
        + chunk(b"IDAT", zlib.compress(rows))
        + chunk(b"IEND", b"")
    )
    return base64.b64encode(raw).decode()


TOOLS = r"""
from nbagent.tools import ToolOutput, function_tool

def _add(a: int, b: int) -> int:
    "Add two integers."
    return a + b

add = function_tool(_add, name="add")
add.preview = lambda args: "--- a/sum.txt\n+++ b/sum.txt\n@@ -1 +1 @@\n-0\n+<b>5</b>"

def _plot(title: str) -> ToolOutput:
    "Plot something."
    return ToolOutput(
        text="plotted",
        display=(
            {"image/png": "PNG_DATA", "text/plain": "<Figure size 60x30 with 1 Axes>"},
            {"image/png": "x\" onerror=\"window.__nbagent_xss='png'", "text/plain": "bad image"},
            {"text/html": "<img src=x onerror=\"window.__nbagent_xss='html'\">",
             "text/plain": "a table"},
            {"image/svg+xml": "<svg onload=\"window.__nbagent_xss='svg'\"/>",
             "text/plain": "an svg"},
        ),
    )

plot = function_tool(_plot, name="plot", policy="allow")
""".replace("PNG_DATA", png(60, 30))


def test_click_approve_in_jupyterlab_and_nothing_from_the_model_runs(
    lab: tuple[str, Path], browser: object
) -> None:
    from playwright.sync_api import Browser, expect

    assert isinstance(browser, Browser)
    url, home = lab
    with ScriptedServer(
        [
            use_tools(call("plot", {"title": "sums"}), text=XSS),
            use_tools(call("add", {"a": 2, "b": 3})),
            say("The add tool says 2 + 3 = 5. " + XSS, words_per_chunk=2),
        ]
    ) as server:
        write_notebook(
            home,
            "approve.ipynb",
            "%load_ext nbagent",
            TOOLS,
            f"%%agent --api-base {server.url} --tools add,plot\nAdd 2 and 3 with the tool.",
        )
        page = browser.new_page(viewport={"width": 1280, "height": 900})
        errors: list[str] = []
        page.on("pageerror", lambda exc: errors.append(str(exc)))
        page.on(
            "dialog", lambda dialog: (errors.append("dialog: " + dialog.message), dialog.dismiss())
        )
        page.goto(url.format(name="approve.ipynb"))
        page.get_by_text(re.compile(r"Python 3 \(ipykernel\) \| Idle")).wait_for(timeout=60_000)

        page.get_by_role("menuitem", name="Run", exact=True).click()
        page.get_by_role("menuitem", name=re.compile("^Run All Cells")).click()

        view = page.locator(".nbagent-view")
        approve = view.get_by_role("button", name="Approve", exact=True)
        expect(approve).to_be_visible(timeout=60_000)
        expect(view.get_by_role("button", name="Reject", exact=True)).to_be_visible()
        expect(view.get_by_role("button", name="Always allow…", exact=True)).to_be_visible()
        expect(view.get_by_role("button", name="Stop", exact=True)).to_be_visible()
        # the live view shows the model's markup as text
        expect(view).to_contain_text("<img src=x onerror=")
        assert view.locator("script").count() == 0
        # the pending call shows what it would change, coloured, as text
        expect(view.locator(".nbagent-diff-add")).to_have_text("+<b>5</b>")
        expect(view.locator(".nbagent-diff-del")).to_have_text("-0")
        # the plot tool's figure is the one image; the other displays are text
        image = view.locator("img")
        expect(image).to_have_count(1)
        assert image.get_attribute("src", timeout=1000).startswith("data:image/png;base64,")
        assert image.evaluate("img => img.complete && img.naturalWidth") == 60
        expect(view).to_contain_text("bad image")
        expect(view).to_contain_text("a table")
        expect(view).to_contain_text("an svg")
        ARTIFACTS.mkdir(parents=True, exist_ok=True)
        page.screenshot(path=str(ARTIFACTS / "jupyterlab-approval.png"))
        view.screenshot(path=str(ARTIFACTS / "jupyterlab-approval-view.png"))

        approve.click()
        output = page.locator(".jp-OutputArea-output .nbagent-transcript")
        expect(output).to_contain_text("The add tool says 2 + 3 = 5.", timeout=30_000)
        expect(output).to_contain_text("approved by you")
        expect(output.locator("pre").filter(has_text=re.compile(r"^5$")).first).to_be_visible()
        page.screenshot(path=str(ARTIFACTS / "jupyterlab-done.png"))

        # static twin: escaped markup, no unsafe link, no script ran; the one checked image
        # is an ordinary output after the transcript, which refers to it
        assert output.locator("script").count() == 0
        expect(output.locator("img")).to_have_count(0)
        expect(output).to_contain_text("[image: shown below]")
        image = page.locator(".jp-RenderedImage img")
        expect(image).to_have_count(1)
        src = image.get_attribute("src", timeout=1000) or ""
        assert src.startswith("data:image/png;base64,")
        expect(output.locator(".nbagent-diff-add")).to_have_text("+<b>5</b>")
        assert output.locator("a[href^='javascript']").count() == 0
        assert page.evaluate("window.__nbagent_xss") is None
        assert not errors, errors
        page.close()
