"""A provider's failure as one line: which error it is, which key was read, how long to wait.

litellm wraps a provider's message in its own exception chain ("litellm.RateLimitError:
RateLimitError: OpenAIException - {...}"); :func:`provider_error` keeps the provider's
own message, names the variable the key came from on a 401/403, and maps the failure
onto the error tree (only 429, 5xx and connection failures are retried).
"""

from __future__ import annotations

import asyncio
import email.utils
import json
import math
import os
import re
import threading
import time
from collections.abc import Callable
from typing import Any

from ._redact import is_secret_name, redact
from .errors import (
    ModelError,
    ProviderAuthError,
    ProviderRateLimitError,
    ProviderRequestError,
    ProviderTimeoutError,
    ProviderTransientError,
)

MAX_RETRY_AFTER = 120.0
"""The longest Retry-After taken as given (seconds); larger hints are cut to this, and
the retry policy's ``max_delay`` bounds it again."""

DOCTOR_HINT = "`%agent doctor` checks the setup"

_CHAIN = re.compile(r"^\s*(?:litellm\.)?[A-Za-z_.]*(?:Error|Exception|Timeout)\b\s*(?::|-)\s*")
_TAIL = re.compile(
    r"\s*(?:Original exception:|Error_str:|Received Model Group=|To drop these,).*$", re.DOTALL
)
_TRANSIENT_NAMES = frozenset(
    {
        "InternalServerError",
        "ServiceUnavailableError",
        "APIConnectionError",
        "MidStreamFallbackError",
        "BadGatewayError",
    }
)
_PROVIDER_ALIASES = {"ollama_chat": "ollama", "text-completion-openai": "openai"}
_VARIABLE = re.compile(r"^[A-Z][A-Z0-9_]*$")
_TIMEOUT_NAMES = frozenset({"Timeout", "APITimeoutError", "ReadTimeout", "ConnectTimeout"})


_LOADED = threading.Event()
"""Set once litellm is imported (whole: a background import puts the module in
``sys.modules`` long before it is ready, and a second import waits for it)."""

LOADING_LISTENERS: set[Callable[[bool], None]] = set()
"""Told True when a model request starts waiting for the import of litellm, False when it
ends (a cell's status line says "loading the model library…" meanwhile)."""

LOADING_NOTE = "loading the model library…"


def import_litellm() -> Any:
    """Import litellm offline and quietly (its price map from the package, no network)."""
    os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")
    import litellm

    litellm.suppress_debug_info = True
    _LOADED.set()
    return litellm


_WARMED = threading.Event()
"""Clear while :func:`start_warming`'s thread works: a request waits for it (it would do
the same work itself, racing the thread for litellm's lazy setup)."""
_WARMED.set()
_MAX_WARM_WAIT = 30.0


def start_warming(model: str) -> None:
    """Import litellm in a background thread and warm up its first request for ``model``
    (see :func:`_warm`); requests meanwhile wait for it, with the loading note."""
    _WARMED.clear()
    threading.Thread(
        target=_warm, args=(model,), name="nbagent-import-litellm", daemon=True
    ).start()


def _warm(model: str) -> None:
    """Import litellm, then do what its first request does before the first token: load
    the tokenizers it counts a prompt with (to price it) and build its response types
    (~0.3–1 s on a first request otherwise). No network: a mock response."""
    try:
        litellm = import_litellm()
        messages = [{"role": "user", "content": "warm up"}]
        litellm.token_counter(model=model, messages=messages)
        chunks = litellm.completion(
            model=model, messages=messages, mock_response="ok", stream=True,
            stream_options={"include_usage": True},
        )  # fmt: skip
        for _ in chunks:
            pass
    except Exception:  # a model litellm does not know: the first request will say so
        pass
    finally:
        _WARMED.set()


def _ready() -> Any:
    litellm = import_litellm()
    _WARMED.wait(_MAX_WARM_WAIT)
    return litellm


def litellm_ready() -> bool:
    """Whether litellm is imported and ready (using it now does not wait for an import)."""
    return _LOADED.is_set()


async def load_litellm() -> Any:
    """litellm, imported off the loop (the page stays live meanwhile). While the request
    waits for it, :data:`LOADING_LISTENERS` hear of it: the first time in a process, or
    while the background import ``%load_ext`` started is not done yet."""
    if _LOADED.is_set() and _WARMED.is_set():
        return import_litellm()
    for listener in list(LOADING_LISTENERS):
        listener(True)
    try:
        return await asyncio.to_thread(_ready)
    finally:
        for listener in list(LOADING_LISTENERS):
            listener(False)


def missing_key_names(model: str) -> list[str]:
    """The key variables litellm needs for ``model`` and cannot find (no request sent).

    Only names that hold secrets count: a provider's base-URL variable (such as
    ``OLLAMA_API_BASE``) has a default and is not a missing key."""
    try:
        report = import_litellm().validate_environment(model)
    except Exception:
        return []
    names = report.get("missing_keys") or [] if isinstance(report, dict) else []
    return [str(name) for name in names if is_secret_name(str(name))]


def key_variable(model: str) -> str:
    """The environment variable litellm reads the key of ``model``'s provider from."""
    missing = missing_key_names(model)
    if missing:
        return missing[0]
    provider = model.split("/", 1)[0] if "/" in model else "openai"
    provider = _PROVIDER_ALIASES.get(provider, provider)
    return f"{provider.upper()}_API_KEY"


def missing_key_error(names: list[str]) -> ProviderAuthError:
    """The one-line error for keys that are not set."""
    verb = "is" if len(names) == 1 else "are"
    return ProviderAuthError(
        f"{' and '.join(names)} {verb} not set: set it in the kernel's environment, or name "
        f"another variable with --api-key-env; {DOCTOR_HINT}"
    )


def provider_message(exc: BaseException) -> str:
    """The provider's own message, one line, without litellm's exception chain (redacted)."""
    text = str(exc).strip()
    if not text:
        return type(exc).__name__
    previous = None
    while previous != text:
        previous = text
        text = _CHAIN.sub("", text, count=1)
    text = _TAIL.sub("", text) or text
    text = _json_message(text) or text
    first = next((line.strip() for line in text.splitlines() if line.strip()), text)
    first = redact(first)
    return first if len(first) <= 300 else first[:300] + "…"


def _json_message(text: str) -> str | None:
    """``message`` from a JSON error body inside ``text`` (OpenAI, Anthropic, Ollama)."""
    start = text.find("{")
    if start < 0:
        return None
    try:  # the body may sit inside a repr (b'{...}') or be followed by more text
        data, _ = json.JSONDecoder().raw_decode(text[start:])
    except json.JSONDecodeError:
        return None
    for _ in range(3):
        if isinstance(data, dict) and "error" in data:
            data = data["error"]
        elif isinstance(data, dict) and "message" in data:
            data = data["message"]
        else:
            break
    return data if isinstance(data, str) and data.strip() else None


def provider_error(exc: BaseException, model: str, *, key_source: str | None = None) -> ModelError:
    """Map a litellm / OpenAI / transport exception onto our error tree, in one line.

    ``key_source`` says where the key of the request came from: a variable name
    ("OPENAI_API_KEY") or a phrase ("the key was given in code (api_key=)"); a 401/403
    names it. Without it, the provider's usual variable is named."""
    if isinstance(exc, ModelError):
        return exc
    status = getattr(exc, "status_code", None)
    name = type(exc).__name__
    detail = provider_message(exc)
    code = f"{status}" if isinstance(status, int) else name
    if status in (401, 403) or name in ("AuthenticationError", "PermissionDeniedError"):
        return ProviderAuthError(_auth_message(model, code, detail, key_source))
    if "missing credentials" in detail.lower():
        variable = key_variable(model)
        return missing_key_error([variable])
    if status == 429 or name == "RateLimitError":
        return ProviderRateLimitError(
            f"{model} is rate-limited (429): {detail}", retry_after=retry_after(exc)
        )
    if name in _TIMEOUT_NAMES or isinstance(exc, TimeoutError):
        return ProviderTimeoutError(
            f"{model} sent nothing within the request timeout ({name}): {detail}. "
            "Raise the timeout (--timeout) or try again."
        )
    if (
        (isinstance(status, int) and status >= 500)
        or name in _TRANSIENT_NAMES
        or isinstance(exc, ConnectionError)
    ):
        return ProviderTransientError(
            f"{model} failed ({code}): {detail}", retry_after=retry_after(exc)
        )
    if "does not support parameters" in detail:
        detail += " (add drop_params=True to the parameters to leave unsupported ones out)"
    return ProviderRequestError(f"{model} refused the request ({code}): {detail}")


def _auth_message(model: str, code: str, detail: str, key_source: str | None) -> str:
    source = key_source or key_variable(model)
    if _VARIABLE.match(source):
        source = (
            f"the key was read from {source}" if os.environ.get(source) else f"{source} is not set"
        )
    return (
        f"{model} refused the credentials ({code}: {detail}); {source}. "
        f"Check the key, or name another variable with --api-key-env; {DOCTOR_HINT}"
    )


def retry_after(exc: BaseException) -> float | None:
    """The provider's Retry-After hint in seconds: finite, at least 0, at most
    :data:`MAX_RETRY_AFTER`; None when absent or unreadable (``nan``, a bad date)."""
    response = getattr(exc, "response", None)
    headers = getattr(response, "headers", None) or getattr(exc, "headers", None)
    if not headers:
        return None
    try:
        millis = headers.get("retry-after-ms")
        value = headers.get("retry-after")
    except Exception:
        return None
    if millis is not None:
        seconds = _seconds(str(millis))
        return None if seconds is None else _bounded(seconds / 1000)
    return None if value is None else _bounded(_seconds(str(value)))


def _seconds(value: str) -> float | None:
    try:
        return float(value)
    except ValueError:
        pass
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError, IndexError):
        return None
    return when.timestamp() - time.time()


def _bounded(seconds: float | None) -> float | None:
    if seconds is None or not math.isfinite(seconds):
        return None
    return min(max(seconds, 0.0), MAX_RETRY_AFTER)
