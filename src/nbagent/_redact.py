"""Keep secrets out of messages, events and logs.

Values of environment variables whose names look secret (``*_API_KEY``, ``*_TOKEN``,
``*_SECRET``, ``*PASSWORD*``) and any API key handed to a model are replaced by
``[redacted]`` wherever they appear in text we show or store.
"""

from __future__ import annotations

import os
import re

_SECRET_NAME = re.compile(r"(KEY|TOKEN|SECRET|PASSWORD|PASSWD|CREDENTIAL)", re.IGNORECASE)
_KEY_SHAPED = re.compile(r"\b(sk|pk|rk|ak)-[A-Za-z0-9_\-]{8,}")
_extra_secrets: set[str] = set()

REDACTED = "[redacted]"


def register_secret(value: str | None) -> None:
    """Remember ``value`` (an API key passed in code) so that it is redacted too."""
    if value and len(value) >= 6:
        _extra_secrets.add(value)


def is_secret_name(name: str) -> bool:
    """Whether an environment variable called ``name`` probably holds a secret."""
    return bool(_SECRET_NAME.search(name))


def secret_values() -> list[str]:
    """The secret values currently known, longest first (so overlaps redact whole)."""
    values = {v for k, v in os.environ.items() if is_secret_name(k) and len(v) >= 6}
    values |= _extra_secrets
    return sorted(values, key=len, reverse=True)


def redact(text: str) -> str:
    """Return ``text`` with every known secret and every key-shaped token replaced."""
    for value in secret_values():
        if value in text:
            text = text.replace(value, REDACTED)
    return _KEY_SHAPED.sub(REDACTED, text)
