"""JupyterLab 4 in headless Chromium: reload the page while a card waits, approve in the
reloaded page, and the final answer shows (the live view carries the finished transcript;
the reloaded page never hears of the final display update)."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest

from browser._jupyter import ARTIFACTS, needs_chromium
from browser._jupyter import write_notebook as write
from nbagent.testing import ScriptedServer, call, say, use_tools

pytestmark = [needs_chromium, pytest.mark.browser]

ADD = '''
def add(a: int, b: int) -> int:
    """Add two integers."""
    return a + b
'''


def test_a_page_reloaded_while_a_card_waits_shows_the_final_answer(
    lab: tuple[str, Path], browser: Any
) -> None:
    from playwright.sync_api import expect

    url, home = lab
    with ScriptedServer(
        [use_tools(call("add", {"a": 2, "b": 3}), text="Adding."), say("2 + 3 = 5, finally.")]
    ) as server:
        write(home, "reload.ipynb", "%load_ext nbagent\n%config NBAgent.titles = False", ADD,
              f"%%agent --api-base {server.url} --tools add\nAdd 2 and 3.")  # fmt: skip
        page = browser.new_page(viewport={"width": 1280, "height": 800})
        page.goto(url.format(name="reload.ipynb"))
        idle = re.compile(r"Python 3 \(ipykernel\) \| Idle")
        page.get_by_text(idle).wait_for(timeout=60_000)
        page.get_by_role("menuitem", name="Run", exact=True).click()
        page.get_by_role("menuitem", name=re.compile("^Run All Cells")).click()
        view = page.locator(".nbagent-view")
        expect(view.get_by_role("button", name="Approve", exact=True)).to_be_visible(timeout=60_000)
        page.keyboard.press("Control+s")  # the saved notebook holds the live view's output
        page.wait_for_function(
            "() => !document.querySelector('.lm-TabBar-tab.jp-mod-dirty')", timeout=10_000
        )
        saved = (home / "reload.ipynb").read_text()
        assert "widget-view+json" in saved
        assert "a live run: its transcript replaces this" in saved and "queued" not in saved

        page.reload()
        view = page.locator(".nbagent-view")
        approve = view.get_by_role("button", name="Approve", exact=True)
        expect(approve).to_be_visible(timeout=60_000)  # the card again, from the kernel
        approve.click()
        expect(view).to_contain_text("2 + 3 = 5, finally.", timeout=30_000)
        expect(view.locator(".nb-state")).to_contain_text("completed")
        ARTIFACTS.mkdir(parents=True, exist_ok=True)
        page.screenshot(path=str(ARTIFACTS / "jupyterlab-reloaded-done.png"))
        page.close()
