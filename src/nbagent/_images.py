"""Images in tool displays: checked PNG/JPEG data, and the forms of a request that show
them to a model that can see, or say in text what it does not see.

``--images auto`` (the default) shows them to a model that litellm says can see; ``on``
always, ``off`` never. A request whose images are not shown says so in the results of the
calls that displayed them (``[image: 640×480 PNG, not shown to the model]``). Which form a
live request took is part of its fingerprint; a replay tries each form (and the form of
recordings made before the notes existed), so it never needs to ask litellm.

A display value is trusted only when it decodes to a PNG or JPEG (magic bytes checked);
anything else is not an image, whatever its MIME type says.
"""

from __future__ import annotations

import base64
import binascii
import re
import struct
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any, Literal

ImageMode = Literal["auto", "on", "off"]
"""``auto``: show tool images to a model that can see; ``on``: always; ``off``: never."""

IMAGE_MODES: tuple[ImageMode, ...] = ("auto", "on", "off")

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


@dataclass(frozen=True)
class ToolImages:
    """The images a request may show the model: by the tool call that displayed them,
    (tool name, ``data:`` URL) each; and whether to show them."""

    by_call: dict[str, list[tuple[str, str]]]
    mode: ImageMode


def image_note(url: str) -> str:
    """``[image: 640×480 PNG, not shown to the model]`` for a ``data:`` URL."""
    head, _, data = url.partition(",")
    kind = "JPEG" if "jpeg" in head else "PNG"
    size = _dimensions(data, kind)
    about = f"{size[0]}×{size[1]} {kind}" if size else kind
    return f"[image: {about}, not shown to the model]"


def _dimensions(data: str, kind: str) -> tuple[int, int] | None:
    try:
        raw = base64.b64decode(data[:65_536] + "=" * (-len(data[:65_536]) % 4))
    except (binascii.Error, ValueError):
        return None
    if kind == "PNG":
        return struct.unpack(">II", raw[16:24]) if len(raw) >= 24 else None
    i = 2
    while i + 9 < len(raw) and raw[i] == 0xFF:
        marker, length = raw[i + 1], struct.unpack(">H", raw[i + 2 : i + 4])[0]
        if marker in (0xC0, 0xC1, 0xC2):  # start of frame: height, width
            height, width = struct.unpack(">HH", raw[i + 5 : i + 9])
            return width, height
        i += 2 + length
    return None


def shown(messages: list[dict[str, Any]], images: ToolImages) -> list[dict[str, Any]]:
    """``messages`` with the images right after the results of the calls that displayed
    them, as a user message of image parts."""
    out: list[dict[str, Any]] = []
    block: list[tuple[str, str]] = []
    for message in messages:
        call_id = message.get("tool_call_id") if message.get("role") == "tool" else None
        if call_id is None and block:
            out.append(image_message(block))
            block = []
        out.append(message)
        if isinstance(call_id, str):
            block.extend(images.by_call.get(call_id, ()))
    if block:
        out.append(image_message(block))
    return out


def noted(messages: list[dict[str, Any]], images: ToolImages) -> list[dict[str, Any]]:
    """``messages`` with each result of a call that displayed images saying so in text."""
    out = []
    for message in messages:
        found = images.by_call.get(str(message.get("tool_call_id")))
        if message.get("role") == "tool" and found and isinstance(message.get("content"), str):
            notes = "\n".join(image_note(url) for _, url in found)
            message = {**message, "content": f"{message['content']}\n{notes}"}
        out.append(message)
    return out


def replay_forms(
    messages: list[dict[str, Any]], images: ToolImages | None
) -> list[list[dict[str, Any]]]:
    """The forms a recording of this request may have, in the order a replay tries them:
    images shown, noted, and as recorded before notes existed (text only)."""
    if images is None or not images.by_call:
        return [messages]
    if images.mode == "on":
        return [shown(messages, images)]
    forms = [noted(messages, images), messages]
    return forms if images.mode == "off" else [shown(messages, images), *forms]


def live_form(
    messages: list[dict[str, Any]], images: ToolImages | None, sees: bool
) -> list[dict[str, Any]]:
    """The form a live request takes: images shown (``on``, or ``auto`` and the model can
    see), else noted."""
    if images is None or not images.by_call:
        return messages
    if images.mode == "on" or (images.mode == "auto" and sees):
        return shown(messages, images)
    return noted(messages, images)
