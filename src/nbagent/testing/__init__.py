"""Test kit: a scripted OpenAI-compatible server (real HTTP and SSE) and an in-memory
scripted model, driven by the same scripts.

    from nbagent.testing import ScriptedServer, say, use_tools, call, http_error

    with ScriptedServer([use_tools(call("add", {"a": 2, "b": 3})), say("5")]) as server:
        session = nbagent.Session("openai/gpt-4o-mini", api_base=server.url, api_key="sk-test")

Sessions that run concurrently against one server script their replies by what they
ask, not by who asks first: ``server.add(*when("one", say("A")), *when("two", say("B")))``.

From a shell (for demos): ``python -m nbagent.testing --echo`` or ``--script replies.json``.
"""

from ._model import ScriptedModel
from ._script import (
    Reply,
    ScriptedCall,
    call,
    cut,
    http_error,
    load_script,
    raw,
    say,
    stall,
    stream_deltas,
    use_tools,
    when,
)
from ._server import ScriptedServer

__all__ = [
    "Reply",
    "ScriptedCall",
    "ScriptedModel",
    "ScriptedServer",
    "call",
    "cut",
    "http_error",
    "load_script",
    "raw",
    "say",
    "stall",
    "stream_deltas",
    "use_tools",
    "when",
]
