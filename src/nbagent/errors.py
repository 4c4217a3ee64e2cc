"""Every error nbagent raises derives from :class:`NbAgentError`.

The tree::

    NbAgentError
    ├── SessionError
    │   ├── SessionClosedError          a command reached a closed session
    │   └── IllegalTransitionError      the lifecycle does not allow this step
    ├── ApprovalError
    │   ├── UnknownToolCallError        no pending call has this tool_call_id
    │   └── AlreadyDecidedError         the call was already approved or denied
    ├── ToolDefinitionError             a function cannot be turned into a tool
    ├── SettingError (ValueError)       a setting or %%agent option has a bad value
    ├── ToolArgumentsError (ValueError) model-facing: the arguments do not fit the tool
    ├── FileAccessError (ValueError)    model-facing: a path or size a file tool refuses
    ├── McpError                        an MCP server cannot be used
    │   ├── McpConfigError              mcp.json or a server definition is invalid
    │   └── McpServerError              a server failed to start, crashed or stopped answering
    ├── HookError                       a lifecycle hook raised (the run fails)
    ├── RunInterrupted                  a tool saw a kernel interrupt (the run stops)
    ├── CellRunError                    a %%agent cell ended badly (shown without traceback)
    │   ├── RunStopped                  the notebook's interrupt stopped the run
    │   └── RunFailed                   a headless run failed (nbval, papermill fail the cell)
    ├── StoreError                      the session log cannot be used
    │   ├── SessionLockedError          another kernel holds the session
    │   ├── LogFormatError              a line in the middle of a log is not a record
    │   └── LogSchemaError              the log was written by a newer nbagent
    └── ModelError                      the model provider failed
        ├── ProviderAuthError           401/403: key missing or rejected
        ├── ProviderRateLimitError      429 (retried before the first token)
        ├── ProviderTransientError      5xx, connection errors, empty answers (retried)
        │   └── ProviderTimeoutError    nothing arrived within the request timeout (not retried)
        ├── ProviderRequestError        the provider refused the request (400, 404, …)
        ├── StreamBrokenError           the stream broke after output was shown
        ├── ResponseTooLargeError       one response passed max_response_chars (stopped)
        └── ReplayError                 no recording answers a request (--replay replay),
                                        or a recording cannot be read

Model-facing errors are raised inside a tool call and become its error result: the model
reads the message and can correct its call. They also derive from ``ValueError``, which
is what they were before they joined the tree.

Messages say what happened and what to do next. They never contain secrets: provider
messages pass through :func:`nbagent._redact.redact` before they reach an error.
"""

from __future__ import annotations


class NbAgentError(Exception):
    """Base class of every error raised by nbagent."""


class SessionError(NbAgentError):
    """A session command cannot be carried out in the session's current state."""


class SessionClosedError(SessionError):
    """The session was closed; create a new one to go on."""


class IllegalTransitionError(SessionError):
    """The session lifecycle does not allow this transition."""


class ApprovalError(NbAgentError):
    """An approval decision cannot be applied."""


class UnknownToolCallError(ApprovalError):
    """No pending tool call has this ``tool_call_id``."""


class AlreadyDecidedError(ApprovalError):
    """This tool call was already approved or denied."""


class SettingError(NbAgentError, ValueError):
    """A setting has a value nbagent does not accept; the message names where it came from."""


class ToolArgumentsError(NbAgentError, ValueError):
    """The arguments the model sent do not fit the tool; the message is for the model."""


class FileAccessError(NbAgentError, ValueError):
    """A path is outside the notebook folder, or a size is unreasonable (for the model)."""


class ToolDefinitionError(NbAgentError):
    """A Python function cannot be turned into a tool (bad signature or name)."""


class RunInterrupted(NbAgentError):
    """Raised by a tool whose code was interrupted (KeyboardInterrupt): the run stops as
    cancelled, as if the user had pressed Stop."""


class CellRunError(NbAgentError):
    """A ``%%agent`` cell ended badly; IPython shows only the message, no traceback."""

    def _render_traceback_(self) -> list[str]:
        return [f"\x1b[0;31m{type(self).__name__}\x1b[0m: {self}"]


class RunStopped(CellRunError):
    """The run was interrupted from the notebook; the conversation so far is kept."""


class RunFailed(CellRunError):
    """The run failed in a headless execution (so nbval and papermill fail the cell)."""


class McpError(NbAgentError):
    """An MCP server cannot be used."""


class McpConfigError(McpError):
    """``mcp.json`` (or a server added from a cell) is invalid; the message names the
    file, the key and what was expected."""


class McpServerError(McpError):
    """An MCP server failed to start, crashed, or stopped answering."""


class HookError(NbAgentError):
    """A lifecycle hook raised; the run fails with a message naming the hook."""


class StoreError(NbAgentError):
    """The session log cannot be read or written (permissions, disk, format)."""


class SessionLockedError(StoreError):
    """Another process (another kernel) has the session open."""


class LogFormatError(StoreError):
    """A line in the middle of a session log is not a valid record."""


class LogSchemaError(StoreError):
    """The log uses a newer schema than this nbagent reads."""


class ModelError(NbAgentError):
    """The model provider failed.

    ``retryable`` tells the agent loop whether the request may be sent again (only before
    the first streamed token). ``retry_after`` is the provider's hint in seconds, if any.
    """

    retryable: bool = False

    def __init__(self, message: str, *, retry_after: float | None = None) -> None:
        super().__init__(message)
        self.retry_after = retry_after


class ProviderAuthError(ModelError):
    """The provider rejected the credentials (or none were given)."""


class ProviderRateLimitError(ModelError):
    """The provider asked us to slow down (HTTP 429)."""

    retryable = True


class ProviderTransientError(ModelError):
    """A server error, timeout or connection failure that may pass on retry."""

    retryable = True


class ProviderTimeoutError(ProviderTransientError):
    """The provider sent nothing for the request's ``timeout`` seconds.

    Not retried: the user chose how long to wait, and sending the request again to a
    server that stalls would multiply that wait (four attempts of 120 s each)."""

    retryable = False


class ProviderRequestError(ModelError):
    """The provider refused the request itself; retrying will not help."""


class StreamBrokenError(ModelError):
    """The response stream broke after part of the answer had arrived."""


class ResponseTooLargeError(ModelError):
    """One response grew past ``max_response_chars``: a runaway stream, stopped."""


class ReplayError(ModelError):
    """A request has no recording in ``replay`` mode, or a recording cannot be read."""
