"""Tools: the ``Tool`` protocol, Python functions as tools, and the ``@tool`` decorator."""

from __future__ import annotations

import asyncio
import inspect
import re
import typing
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Literal, Protocol, overload, runtime_checkable

import pydantic

from ..errors import ToolArgumentsError, ToolDefinitionError

ToolPolicy = Literal["ask", "allow", "deny"]
"""Per-tool approval policy: ask a person (the default), always allow, always deny."""

_NAME = re.compile(r"^[A-Za-z0-9_\-.:]{1,64}$")


@dataclass(frozen=True, slots=True)
class ToolOutput:
    """What a tool returns when it wants to say more than one value.

    ``text`` goes to the model. ``is_error`` marks the call as failed (the model still sees
    the text). ``display`` holds MIME bundles for the notebook view (images, tables) that
    the model does not receive as text.
    """

    text: str
    is_error: bool = False
    display: tuple[dict[str, Any], ...] = ()


@runtime_checkable
class Tool(Protocol):
    """Anything the agent can call: Python functions, notebook tools, MCP tools."""

    @property
    def name(self) -> str: ...
    @property
    def description(self) -> str: ...
    @property
    def parameters(self) -> dict[str, Any]:
        """JSON schema of the arguments object."""
        ...

    @property
    def read_only(self) -> bool:
        """True when calling the tool has no side effects."""
        ...

    @property
    def policy(self) -> ToolPolicy | None:
        """The tool's own approval policy, or None to follow the session's mode."""
        ...

    @property
    def max_result_chars(self) -> int | None: ...

    def validate(self, arguments: dict[str, Any]) -> dict[str, Any]:
        """Check and convert the model's arguments; raise ``ToolArgumentsError``."""
        ...

    async def invoke(self, arguments: dict[str, Any]) -> Any:
        """Run the tool with validated arguments and return its result."""
        ...


def tool_spec(tool: Tool) -> dict[str, Any]:
    """The OpenAI-format declaration of ``tool`` sent with each model request."""
    return {
        "type": "function",
        "function": {
            "name": tool.name,
            "description": tool.description,
            "parameters": tool.parameters,
        },
    }


@dataclass(eq=False)
class FunctionTool:
    """A Python function (sync or async) exposed as a tool.

    The argument schema comes from the type hints, the description from the docstring
    (its ``Args:`` section describes each parameter). Synchronous functions run in a worker
    thread by default so the event loop (and the notebook's buttons) stay responsive.
    """

    func: Callable[..., Any]
    name: str
    description: str
    parameters: dict[str, Any]
    read_only: bool = False
    policy: ToolPolicy | None = None
    run_in_thread: bool = True
    timeout: float | None = None
    max_result_chars: int | None = None
    preview: Callable[[dict[str, Any]], str | None] | None = None
    """Optional: describe what a call would change, shown in its approval card."""
    _model: type[pydantic.BaseModel] = field(default=pydantic.BaseModel, repr=False)

    def validate(self, arguments: dict[str, Any]) -> dict[str, Any]:
        try:
            parsed = self._model.model_validate(arguments)
        except pydantic.ValidationError as exc:
            raise ToolArgumentsError(_describe_validation_error(self.name, exc)) from None
        return {name: getattr(parsed, name) for name in type(parsed).model_fields}

    async def invoke(self, arguments: dict[str, Any]) -> Any:
        call = self._call(arguments)
        if self.timeout is None:
            return await call
        try:
            return await asyncio.wait_for(call, self.timeout)
        except asyncio.TimeoutError:
            raise TimeoutError(
                f"the tool {self.name} did not finish within {self.timeout:g} s"
            ) from None

    async def _call(self, arguments: dict[str, Any]) -> Any:
        if inspect.iscoroutinefunction(self.func):
            return await self.func(**arguments)
        if self.run_in_thread:
            return await asyncio.to_thread(self.func, **arguments)
        result = self.func(**arguments)
        if inspect.isawaitable(result):
            return await result
        return result

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        """Call the underlying function directly, as if it were not a tool."""
        return self.func(*args, **kwargs)


def _describe_validation_error(name: str, exc: pydantic.ValidationError) -> str:
    problems = []
    for err in exc.errors(include_url=False):
        where = ".".join(str(p) for p in err["loc"]) or "arguments"
        if err["type"] == "missing":
            problems.append(f"missing required argument '{where}'")
        elif err["type"] == "extra_forbidden":
            problems.append(f"unexpected argument '{where}'")
        else:
            problems.append(f"'{where}': {err['msg']} (got {err.get('input')!r})")
    return f"Invalid arguments for tool '{name}': " + "; ".join(problems) + "."


_SECTION = re.compile(
    r"^\s*(Args|Arguments|Parameters|Params|Returns?|Raises|Yields|Examples?):?\s*$"
)


def _parse_docstring(doc: str | None) -> tuple[str, dict[str, str]]:
    """Split a docstring into its summary and per-parameter descriptions.

    Understands Google style (``Args:`` then ``name: text``), NumPy style
    (``Parameters`` / ``----------`` / ``name : type``) and Sphinx ``:param name: text``.
    """
    if not doc:
        return "", {}
    lines = inspect.cleandoc(doc).splitlines()
    summary: list[str] = []
    params: dict[str, str] = {}
    section: str | None = None
    current: str | None = None
    for line in lines:
        sphinx = re.match(r"^\s*:param\s+(?:\S+\s+)?(\w+):\s*(.*)$", line)
        if sphinx:
            current = sphinx.group(1)
            params[current] = sphinx.group(2).strip()
            section = "sphinx"
            continue
        heading = _SECTION.match(line)
        if heading:
            section = heading.group(1).lower()
            current = None
            continue
        if re.match(r"^\s*-{3,}\s*$", line):
            continue
        if section is None:
            summary.append(line)
        elif section in ("args", "arguments", "parameters", "params"):
            numpy_entry = re.match(r"^(\w+)\s+:\s*\S*", line)
            google_entry = re.match(r"^\s{0,4}(\w+)\s*(?:\([^)]*\))?:\s*(.*)$", line)
            if numpy_entry:  # "name : type", the text follows on indented lines
                current = numpy_entry.group(1)
                params[current] = ""
            elif google_entry and not line.startswith(" " * 5):
                current = google_entry.group(1)
                params[current] = google_entry.group(2).strip()
            elif current and line.strip():
                params[current] = (params[current] + " " + line.strip()).strip()
        elif section == "sphinx" and current and line.strip():
            params[current] = (params[current] + " " + line.strip()).strip()
    return "\n".join(summary).strip(), {k: v for k, v in params.items() if v}


def _strip_titles(schema: Any) -> Any:
    if isinstance(schema, dict):
        return {k: _strip_titles(v) for k, v in schema.items() if k != "title"}
    if isinstance(schema, list):
        return [_strip_titles(v) for v in schema]
    return schema


def function_tool(
    func: Callable[..., Any],
    *,
    name: str | None = None,
    description: str | None = None,
    read_only: bool = False,
    policy: ToolPolicy | None = None,
    run_in_thread: bool = True,
    timeout: float | None = None,
    max_result_chars: int | None = None,
) -> FunctionTool:
    """Build a :class:`FunctionTool` from ``func``'s signature, hints and docstring."""
    if not callable(func):
        raise ToolDefinitionError(f"a tool must be a function, not {type(func).__name__}")
    tool_name = str(name or getattr(func, "__name__", ""))
    if not _NAME.match(tool_name):
        raise ToolDefinitionError(
            f"tool name {tool_name!r} is not allowed: use 1–64 letters, digits, '_' or '-'"
        )
    try:
        signature = inspect.signature(func)
        hints = typing.get_type_hints(func, include_extras=True)
    except (TypeError, ValueError, NameError) as exc:
        raise ToolDefinitionError(f"cannot read the signature of {tool_name}: {exc}") from exc
    summary, param_docs = _parse_docstring(inspect.getdoc(func))
    fields: dict[str, Any] = {}
    for param in signature.parameters.values():
        if param.kind in (param.VAR_POSITIONAL, param.VAR_KEYWORD):
            raise ToolDefinitionError(
                f"tool {tool_name}: *args and **kwargs cannot be described to a model; "
                "give every parameter a name"
            )
        if param.kind is param.POSITIONAL_ONLY:
            raise ToolDefinitionError(
                f"tool {tool_name}: positional-only parameter {param.name!r} is not supported"
            )
        annotation = hints.get(param.name, Any)
        default = ... if param.default is param.empty else param.default
        fields[param.name] = (
            annotation,
            pydantic.Field(default, description=param_docs.get(param.name)),
        )
    try:
        model = pydantic.create_model(
            f"{tool_name}_arguments",
            __config__=pydantic.ConfigDict(extra="forbid", arbitrary_types_allowed=True),
            **fields,
        )
        schema = _strip_titles(model.model_json_schema())
    except (pydantic.PydanticSchemaGenerationError, TypeError) as exc:
        raise ToolDefinitionError(
            f"tool {tool_name}: its parameter types cannot be described as JSON ({exc})"
        ) from exc
    schema.setdefault("properties", {})
    return FunctionTool(
        func=func,
        name=tool_name,
        description=description or summary or f"Call {tool_name}.",
        parameters=schema,
        read_only=read_only,
        policy=policy,
        run_in_thread=run_in_thread,
        timeout=timeout,
        max_result_chars=max_result_chars,
        _model=model,
    )


REGISTRY: dict[str, Tool] = {}
"""Tools registered with ``@nbagent.tool``, by name (the notebook resolves names here)."""


@overload
def tool(func: Callable[..., Any], /) -> FunctionTool: ...
@overload
def tool(
    *,
    name: str | None = None,
    description: str | None = None,
    read_only: bool = False,
    policy: ToolPolicy | None = None,
    run_in_thread: bool = True,
    timeout: float | None = None,
    max_result_chars: int | None = None,
) -> Callable[[Callable[..., Any]], FunctionTool]: ...
def tool(
    func: Callable[..., Any] | None = None,
    /,
    *,
    name: str | None = None,
    description: str | None = None,
    read_only: bool = False,
    policy: ToolPolicy | None = None,
    run_in_thread: bool = True,
    timeout: float | None = None,
    max_result_chars: int | None = None,
) -> FunctionTool | Callable[[Callable[..., Any]], FunctionTool]:
    """Turn a function into a tool and register it by name.

    Use it bare (``@nbagent.tool``) or with options
    (``@nbagent.tool(read_only=True, timeout=30)``). The decorated object is still
    callable as the original function.
    """

    def wrap(f: Callable[..., Any]) -> FunctionTool:
        made = function_tool(
            f,
            name=name,
            description=description,
            read_only=read_only,
            policy=policy,
            run_in_thread=run_in_thread,
            timeout=timeout,
            max_result_chars=max_result_chars,
        )
        REGISTRY[made.name] = made
        return made

    if func is not None:
        return wrap(func)
    return wrap


ToolLike = Tool | Callable[..., Any] | str


def resolve_tools(tools: typing.Iterable[ToolLike]) -> dict[str, Tool]:
    """Turn tools, plain functions and registered names into a name → tool mapping."""
    resolved: dict[str, Tool] = {}
    for item in tools:
        if isinstance(item, str):
            if item not in REGISTRY:
                known = ", ".join(sorted(REGISTRY)) or "none"
                raise ToolDefinitionError(
                    f"no tool named {item!r} is registered (registered: {known}); "
                    "decorate a function with @nbagent.tool or pass the function itself"
                )
            made: Tool = REGISTRY[item]
        elif isinstance(item, Tool):
            made = item
        else:
            made = function_tool(item)
        if made.name in resolved and resolved[made.name] is not made:
            raise ToolDefinitionError(f"two different tools are named {made.name!r}")
        resolved[made.name] = made
    return resolved
