"""Images in tool displays: checked PNG/JPEG data, and the part of a request that shows
them to a model that can see.

A display value is trusted only when it decodes to a PNG or JPEG (magic bytes checked);
anything else is not an image, whatever its MIME type says.
"""

from __future__ import annotations

import base64
import binascii
import re
from collections.abc import Iterable, Mapping
from typing import Any

IMAGE_MIMES = ("image/png", "image/jpeg")
IMAGE_MAGIC = {"image/png": b"\x89PNG\r\n\x1a\n", "image/jpeg": b"\xff\xd8\xff"}
BASE64 = re.compile(r"[A-Za-z0-9+/]+={0,2}")

MAX_MODEL_IMAGES = 4
"""Images sent with one request (the latest ones)."""
MAX_MODEL_IMAGE_CHARS = 3_000_000
"""Base64 characters of images sent with one request (about 2.2 MB of image data)."""


def checked_image_data(mime: str, value: Any) -> str | None:
    """``value`` as base64 if it is a PNG/JPEG in base64 (or raw bytes), else None."""
    if isinstance(value, bytes):
        if value.startswith(IMAGE_MAGIC[mime]):
            return base64.b64encode(value).decode("ascii")
        try:
            value = value.decode("ascii")
        except UnicodeDecodeError:
            return None
    if not isinstance(value, str):
        return None
    data = value.replace("\n", "").replace("\r", "")
    if len(data) % 4 or not BASE64.fullmatch(data):
        return None
    try:
        head = base64.b64decode(data[:16], validate=True)
    except (binascii.Error, ValueError):
        return None
    return data if head.startswith(IMAGE_MAGIC[mime]) else None


def display_images(display: Iterable[Mapping[str, Any]]) -> list[str]:
    """The images of a tool's display bundles, as ``data:`` URLs (one per bundle)."""
    urls = []
    for bundle in display:
        for mime in IMAGE_MIMES:
            data = checked_image_data(mime, bundle.get(mime)) if mime in bundle else None
            if data is not None:
                urls.append(f"data:{mime};base64,{data}")
                break
    return urls


def image_message(images: list[tuple[str, str]]) -> dict[str, Any]:
    """A user message that shows a model the images of tool calls: (tool name, data URL)."""
    parts: list[dict[str, Any]] = [
        {"type": "text", "text": "Images the tool calls above displayed, in order:"}
    ]
    for name, url in images:
        parts.append({"type": "text", "text": f"from {name}:"})
        parts.append({"type": "image_url", "image_url": {"url": url}})
    return {"role": "user", "content": parts}
