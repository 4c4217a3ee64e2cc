"""Notebook settings: ``%config NBAgent.<name>`` with environment-variable fallbacks.

Where a value comes from, first match wins:

1. the ``%%agent`` cell's own option (``--model``, ``--approve``, …);
2. ``%config NBAgent.<name> = …`` (or ``c.NBAgent.<name>`` in an IPython profile);
3. the environment: ``NBAGENT_MODEL``, ``NBAGENT_API_BASE``, ``NBAGENT_APPROVE``,
   ``NBAGENT_MODE``;
4. the built-in default.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Any, Literal, cast

from traitlets import Bool, Enum, Float, Int, List, Unicode
from traitlets.config import Configurable

from ._images import IMAGE_MODES, ImageMode
from .approval import APPROVAL_MODES, ApprovalMode
from .errors import SettingError
from .replay import REPLAY_MODES, ReplayMode

Mode = Literal["auto", "wait", "background"]
"""How a ``%%agent`` cell waits for its run (see ``NBAgent.mode``)."""

MODES: tuple[Mode, ...] = ("auto", "wait", "background")

DEFAULT_MODEL = "openai/gpt-4o-mini"

ENV = {
    "model": "NBAGENT_MODEL",
    "api_base": "NBAGENT_API_BASE",
    "approve": "NBAGENT_APPROVE",
    "mode": "NBAGENT_MODE",
    "replay": "NBAGENT_REPLAY",
    "trust": "NBAGENT_TRUST",
    "api_key_env": "NBAGENT_API_KEY_ENV",
}
"""Setting name → environment variable that supplies it when not configured."""


class NBAgent(Configurable):
    """Defaults for ``%%agent`` cells. Unset values fall back to the environment."""

    model = Unicode(
        None,
        allow_none=True,
        help=f"Model for new sessions (litellm name). Env: NBAGENT_MODEL; default {DEFAULT_MODEL}.",
    ).tag(config=True)
    api_base = Unicode(
        None,
        allow_none=True,
        help="Base URL of an OpenAI-compatible server. Env: NBAGENT_API_BASE.",
    ).tag(config=True)
    approve = Enum(
        list(APPROVAL_MODES),
        None,
        allow_none=True,
        help="Approval mode: ask, all, none, readonly. Env: NBAGENT_APPROVE; default ask.",
    ).tag(config=True)
    mode = Enum(
        list(MODES),
        None,
        allow_none=True,
        help="auto, wait or background. Env: NBAGENT_MODE; default auto.",
    ).tag(config=True)
    max_turns = Int(25, help="Model requests allowed per run.").tag(config=True)
    max_calls_per_response = Int(
        64,
        help="The most tool calls one model response may propose: a response with more is "
        "refused (none of its calls asks or runs) and the model is told why.",
    ).tag(config=True)
    system = Unicode(None, allow_none=True, help="System prompt for new sessions.").tag(config=True)
    flush_interval = Float(
        0.04, help="Seconds between streamed-text messages to the live view (33–50 ms is smooth)."
    ).tag(config=True)
    text_sync_interval = Float(
        1.0, help="Seconds between full-text syncs of the live view (its state for reloads)."
    ).tag(config=True)
    fail_headless = Bool(
        True,
        help="In headless runs (nbclient, nbval, papermill) a failed run fails the cell.",
    ).tag(config=True)
    persist = Bool(
        True,
        help="Keep each session in a log beside the notebook, so it survives kernel restarts.",
    ).tag(config=True)
    store_dir = Unicode(
        None,
        allow_none=True,
        help="Folder for session logs (one subfolder per notebook). Env: NBAGENT_HOME; "
        "default: .nbagent/ beside the notebook.",
    ).tag(config=True)
    max_running = Int(4, help="How many sessions may run at the same time in this kernel.").tag(
        config=True
    )
    replay = Enum(
        list(REPLAY_MODES),
        None,
        allow_none=True,
        help="auto (recorded requests replay, others go live and are recorded), replay "
        "(recordings only), live (ignore them, record nothing), record (re-record). "
        "Env: NBAGENT_REPLAY; default auto.",
    ).tag(config=True)
    trust = Bool(
        None,
        allow_none=True,
        help="Trust the recordings of the notebook being run: their tool calls get the "
        "decisions recorded with them (read-only ones always run). Decided when the kernel "
        "reads the recordings (its first agent cell). Env: NBAGENT_TRUST=1; or once per "
        "machine: nbagent trust NOTEBOOK.ipynb.",
    ).tag(config=True)
    recorded_tools = List(
        Unicode(),
        default_value=[],
        help="Tools (names or globs) whose recorded results replay instead of running again.",
    ).tag(config=True)
    api_key_env = Unicode(
        None,
        allow_none=True,
        help="The environment variable to read the model's API key from (the key itself "
        "never enters the notebook). Env: NBAGENT_API_KEY_ENV.",
    ).tag(config=True)
    timeout = Float(
        None,
        allow_none=True,
        help="Seconds a model request may take before its first token (and between tokens).",
    ).tag(config=True)
    max_cost = Float(
        None, allow_none=True, help="Budget of one run in USD, enforced while it streams."
    ).tag(config=True)
    max_tokens = Int(
        None, allow_none=True, help="Budget of one run in tokens, enforced while it streams."
    ).tag(config=True)
    images = Enum(
        list(IMAGE_MODES),
        "auto",
        help="Show the model the images tool calls display (plots, PNG/JPEG outputs): auto "
        "(when litellm says the model can see), on, off; images not shown are noted in text.",
    ).tag(config=True)
    titles = Bool(
        True,
        help="After the first exchange of an interactive session, ask the model for a short "
        "title (in the background; never in headless runs).",
    ).tag(config=True)


@dataclass(frozen=True)
class Settings:
    """The effective defaults for one cell, after config and environment."""

    model: str
    api_base: str | None
    approve: ApprovalMode
    mode: Mode
    max_turns: int
    system: str | None
    flush_interval: float
    text_sync_interval: float
    fail_headless: bool
    persist: bool
    store_dir: str | None
    max_running: int
    titles: bool
    replay: ReplayMode
    trust: bool
    recorded_tools: list[str]
    api_key_env: str | None = None
    timeout: float | None = None
    max_cost: float | None = None
    max_tokens: int | None = None
    max_calls_per_response: int = 64
    images: ImageMode = "auto"


def _pick(config: NBAgent | None, name: str) -> Any:
    value = getattr(config, name, None) if config is not None else None
    if value is None and name in ENV:
        value = os.environ.get(ENV[name]) or None
    return value


def resolve(config: NBAgent | None = None) -> Settings:
    """Combine ``config`` (may be None), the environment and the built-in defaults."""
    approve = _pick(config, "approve") or "ask"
    if approve not in APPROVAL_MODES:
        raise SettingError(f"NBAGENT_APPROVE={approve!r} is not one of {', '.join(APPROVAL_MODES)}")
    mode = _pick(config, "mode") or "auto"
    if mode not in MODES:
        raise SettingError(f"NBAGENT_MODE={mode!r} is not one of {', '.join(MODES)}")
    replay = _pick(config, "replay") or "auto"
    if replay not in REPLAY_MODES:
        raise SettingError(f"NBAGENT_REPLAY={replay!r} is not one of {', '.join(REPLAY_MODES)}")
    defaults = config if config is not None else NBAgent()
    return Settings(
        model=_pick(config, "model") or DEFAULT_MODEL,
        api_base=_pick(config, "api_base"),
        approve=cast(ApprovalMode, approve),
        mode=cast(Mode, mode),
        max_turns=int(defaults.max_turns),
        system=defaults.system,
        flush_interval=float(defaults.flush_interval),
        text_sync_interval=float(defaults.text_sync_interval),
        fail_headless=bool(defaults.fail_headless),
        persist=bool(defaults.persist),
        store_dir=defaults.store_dir,
        max_running=int(defaults.max_running),
        titles=bool(defaults.titles),
        replay=cast(ReplayMode, replay),
        trust=_truthy(_pick(config, "trust")),
        recorded_tools=list(defaults.recorded_tools),
        api_key_env=_pick(config, "api_key_env"),
        timeout=_positive(defaults.timeout, "timeout"),
        max_cost=_positive(defaults.max_cost, "max_cost"),
        max_tokens=_positive(defaults.max_tokens, "max_tokens"),
        max_calls_per_response=_positive(
            int(defaults.max_calls_per_response), "max_calls_per_response"
        ),
        images=defaults.images,
    )


def _positive(value: Any, name: str) -> Any:
    if value is not None and value <= 0:
        raise SettingError(f"NBAgent.{name} must be a positive number, not {value!r}")
    return value


def _truthy(value: Any) -> bool:
    if isinstance(value, str):
        return value.strip().lower() in ("1", "true", "yes", "on")
    return bool(value)
