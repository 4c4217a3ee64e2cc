"""The quickstart copied into JupyterLab 4, in headless Chromium: its replayed ``add`` call
comes from a recording made elsewhere, so the card waits and offers "Trust this notebook";
Approve lets one run go on and trusts nothing; after a restart the card asks again, and
Trust trusts the notebook on this machine and the run goes on as recorded."""

from __future__ import annotations

import json
import re
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from browser._jupyter import ARTIFACTS, ROOT, jupyterlab, needs_chromium
from nbagent.notebook import recordings

pytestmark = [needs_chromium, pytest.mark.browser]


@pytest.fixture(scope="module")
def lab(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, Path]]:
    home = tmp_path_factory.mktemp("lab")
    with pytest.MonkeyPatch.context() as env:
        env.setenv("NBAGENT_DATA_DIR", str(home / ".data"))
        env.setenv("NBAGENT_API_BASE", "http://127.0.0.1:9/v1")  # going live would fail
        env.delenv("NBAGENT_TRUST", raising=False)
        env.delenv("NBAGENT_RECORDINGS", raising=False)
        with jupyterlab(home) as url:
            yield url, home


def test_trust_the_copied_quickstart_from_its_card(lab: tuple[str, Path], browser: Any) -> None:
    from playwright.sync_api import expect

    url, home = lab
    copy = home / "quickstart.ipynb"
    shutil.copy(ROOT / "notebooks" / "quickstart.ipynb", copy)
    digest = recordings.recordings_digest(json.loads(copy.read_text(encoding="utf-8")))
    page = browser.new_page(viewport={"width": 1280, "height": 900})
    errors: list[str] = []
    page.on("pageerror", lambda exc: errors.append(str(exc)))
    page.goto(url.format(name="quickstart.ipynb"))
    page.get_by_text(re.compile(r"Python 3 \(ipykernel\) \| Idle")).wait_for(timeout=60_000)
    page.get_by_role("menuitem", name="Run", exact=True).click()
    page.get_by_role("menuitem", name=re.compile("^Run All Cells")).click()

    view = page.locator(".nbagent-view").first
    approve = view.get_by_role("button", name="Approve", exact=True)
    expect(approve).to_be_visible(timeout=60_000)
    approve.click()  # once: the run goes on, and the notebook stays untrusted
    done = page.locator(".jp-OutputArea-output").filter(has_text="completed ['add']")
    expect(done).to_be_visible(timeout=30_000)
    page.get_by_text(re.compile(r"Python 3 \(ipykernel\) \| Idle")).wait_for(timeout=60_000)
    assert not (home / ".data" / "trusted").exists()

    page.get_by_role("menuitem", name="Kernel", exact=True).click()
    page.get_by_role("menuitem", name=re.compile("^Restart Kernel and Run All Cells")).click()
    page.locator(".jp-Dialog .jp-mod-accept").click()
    trust = view.get_by_role("button", name="Trust this notebook", exact=True)
    expect(trust).to_be_visible(timeout=60_000)
    expect(view.get_by_role("button", name="Approve", exact=True)).to_be_visible()
    expect(view).to_contain_text("replayed from a recording made elsewhere")
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    view.screenshot(path=str(ARTIFACTS / "jupyterlab-trust-light.png"))
    page.keyboard.press("Control+Shift+C")  # the command palette
    page.locator(".lm-CommandPalette-input").fill("Use Theme: JupyterLab Dark")
    page.keyboard.press("Enter")
    expect(page.locator("body")).to_have_attribute("data-jp-theme-light", "false")
    view.screenshot(path=str(ARTIFACTS / "jupyterlab-trust-dark.png"))
    assert not (home / ".data" / "trusted").exists()

    trust.click()
    output = page.locator(".jp-OutputArea-output .nbagent-transcript").first
    expect(output).to_contain_text("approved by you", timeout=30_000)
    expect(view.get_by_role("button", name="Trust this notebook")).to_have_count(0)
    expect(done).to_be_visible(timeout=30_000)
    trusted = (home / ".data" / "trusted").read_text(encoding="utf-8")
    assert trusted.split()[0] == digest
    assert not errors, errors
    page.close()
