"""``%%agent`` and ``%agent``: parse the line, delegate to ``nbagent.notebook``.

IPython does not await what a magic returns, so an input transformer turns every
``%%agent`` cell (and the line commands that start work on the loop) into a top-level
``await``; IPython's autoawait then drives the run on the kernel's own loop. The kernel's
sessions, logs, tools and MCP servers belong to one ``KernelRegistry``, made on first use
(``%load_ext`` stays fast) and closed on ``%unload_ext nbagent`` and at interpreter exit.
"""

from __future__ import annotations

import os
import re
import shlex
import sys
from collections.abc import Coroutine
from typing import TYPE_CHECKING, Any

from IPython.core.error import UsageError
from IPython.core.magic import Magics, line_cell_magic, magics_class
from IPython.core.magic_arguments import argument, magic_arguments

from . import config
from ._images import IMAGE_MODES
from .approval import APPROVAL_MODES
from .replay import REPLAY_MODES

if TYPE_CHECKING:
    from IPython.core.interactiveshell import InteractiveShell

    from .notebook.cell import AgentResult
    from .notebook.opening import SessionOpener
    from .notebook.registry import KernelRegistry

_CELL_CALL = "get_ipython().run_cell_magic('agent',"

AWAITED = ("resume", "compact", "mcp restart", "mcp stop", "mcp start")
"""The ``%agent`` lines whose commands return a coroutine (work on the loop)."""

_AWAITED_LINE = re.compile(
    r"^get_ipython\(\)\.run_line_magic\('agent', '("
    + "|".join(re.escape(line) for line in AWAITED)
    + r")\b"
)


def await_agent_cells(lines: list[str]) -> list[str]:
    """Input transformer: make a ``%%agent`` cell, and the ``%agent`` lines that start
    work on the loop (``AWAITED``), a top-level ``await`` of what they start."""
    if lines and lines[0].startswith(_CELL_CALL):
        return ["await " + lines[0], *lines[1:]]
    return ["await " + line if _AWAITED_LINE.match(line) else line for line in lines]


@magics_class
class AgentMagics(Magics):  # type: ignore[misc]
    """The ``%%agent`` cell magic and the ``%agent`` line commands."""

    def __init__(self, shell: InteractiveShell, settings: config.NBAgent) -> None:
        super().__init__(shell)
        self.settings = settings
        self._opener: SessionOpener | None = None

    @property
    def opener(self) -> SessionOpener:
        """Opens the sessions of cells and commands (made, with the registry, on first use)."""
        if self._opener is None:
            from .notebook.opening import SessionOpener
            from .notebook.registry import KernelRegistry

            self._opener = SessionOpener(self.shell, self.settings, KernelRegistry())
        return self._opener

    @property
    def registry(self) -> KernelRegistry:
        """Everything this kernel keeps between cells; closed by ``unload``."""
        return self.opener.registry

    @magic_arguments()
    @argument("-m", "--model", help="litellm model name")
    @argument("--api-base", help="base URL of an OpenAI-compatible server")
    @argument("--api-key-env", help="environment variable that holds the API key")
    @argument("--timeout", type=float, help="seconds a model request may wait for tokens")
    @argument("--max-cost", type=float, help="budget of this run in USD")
    @argument("--max-tokens", type=int, help="budget of this run in tokens")
    @argument("-p", "--param", action="append", help="model parameter KEY=VALUE (repeatable)")
    @argument("--effort", choices=["low", "medium", "high"], help="reasoning effort")
    @argument(
        "--images",
        nargs="?",
        const="on",
        choices=IMAGE_MODES,
        help="show the model the images tools display: auto (if it can see), on, off",
    )
    @argument("-s", "--session", help="session name")
    @argument("--tools", help="comma-separated tool names")
    @argument("--approve", choices=APPROVAL_MODES, help="approval mode")
    @argument("--max-turns", type=int, help="model requests allowed per run")
    @argument("--mode", choices=config.MODES, help="auto, wait or background")
    @argument("--system", help="system prompt")
    @argument("--context", choices=["cells"], help="add recent notebook cells to the message")
    @argument("--replay", choices=REPLAY_MODES, help="auto, replay, live or record")
    @argument("--recorded-tools", help="tools whose recorded results replay (names or globs)")
    @argument("--allow-errors", action="store_true", help="headless: do not fail the cell")
    @line_cell_magic
    def agent(self, line: str, cell: str | None = None) -> Any:
        """Talk to an agent: ``%%agent [options]`` + the prompt; ``%agent help`` lists the
        line commands."""
        if cell is None:
            from .notebook.commands import run_line

            return run_line(self.opener, line)
        return self._cell(line, cell)

    def _cell(self, line: str, cell: str) -> Coroutine[Any, Any, AgentResult | None]:
        from .notebook.opening import CellOptions

        options = CellOptions(**vars(parse_options(self.agent, line)))
        return self.opener.cell_run(options, cell.strip())


def parse_options(magic: Any, line: str) -> Any:
    """The options of a ``%%agent`` line, split like a shell does (``--system "Be
    terse"`` is one value, without its quotes); a bad line is one ``UsageError``."""
    try:
        argv = shlex.split(line)
    except ValueError as exc:  # "No closing quotation", "No escaped character"
        raise UsageError(f"%%agent options: {str(exc).lower()} in {line.strip()!r}") from None
    return magic.parser.parse_args(argv)


def load(shell: InteractiveShell) -> None:
    """Register the magics, the ``%%agent`` transformer and ``%config NBAgent``."""
    os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")
    settings = next((c for c in shell.configurables if isinstance(c, config.NBAgent)), None)
    if settings is None:
        settings = config.NBAgent(parent=shell)
        shell.configurables.append(settings)
    shell.register_magics(AgentMagics(shell, settings))
    if await_agent_cells not in shell.input_transformers_post:
        shell.input_transformers_post.append(await_agent_cells)
    preload_litellm(shell, settings.model or os.environ.get("NBAGENT_MODEL"))


def preload_litellm(shell: InteractiveShell, model: str | None = None) -> None:
    """In a kernel someone works in, import litellm (~2 s) and warm up its first request
    in the background now, so the first live cell does not pay for it. Not where a
    program runs the notebook (nbval, papermill: a notebook that replays never needs
    litellm) nor outside a kernel."""
    kernel = getattr(shell, "kernel", None)
    if kernel is None or not getattr(kernel, "_allow_stdin", False) or "litellm" in sys.modules:
        return
    from ._provider import start_warming

    start_warming(model or config.DEFAULT_MODEL)


def unload(shell: InteractiveShell) -> None:
    """Remove the transformer and the magics; close the kernel's sessions, logs, servers."""
    if await_agent_cells in shell.input_transformers_post:
        shell.input_transformers_post.remove(await_agent_cells)
    magics = shell.magics_manager.registry.pop("AgentMagics", None)
    if isinstance(magics, AgentMagics) and magics._opener is not None:
        magics._opener.registry.close()
    shell.magics_manager.magics["line"].pop("agent", None)
    shell.magics_manager.magics["cell"].pop("agent", None)
