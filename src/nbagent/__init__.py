"""nbagent: LLM agents at home in the Jupyter notebook.

The runtime (``Session``, tools, approvals, events) is plain asyncio and imports neither
IPython nor litellm until it needs them; ``%load_ext nbagent`` stays instant.
"""

from __future__ import annotations

from typing import Any

from ._version import __version__
from .approval import AllowRule, ApprovalMode, ApprovalPolicy
from .conversation import Conversation
from .errors import (
    AlreadyDecidedError,
    ApprovalError,
    CellRunError,
    FileAccessError,
    HookError,
    IllegalTransitionError,
    LogFormatError,
    LogSchemaError,
    McpConfigError,
    McpError,
    McpServerError,
    ModelError,
    NbAgentError,
    ProviderAuthError,
    ProviderRateLimitError,
    ProviderRequestError,
    ProviderTimeoutError,
    ProviderTransientError,
    ReplayError,
    ResponseTooLargeError,
    RunFailed,
    RunInterrupted,
    RunStopped,
    SessionClosedError,
    SessionError,
    SessionLockedError,
    SettingError,
    StoreError,
    StreamBrokenError,
    ToolArgumentsError,
    ToolDefinitionError,
    UnknownToolCallError,
)
from .events import (
    ApprovalDecided,
    ApprovalRequested,
    BudgetDecided,
    BudgetReached,
    ErrorOccurred,
    Event,
    ModelResponded,
    Provenance,
    ReasoningDelta,
    Retrying,
    RunFinished,
    RunStarted,
    StateChanged,
    SteerAdded,
    TextDelta,
    ToolCall,
    ToolCallProposed,
    ToolCallsRefused,
    ToolFinished,
    ToolStarted,
    Usage,
    event_from_json,
    event_to_json,
)
from .hooks import Hooks, RunContext
from .model import LiteLLMModel, Model, ModelRequest
from .session import (
    Budget,
    RetryPolicy,
    RunHandle,
    RunResult,
    Session,
    SessionState,
    ToolCallRecord,
    UsageTotals,
)
from .tools import FunctionTool, Tool, ToolOutput, tool


def __getattr__(name: str) -> Any:
    if name == "EVENT_ADAPTER":  # built on first use, off the import path
        from .events import event_adapter

        return event_adapter()
    if name == "AgentResult":  # the notebook face, imported when first asked for
        from .notebook.cell import AgentResult

        return AgentResult
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def load_ipython_extension(ipython: Any) -> None:
    """``%load_ext nbagent``: register ``%%agent`` / ``%agent`` (imports them lazily)."""
    from .magics import load

    load(ipython)


def unload_ipython_extension(ipython: Any) -> None:
    """``%unload_ext nbagent``: remove the magics and stop the notebook's sessions."""
    from .magics import unload

    unload(ipython)


__all__ = [
    "EVENT_ADAPTER",
    "AgentResult",
    "AllowRule",
    "AlreadyDecidedError",
    "ApprovalDecided",
    "ApprovalError",
    "ApprovalMode",
    "ApprovalPolicy",
    "ApprovalRequested",
    "Budget",
    "BudgetDecided",
    "BudgetReached",
    "CellRunError",
    "Conversation",
    "ErrorOccurred",
    "Event",
    "FileAccessError",
    "FunctionTool",
    "HookError",
    "Hooks",
    "IllegalTransitionError",
    "LiteLLMModel",
    "LogFormatError",
    "LogSchemaError",
    "McpConfigError",
    "McpError",
    "McpServerError",
    "Model",
    "ModelError",
    "ModelRequest",
    "ModelResponded",
    "NbAgentError",
    "Provenance",
    "ProviderAuthError",
    "ProviderRateLimitError",
    "ProviderRequestError",
    "ProviderTimeoutError",
    "ProviderTransientError",
    "ReasoningDelta",
    "ReplayError",
    "ResponseTooLargeError",
    "RetryPolicy",
    "Retrying",
    "RunContext",
    "RunFailed",
    "RunFinished",
    "RunHandle",
    "RunInterrupted",
    "RunResult",
    "RunStarted",
    "RunStopped",
    "Session",
    "SessionClosedError",
    "SessionError",
    "SessionLockedError",
    "SessionState",
    "SettingError",
    "StateChanged",
    "SteerAdded",
    "StoreError",
    "StreamBrokenError",
    "TextDelta",
    "Tool",
    "ToolArgumentsError",
    "ToolCall",
    "ToolCallProposed",
    "ToolCallRecord",
    "ToolCallsRefused",
    "ToolDefinitionError",
    "ToolFinished",
    "ToolOutput",
    "ToolStarted",
    "UnknownToolCallError",
    "Usage",
    "UsageTotals",
    "__version__",
    "event_from_json",
    "event_to_json",
    "tool",
]
