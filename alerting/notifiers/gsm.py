"""GSM 03.38 text: what fits a 160-character SMS and what forces UCS-2 (70 characters).

An SMS body is sent in the GSM-7 default alphabet when every character is in it, else in
UCS-2, which cuts a segment from 160 to 70 characters. One ``á`` in a Spanish alert
(``cámara``) is enough to more than double the segments a long alert costs, and some
carriers in the region mangle UCS-2. The GSM-7 set already holds much of what Spanish and
Portuguese need (``ñ Ñ ü Ü é É ¿ ¡ à Ç``); :func:`to_gsm7` keeps those and transliterates
the rest (``á`` to ``a``, ``ã`` to ``a``, ``ç`` to ``c``, curly quotes to straight ones).

No provider library here: the templates, the console notifier and the fake Twilio server use
these functions too.
"""

from __future__ import annotations

import unicodedata
from typing import Final

# The GSM 03.38 default alphabet, in code-point order 0x00-0x7F. 0x1B is the escape to the
# extension table, not a character, so it is left out of the text alphabet below.
_BASIC_TABLE: Final = (
    "@£$¥èéùìòÇ\nØø\rÅåΔ_ΦΓΛΩΠΨΣΘΞ\x1bÆæßÉ !\"#¤%&'()*+,-./0123456789:;<=>?"
    "¡ABCDEFGHIJKLMNOPQRSTUVWXYZÄÖÑÜ§¿abcdefghijklmnopqrstuvwxyzäöñüà"
)
assert len(_BASIC_TABLE) == 128
GSM7_BASIC: Final[frozenset[str]] = frozenset(_BASIC_TABLE) - {"\x1b"}
# The extension table: each of these costs two septets (escape + character).
GSM7_EXTENSION: Final[frozenset[str]] = frozenset("\f^{}\\[~]|€")
GSM7: Final[frozenset[str]] = GSM7_BASIC | GSM7_EXTENSION

# Segment sizes. A concatenated message gives up 7 septets (GSM-7) or 3 UCS-2 units per part
# to the user data header that numbers the parts.
GSM7_SINGLE: Final = 160
GSM7_PART: Final = 153
UCS2_SINGLE: Final = 70
UCS2_PART: Final = 67

# Characters Unicode decomposition does not reduce to GSM-7, written out. Everything maps to
# GSM-7 characters only (a test checks it), which is what makes to_gsm7 idempotent.
TRANSLITERATIONS: Final[dict[str, str]] = {
    # Punctuation word processors and phones put in for us.
    "\u2018": "'",  # left single quote
    "\u2019": "'",  # right single quote / apostrophe
    "\u201a": "'",
    "\u201b": "'",
    "\u2032": "'",  # prime
    "`": "'",  # the one printable ASCII character GSM-7 lacks
    "\u00b4": "'",  # acute accent on its own
    "\u201c": '"',
    "\u201d": '"',
    "\u201e": '"',
    "\u201f": '"',
    "\u2033": '"',
    "\u00ab": '"',  # « (Spanish and Portuguese quotes)
    "\u00bb": '"',  # »
    "\u2039": "'",
    "\u203a": "'",
    "\u2010": "-",
    "\u2011": "-",
    "\u2012": "-",
    "\u2013": "-",  # en dash
    "\u2014": "-",  # em dash
    "\u2015": "-",
    "\u2212": "-",  # minus sign: "-18 C" must stay readable as a negative temperature
    "\u2022": "*",  # bullet
    "\u00b7": ".",
    "\u2044": "/",  # fraction slash (what NFKD makes of ½)
    "\t": " ",
    # Temperatures: "9,5 °C" becomes "9,5 C"; an "o" or a "?" would read as part of the number.
    "\u00b0": "",
    "\u00ba": "o",  # masculine ordinal: 1º
    "\u00aa": "a",  # feminine ordinal: 1ª
    # Letters with no decomposition.
    "\u0153": "oe",
    "\u0152": "OE",
    "\u0111": "d",
    "\u0110": "D",
    "\u0142": "l",
    "\u0141": "L",
    "\u00fe": "th",
    "\u00de": "Th",
    "\u00f0": "d",
    "\u00d0": "D",
    "\u0131": "i",  # dotless i
}

# What stands in for a character with no GSM-7 rendering (emoji, CJK, most symbols).
REPLACEMENT: Final = "?"


def is_gsm7(text: str) -> bool:
    """Whether ``text`` can be sent in the GSM-7 alphabet (basic or extension table).

    Args:
        text: The message body.

    Returns:
        True when no character forces UCS-2.
    """
    return all(c in GSM7 for c in text)


def _transliterate(char: str) -> str:
    if char in GSM7:
        return char
    if char in TRANSLITERATIONS:
        return TRANSLITERATIONS[char]
    out = []
    decomposed = unicodedata.normalize("NFKD", char)
    for part in decomposed:
        if part in GSM7:
            out.append(part)
        elif part in TRANSLITERATIONS:
            out.append(TRANSLITERATIONS[part])
        elif unicodedata.combining(part):
            continue  # the accent of a decomposed letter: á is a + U+0301
        elif unicodedata.category(part) in ("Cc", "Cf"):
            continue  # invisible: controls, zero-width joiners, byte-order marks
        else:
            out.append(REPLACEMENT)
    return "".join(out)


def to_gsm7(text: str) -> str:
    """Rewrite ``text`` in the GSM-7 alphabet, keeping every character that already is.

    ``Atención: la cámara está a 9,5 °C`` becomes ``Atencion: la camara esta a 9,5 C``;
    ``¿Niño?`` stays as it is (``¿``, ``ñ`` are GSM-7). ``ç`` becomes ``c`` rather than the
    alphabet's ``Ç``: ``acao`` reads better than ``aÇao``. Characters with no rendering become
    ``?``. The result always satisfies :func:`is_gsm7`, and applying the function twice
    changes nothing.

    Args:
        text: Any text.

    Returns:
        The GSM-7 text.
    """
    if is_gsm7(text):
        return text
    return "".join(_transliterate(c) for c in text)


def _pack(costs: list[int], single: int, part: int) -> int:
    if sum(costs) <= single:
        return 1
    parts, used = 1, 0
    for cost in costs:
        # An escape pair (GSM-7) or a surrogate pair (UCS-2) is never split across parts.
        if used + cost > part:
            parts += 1
            used = 0
        used += cost
    return parts


def segments(text: str) -> int:
    """How many SMS segments ``text`` costs.

    GSM-7: 160 septets in one segment, 153 per part once concatenated; extension characters
    (``€ [ ] { } ^ ~ | \\``) count two. UCS-2: 70 units, 67 per part; characters outside the
    Basic Multilingual Plane (emoji) count two. An empty body is one segment.

    Args:
        text: The message body, as sent.

    Returns:
        The number of segments, at least 1.
    """
    if is_gsm7(text):
        return _pack([2 if c in GSM7_EXTENSION else 1 for c in text], GSM7_SINGLE, GSM7_PART)
    return _pack([len(c.encode("utf-16-le")) // 2 for c in text], UCS2_SINGLE, UCS2_PART)
