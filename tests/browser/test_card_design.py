"""The card as a person uses it, in JupyterLab 4 in headless Chromium: Enter approves,
Esc opens the reason a rejection carries to the model, Always allow offers the tool or
these arguments, invisible characters are shown, the status line stays in view, and the
live card and the saved transcript look alike (light and dark). Screenshots of each state
go to ``test-artifacts/card-*.png``.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest

from browser._jupyter import (
    ARTIFACTS,
    needs_chromium,
    write_notebook,
)
from nbagent.testing import ScriptedServer, call, say, use_tools

pytestmark = [needs_chromium, pytest.mark.browser]

TOOLS = r"""
from nbagent.tools import function_tool

def _run(code: str) -> str:
    "Run Python code in the kernel."
    return f"ran {len(code.splitlines())} lines"

def _save(path: str, text: str) -> str:
    "Write a text file."
    return "saved"

run_code = function_tool(_run, name="run_code")
save = function_tool(_save, name="save")
DIFF = "--- a/notes.md\n+++ b/notes.md\n@@ -1,2 +1,2 @@\n keep\n-old line\n+"
save.preview = lambda args: DIFF + args["text"]
"""

TROJAN = (
    'access_level = "user"\n'
    'if access_level != "user\u202e \u2066# Check if admin\u2069 \u2066":\n'
    '    print("You are an admin.")\n'
)
CODE = (
    "import pandas as pd\n"
    "# monthly totals\n"
    "df = pd.read_csv('sales.csv')\n"
    "by_month = df.groupby('month')['total'].sum()\n"
    "print(len(by_month), 3.5)\n"
)


def open_and_run_all(browser: Any, url: str) -> Any:
    page = browser.new_page(viewport={"width": 1100, "height": 900})
    page.goto(url)
    page.get_by_text(re.compile(r"Python 3 \(ipykernel\) \| Idle")).wait_for(timeout=60_000)
    page.get_by_role("menuitem", name="Run", exact=True).click()
    page.get_by_role("menuitem", name=re.compile("^Run All Cells")).click()
    return page


def use_theme(page: Any, name: str) -> None:
    from playwright.sync_api import expect

    page.keyboard.press("Control+Shift+C")  # the command palette
    page.locator(".lm-CommandPalette-input").fill(f"Use Theme: {name}")
    page.keyboard.press("Enter")
    light = "false" if "Dark" in name else "true"
    expect(page.locator("body")).to_have_attribute("data-jp-theme-light", light)
    expect(page.locator("#jupyterlab-splash")).to_have_count(0, timeout=10_000)


def shoot(target: Any, name: str) -> None:
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    target.screenshot(path=str(ARTIFACTS / f"card-{name}.png"))


def test_enter_approves_esc_rejects_with_a_reason_the_model_reads(
    lab: tuple[str, Path], browser: Any
) -> None:
    from playwright.sync_api import expect

    url, home = lab
    with ScriptedServer(
        [
            use_tools(call("run_code", {"code": CODE}), text="I will sum the **sales** by month."),
            use_tools(call("save", {"path": "notes.md", "text": "new line"})),
            use_tools(call("run_code", {"code": TROJAN})),
            say("Understood: not writing there, and not running that."),
        ]
    ) as server:
        write_notebook(
            home,
            "keys.ipynb",
            "%load_ext nbagent",
            TOOLS,
            f"%%agent --api-base {server.url} --tools run_code,save\nSum the sales by month.",
        )
        page = open_and_run_all(browser, url.format(name="keys.ipynb"))
        errors: list[str] = []
        page.on("pageerror", lambda exc: errors.append(str(exc)))
        view = page.locator(".nbagent-view")
        card = view.locator(".nb-card.nb-asks")
        expect(card).to_have_count(1, timeout=60_000)
        # the card: the tool, its badge and description, the code highlighted, monospace
        expect(card.locator(".nbagent-badge")).to_have_text("side effects")
        name = card.locator(".nbagent-tool-name")
        expect(name).to_have_attribute("title", "Run Python code in the kernel.")
        code = card.locator("pre.nbagent-code")
        assert code.inner_text().strip() == CODE.strip()
        assert code.locator("span").count() >= 5  # keywords, strings, numbers, comments
        assert "monospace" in code.evaluate("e => getComputedStyle(e).fontFamily")
        approve = card.get_by_role("button", name="Approve", exact=True)
        assert "nb-primary" in (approve.get_attribute("class") or "")
        shoot(view, "pending-light")
        use_theme(page, "JupyterLab Dark")
        shoot(view, "pending-dark")
        use_theme(page, "JupyterLab Light")

        # Enter on the focused card approves
        card.focus()
        page.keyboard.press("Enter")
        expect(view.locator(".nbagent-tool[data-status='ok']")).to_have_count(1, timeout=30_000)
        expect(view).to_contain_text("approved by you")

        # the write: Esc opens the reason, Enter sends it
        pending = view.locator(".nb-card.nb-asks")
        expect(pending).to_have_count(1, timeout=30_000)
        expect(pending.locator(".nbagent-diff-add")).to_have_text("+new line")
        shoot(view, "write-pending-light")
        pending.focus()
        page.keyboard.press("Escape")
        reason = pending.locator("input.nb-reason")
        expect(reason).to_be_focused()
        reason.fill("notes.md is generated; edit notes.src.md instead")
        shoot(view, "reject-reason-light")
        page.keyboard.press("Enter")

        # the Trojan Source call: the hidden characters are shown, with a warning
        trojan = view.locator(".nb-card.nb-asks")
        expect(trojan).to_have_count(1, timeout=30_000)
        expect(trojan.locator(".nbagent-warning")).to_contain_text("invisible")
        expect(trojan.locator("pre.nbagent-code")).to_contain_text("⟨U+202E⟩")
        expect(trojan.locator("pre.nbagent-code")).to_contain_text("⟨U+2066⟩")
        shoot(view, "trojan-light")
        trojan.get_by_role("button", name="Reject", exact=True).click()
        trojan.locator("input.nb-reason").press("Enter")  # no reason: still a rejection

        output = page.locator(".jp-OutputArea-output .nbagent-transcript")
        expect(output).to_contain_text("not writing there", timeout=30_000)
        expect(output).to_contain_text("edit notes.src.md instead")
        shoot(output, "done-light")
        use_theme(page, "JupyterLab Dark")
        shoot(output, "done-dark")
        use_theme(page, "JupyterLab Light")
        assert not errors, errors
        page.close()

    # the model read the reason with the rejection
    tool_messages = [
        m for m in server.requests[2]["messages"] if m.get("role") == "tool"
    ]  # fmt: skip
    assert "edit notes.src.md instead" in str(tool_messages[-1]["content"])


def test_always_allow_these_arguments_and_a_sticky_status_line(
    lab: tuple[str, Path], browser: Any
) -> None:
    from playwright.sync_api import expect

    url, home = lab
    long_text = "\n\n".join(f"Paragraph {i}: " + "words " * 30 for i in range(40))
    with ScriptedServer(
        [
            use_tools(call("run_code", {"code": "x = 1"}), text=long_text),
            use_tools(call("run_code", {"code": "x = 1"})),
            use_tools(call("run_code", {"code": "x = 2"})),
            say("done"),
        ]
    ) as server:
        write_notebook(
            home,
            "always.ipynb",
            "%load_ext nbagent",
            TOOLS,
            f"%%agent --api-base {server.url} --tools run_code\nSet x.",
        )
        page = open_and_run_all(browser, url.format(name="always.ipynb"))
        view = page.locator(".nbagent-view")
        card = view.locator(".nb-card.nb-asks")
        expect(card).to_have_count(1, timeout=60_000)
        # a long answer above the card: the status line and Stop stay in view
        status = view.locator(".nb-status")
        expect(status.get_by_role("button", name="Stop")).to_be_in_viewport()
        card.get_by_role("button", name=re.compile("^Always allow")).click()
        choice = card.get_by_role("button", name="Allow these arguments")
        expect(choice).to_be_visible()
        shoot(view.locator(".nb-card").first, "always-light")
        choice.click()
        # the same call again runs without asking; a different one asks
        expect(view.locator(".nbagent-tool[data-status='ok']")).to_have_count(2, timeout=30_000)
        again = view.locator(".nb-card.nb-asks")
        expect(again).to_have_count(1, timeout=30_000)
        expect(again.locator("pre.nbagent-code")).to_have_text("x = 2")
        again.get_by_role("button", name="Approve", exact=True).click()
        output = page.locator(".jp-OutputArea-output .nbagent-transcript")
        expect(output).to_contain_text("always for matching calls", timeout=30_000)
        page.close()


@pytest.mark.parametrize("theme", ["light", "dark"])
def test_the_saved_transcript_in_nbconvert_html_is_monospace_and_readable(
    theme: str, browser: Any, tmp_path: Path
) -> None:
    """The data-analysis example as nbconvert exports it: DataFrame previews and code in
    monospace, and a look at it in both of nbconvert's themes."""
    import subprocess
    import sys

    from browser._jupyter import ROOT

    out = tmp_path / f"data-analysis-{theme}.html"
    subprocess.run(
        [sys.executable, "-m", "nbconvert", "--to", "html", f"--HTMLExporter.theme={theme}",
         "--output", str(out), str(ROOT / "notebooks" / "data-analysis.ipynb")],
        check=True, capture_output=True, timeout=120,
    )  # fmt: skip
    page = browser.new_page(viewport={"width": 1000, "height": 900})
    page.goto(out.as_uri())
    transcript = page.locator(".nbagent-transcript").first
    transcript.wait_for()
    fonts = transcript.locator("pre").evaluate_all(
        "pres => pres.map(p => getComputedStyle(p).fontFamily)"
    )
    assert fonts and all("monospace" in font for font in fonts), fonts
    shoot(transcript, f"nbconvert-{theme}")
    page.close()


def test_a_thousand_calls_in_one_response_reach_the_page_as_patches(
    lab: tuple[str, Path], browser: Any
) -> None:
    """Each card's change goes to the page alone: 1,000 calls in one response cost a few MB
    over the kernel's websocket (re-sending every card at each change cost about 1 GB).
    The time is printed for the record; ``bench/many_calls.py`` compares it to headless."""
    import time

    from playwright.sync_api import expect

    url, home = lab
    calls = [call("echo", {"n": i}) for i in range(1000)]
    with ScriptedServer([use_tools(*calls), say("all echoed")]) as server:
        write_notebook(
            home,
            "many.ipynb",
            "%load_ext nbagent\n%config NBAgent.max_calls_per_response = 1000",
            "def echo(n: int) -> int:\n    'Return n.'\n    return n",
            f"%%agent --api-base {server.url} --tools echo --approve all\nEcho 0 to 999.",
        )
        received = [0]

        def on_socket(ws: Any) -> None:
            ws.on(
                "framereceived", lambda payload: received.__setitem__(0, received[0] + len(payload))
            )

        page = browser.new_page(viewport={"width": 1100, "height": 900})
        page.on("websocket", on_socket)
        page.goto(url.format(name="many.ipynb"))
        page.get_by_text(re.compile(r"Python 3 \(ipykernel\) \| Idle")).wait_for(timeout=60_000)
        before = received[0]
        start = time.perf_counter()
        page.get_by_role("menuitem", name="Run", exact=True).click()
        page.get_by_role("menuitem", name=re.compile("^Run All Cells")).click()
        output = page.locator(".jp-OutputArea-output .nbagent-transcript")
        expect(output).to_contain_text("all echoed", timeout=300_000)
        seconds = time.perf_counter() - start
        megabytes = (received[0] - before) / 1e6
        print(f"1,000 calls in JupyterLab: {seconds:.1f} s, {megabytes:.1f} MB received")
        expect(output.locator(".nbagent-tool[data-status='ok']")).to_have_count(1000)
        assert megabytes < 40, megabytes
        page.close()


def test_a_run_at_its_budget_asks_to_continue_or_stop(lab: tuple[str, Path], browser: Any) -> None:
    from playwright.sync_api import expect

    url, home = lab
    runaway = " ".join(f"word{i}" for i in range(20_000))
    with ScriptedServer([say(runaway)]) as server:
        write_notebook(
            home,
            "budget.ipynb",
            "%load_ext nbagent",
            f"%%agent --api-base {server.url} --max-tokens 300\nWrite forever.",
        )
        page = open_and_run_all(browser, url.format(name="budget.ipynb"))
        view = page.locator(".nbagent-view")
        card = view.locator(".nb-card.nb-budget.nb-asks")
        expect(card).to_have_count(1, timeout=60_000)
        expect(card).to_contain_text("budget reached (300 tokens)")
        go_on = card.get_by_role("button", name="Continue with another 300 tokens")
        assert "nb-primary" in (go_on.get_attribute("class") or "")
        shoot(view.locator(".nb-card.nb-budget"), "budget-light")
        go_on.click()
        second = view.locator(".nb-card.nb-budget.nb-asks")
        expect(second).to_contain_text("budget reached (600 tokens)", timeout=30_000)
        second.get_by_role("button", name="Stop", exact=True).click()
        output = page.locator(".jp-OutputArea-output .nbagent-transcript")
        expect(output).to_contain_text("stopped by you", timeout=30_000)
        expect(output).to_contain_text("continued with another 300 tokens by you")
        page.close()
