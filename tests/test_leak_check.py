"""The leak check in conftest.py fails a test that leaves nbagent tasks pending or lets a
pending task be destroyed, and ``NBAGENT_LEAK_CHECK=0`` turns it off."""

from __future__ import annotations

from pathlib import Path

import pytest

pytest_plugins = ["pytester"]

TESTS = """
import asyncio

from nbagent import Session
from nbagent.testing import ScriptedModel, say


async def test_a_session_left_open() -> None:
    session = Session(ScriptedModel([say("hi")]))
    await session.ask("hi")


async def test_a_closed_session() -> None:
    async with Session(ScriptedModel([say("hi")])) as session:
        await session.ask("hi")


def test_a_pending_task_dropped_with_its_loop() -> None:
    loop = asyncio.new_event_loop()
    task = loop.create_task(asyncio.sleep(3600))
    loop.run_until_complete(asyncio.sleep(0))
    loop.close()
    del task
"""


@pytest.fixture
def suite(pytester: pytest.Pytester) -> pytest.Pytester:
    pytester.makeconftest(Path(__file__).with_name("conftest.py").read_text())
    pytester.makepyfile(test_leaks=TESTS)
    return pytester


def run(suite: pytest.Pytester) -> pytest.RunResult:
    return suite.runpytest_subprocess(
        "-p", "no:cacheprovider", "-o", "asyncio_mode=auto",
        "-o", "asyncio_default_fixture_loop_scope=function",
    )  # fmt: skip


def test_leaks_fail_the_test_that_made_them(
    suite: pytest.Pytester, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("NBAGENT_LEAK_CHECK", "1")  # on inside, even when off out here
    result = run(suite)
    result.assert_outcomes(passed=3, errors=2)
    result.stdout.fnmatch_lines(
        [
            "*ERROR at teardown of test_a_session_left_open*",
            "nbagent tasks still pending after the test: nbagent-session-* (Session._actor_main)",
            "*ERROR at teardown of test_a_pending_task_dropped_with_its_loop*",
            "Task was destroyed but it is pending!*",
        ],
        consecutive=False,
    )


@pytest.mark.slow  # a second pytest process
def test_the_check_can_be_turned_off(
    suite: pytest.Pytester, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("NBAGENT_LEAK_CHECK", "0")
    run(suite).assert_outcomes(passed=3)
