"""Jupyter Notebook 7 in headless Chromium: run a %%agent cell, click Approve, see the answer.

The same live view as in JupyterLab (an anywidget), in the Notebook 7 page
(``/notebooks/<name>``): one tool call waits for a click, the tool's result and the
model's final answer follow, and the view turns into the static transcript.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from browser._jupyter import (
    ARTIFACTS,
    TOKEN,
    jupyter_server,
    needs_chromium,
    write_notebook,
)
from nbagent.testing import ScriptedServer, call, say, use_tools

pytestmark = [needs_chromium, pytest.mark.browser]

TOOLS = r"""
from nbagent.tools import function_tool

def _multiply(a: int, b: int) -> int:
    "Multiply two integers."
    return a * b

multiply = function_tool(_multiply, name="multiply")
"""

# Notebook 7's own start-up race in the shortcuts extension (jupyter/notebook#7862): it
# fires on an empty notebook too, before any kernel runs; every other page error counts.
UPSTREAM_RACE = "Cannot read properties of undefined (reading 'schema')"


def upstream_race(exc: Any) -> bool:
    return bool(
        exc.message == UPSTREAM_RACE and "/static/notebook/notebook_core." in (exc.stack or "")
    )


@pytest.fixture(scope="module")
def notebook7(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, Path]]:
    home = tmp_path_factory.mktemp("notebook7")
    with jupyter_server("notebook", home) as base:
        yield f"{base}/notebooks/{{name}}?token={TOKEN}", home


def test_click_approve_in_notebook7(notebook7: tuple[str, Path], browser: Any) -> None:
    from playwright.sync_api import expect

    url, home = notebook7
    with ScriptedServer(
        [
            use_tools(call("multiply", {"a": 6, "b": 7})),
            use_tools(call("multiply", {"a": 6, "b": 70})),
            say("The multiply tool says 6 × 7 = 42.", words_per_chunk=2),
        ]
    ) as server:
        write_notebook(
            home,
            "approve.ipynb",
            "%load_ext nbagent",
            TOOLS,
            f"%%agent --api-base {server.url} --tools multiply\nMultiply 6 by 7 with the tool.",
        )
        page = browser.new_page(viewport={"width": 1280, "height": 900})
        errors: list[str] = []
        page.on("pageerror", lambda exc: upstream_race(exc) or errors.append(str(exc)))
        page.on(
            "dialog", lambda dialog: (errors.append("dialog: " + dialog.message), dialog.dismiss())
        )
        page.goto(url.format(name="approve.ipynb"))
        # Notebook 7 has no "| Idle" status text: the kernel name sits in the toolbar and
        # the execution indicator carries the kernel's status.
        expect(page.locator(".jp-Toolbar-kernelName")).to_have_text(
            "Python 3 (ipykernel)", timeout=60_000
        )
        expect(page.locator(".jp-Notebook-ExecutionIndicator")).to_have_attribute(
            "data-status", "idle", timeout=60_000
        )

        page.get_by_role("menuitem", name="Run", exact=True).click()
        page.get_by_role("menuitem", name=re.compile("^Run All Cells")).click()

        view = page.locator(".nbagent-view")
        approve = view.get_by_role("button", name="Approve", exact=True)
        expect(approve).to_be_visible(timeout=60_000)
        expect(view).to_have_count(1)
        expect(view.get_by_role("button", name="Reject", exact=True)).to_be_visible()
        expect(view.get_by_role("button", name="Always allow…", exact=True)).to_be_visible()
        expect(view.get_by_role("button", name="Stop", exact=True)).to_be_visible()
        expect(view).to_contain_text("multiply")
        ARTIFACTS.mkdir(parents=True, exist_ok=True)
        page.screenshot(path=str(ARTIFACTS / "notebook7-approval.png"))

        # Enter on the focused card approves; Esc on the next opens the reason, Enter sends it
        view.locator(".nb-card.nb-asks").focus()
        page.keyboard.press("Enter")
        second = view.locator(".nb-card.nb-asks").filter(has_text="70")
        expect(second).to_have_count(1, timeout=30_000)
        second.focus()
        page.keyboard.press("Escape")
        reason = second.locator("input.nb-reason")
        expect(reason).to_be_focused()
        reason.fill("only the first one")
        page.screenshot(path=str(ARTIFACTS / "notebook7-reason.png"))
        page.keyboard.press("Enter")
        output = page.locator(".jp-OutputArea-output .nbagent-transcript")
        expect(output).to_contain_text("The multiply tool says 6 × 7 = 42.", timeout=30_000)
        expect(output).to_contain_text("approved by you")
        expect(output.locator("pre").filter(has_text=re.compile(r"^42$")).first).to_be_visible()
        # the live view has turned into the static transcript
        expect(view).to_have_count(0)
        expect(output).to_contain_text("only the first one")
        page.screenshot(path=str(ARTIFACTS / "notebook7-done.png"))
        assert not errors, errors
        page.close()
    told = [m for m in server.requests[2]["messages"] if m["role"] == "tool"]
    assert "only the first one" in told[-1]["content"]
