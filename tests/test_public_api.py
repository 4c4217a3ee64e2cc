"""The public surface is explicit and stable; importing nbagent stays light."""

from __future__ import annotations

import subprocess
import sys

import nbagent

# The public surface, pinned: adding or removing a name is a decision, made here.
PUBLIC = {
    "AgentResult",
    "AllowRule",
    "AlreadyDecidedError",
    "ApprovalDecided",
    "BudgetDecided",
    "BudgetReached",
    "ApprovalError",
    "ApprovalMode",
    "ApprovalPolicy",
    "ApprovalRequested",
    "Budget",
    "CellRunError",
    "Conversation",
    "EVENT_ADAPTER",
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
}


def test_the_public_names_are_exactly_these_and_exist() -> None:
    assert set(nbagent.__all__) == PUBLIC
    assert len(nbagent.__all__) == len(PUBLIC)  # no name twice
    for name in nbagent.__all__:
        assert getattr(nbagent, name) is not None, name


def test_every_error_of_the_tree_is_public() -> None:
    import nbagent.errors as errors

    tree = {n for n, v in vars(errors).items() if isinstance(v, type) and issubclass(v, Exception)}
    assert tree <= PUBLIC


def test_every_error_derives_from_the_one_base() -> None:
    errors = [getattr(nbagent, n) for n in nbagent.__all__ if n.endswith("Error")]
    assert errors and all(issubclass(e, nbagent.NbAgentError) for e in errors)


def test_import_does_not_load_litellm_or_ipython() -> None:
    code = "import sys, nbagent; print('litellm' in sys.modules, 'IPython' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.split() == ["False", "False"]
