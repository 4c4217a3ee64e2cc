"""Characters a person cannot see, made visible: the card is where a person decides, so the
text they approve must be the text that runs.

Bidirectional controls (the "Trojan Source" attack: U+202A–U+202E, U+2066–U+2069,
U+200E/F, U+061C) reorder what a viewer shows; zero-width and other format characters
(category ``Cf``: U+200B–U+200D, U+2060, U+FEFF, tag characters, …) hide text. Each one is
shown as a marker such as ``⟨U+202E⟩`` and the card says that the arguments hold them.
Tabs and newlines are ordinary and stay.
"""

from __future__ import annotations

import re

_INVISIBLE = re.compile(
    "[\x00-\x08\x0b\x0c\x0e-\x1f\x7f-\x9f\xad\u0600-\u0605\u061c\u06dd\u070f"
    "\u0890\u0891\u08e2\u180e\u200b-\u200f\u2028-\u202e\u2060-\u2064\u2066-\u206f"
    "\ufeff\ufff9-\ufffb\U000110bd\U000110cd\U00013430-\U00013438"
    "\U0001bca0-\U0001bca3\U0001d173-\U0001d17a\U000e0001\U000e0020-\U000e007f]"
)
"""Every format character (Unicode category ``Cf``, bidi controls among them), the C0 and
C1 controls but tab and newlines, and the line and paragraph separators."""

WARNING = (
    "The arguments hold invisible or text-reordering characters, shown as ⟨U+…⟩: "
    "what runs is what you see here with those characters in it."
)
"""The card's line when :func:`reveal` changed anything."""


def reveal(text: str) -> tuple[str, bool]:
    """``text`` with each invisible or bidi control character replaced by ``⟨U+XXXX⟩``,
    and whether there was any."""
    if _INVISIBLE.search(text) is None:
        return text, False
    return _INVISIBLE.sub(lambda m: f"⟨U+{ord(m.group()):04X}⟩", text), True
