"""How large a bitmap a DOT source asks Graphviz for, read from its attributes before `dot` runs.

`digraph { graph [size="20,20!", ratio=fill, dpi=2000]; a -> b }` is 60 bytes and asks for a
40,000 x 40,000 pixel PNG: `dot` took 4.2 GB and 52 s to draw it. The attributes that set a
bitmap's size are read here and the pixels they ask for compared with a budget, so such a
job fails at once, saying why. The reading is conservative:

- `dpi` and `resolution` (pixels per inch; the larger wins), `size` ("W,H" in inches, "!"
  to scale up as well as down), `viewport` ("W,H,…" in points), `pad` and `margin`
  (inches, on every side) are taken wherever they appear (the root graph, a subgraph, an
  `attr=value` statement), and the largest value of each counts; a value whose number
  cannot be read is ignored, as Graphviz ignores it.
- With `size` set, the drawing is scaled to fit in it (`ratio` may stretch one side, never
  past `size`; `ratio=fill` makes it exactly `size`), so `size` x dpi bounds the bitmap.
- Without `size` or `viewport` the drawing keeps its natural size, which only the layout
  knows: no bound is read, and the child's memory limit (SKIPLOCK_CHILD_MEMORY_MB) is what
  stops a drawing too large for it (cairo's allocation fails and `dot` exits at once).
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping
from dataclasses import dataclass

POINTS_PER_INCH = 72.0
DEFAULT_DPI = 96.0  # Graphviz's bitmap default
DEFAULT_PAD_INCHES = 4 / 72  # 4 points on each side
# Cairo draws at most this many pixels a side; Graphviz scales a larger drawing down.
MAX_SIDE = 32767

_TOKEN = re.compile(
    r"""
      (?P<space>\s+|//[^\n]*|/\*.*?(?:\*/|\Z)|^\#[^\n]*)      # blanks and comments
    | "(?P<string>(?:[^"\\]|\\.)*)(?:"|\Z)                   # a quoted string
    | (?P<html><)                                            # an HTML string: <...>
    | (?P<word>[A-Za-z_\x80-\U0010ffff][A-Za-z_0-9\x80-\U0010ffff]*
        |-?(?:\.[0-9]+|[0-9]+(?:\.[0-9]*)?))                  # an ID or a numeral
    | (?P<punct>->|--|.)                                      # anything else, one char
    """,
    re.VERBOSE | re.DOTALL | re.MULTILINE,
)
_NUMBER = re.compile(r"\s*[-+]?(?:[0-9]+\.?[0-9]*|\.[0-9]+)(?:[eE][-+]?[0-9]+)?")
SIZE_ATTRIBUTES = frozenset({"dpi", "resolution", "size", "viewport", "pad", "margin"})


@dataclass(frozen=True)
class Bitmap:
    """The largest bitmap the attributes allow, and the attribute values that say so."""

    width: float
    height: float
    because: str  # e.g. size="20,20!" at dpi 2000

    @property
    def pixels(self) -> float:
        return min(self.width, MAX_SIDE) * min(self.height, MAX_SIDE)


def attributes(source: str) -> dict[str, list[str]]:
    """Every value given to a size attribute anywhere in the source, by name."""
    found: dict[str, list[str]] = {}
    tokens = _values(source)
    for index in range(len(tokens) - 2):
        name, equals, value = tokens[index : index + 3]
        if name in SIZE_ATTRIBUTES and equals == "=" and value is not None:
            found.setdefault(name, []).append(value)
    return found


def bitmap_bound(source: str, defaults: Mapping[str, str] | None = None) -> Bitmap | None:
    """The largest bitmap the source's attributes ask for (the DOT's own values win over
    `defaults`, the -G flags); None when they set no bound (see the module doc)."""
    given = attributes(source)
    for name, value in (defaults or {}).items():
        given.setdefault(name, [value])
    dpi = max(
        (n for v in given.get("dpi", []) + given.get("resolution", []) if (n := _number(v))),
        default=DEFAULT_DPI,
    )
    pad = max((_pair(v)[0] for v in given.get("pad", [])), default=DEFAULT_PAD_INCHES)
    pad += max((_pair(v)[0] for v in given.get("margin", [])), default=0.0)
    boxes: list[tuple[float, float, str]] = []
    for value in given.get("size", []):
        w, h = _pair(value)
        if w > 0 and h > 0:
            boxes.append((w, h, f"size={value!r}"))
    for value in given.get("viewport", []):
        w, h = _pair(value)
        if w > 0 and h > 0:
            boxes.append((w / POINTS_PER_INCH, h / POINTS_PER_INCH, f"viewport={value!r}"))
    if not boxes:
        return None
    w, h, why = max(boxes, key=lambda box: box[0] * box[1])
    side = 2 * max(pad, 0.0)
    return Bitmap((w + side) * dpi, (h + side) * dpi, f"{why} at dpi {dpi:g}")


def _values(source: str) -> list[str | None]:
    """The source as tokens: a word or a string as its text ("a" + "b" joined as "ab"),
    punctuation as itself, an HTML string as None."""
    tokens: list[tuple[str, str | None]] = []
    position = 0
    while position < len(source):
        match = _TOKEN.match(source, position)
        if match is None:  # cannot happen: `.` matches any character
            break
        position = match.end()
        kind = str(match.lastgroup)  # every alternative of _TOKEN is a named group
        if kind == "html":
            position = _skip_html(source, position)
            tokens.append((kind, None))
        elif kind == "string":
            text = match.group(kind).replace("\\\n", "")
            if len(tokens) >= 2 and tokens[-1] == ("punct", "+") and tokens[-2][0] == "string":
                tokens.pop()
                text = (tokens.pop()[1] or "") + text
            tokens.append((kind, text))
        elif kind != "space":
            tokens.append((kind, match.group(kind)))
    return [text for _, text in tokens]


def _skip_html(source: str, position: int) -> int:
    depth = 1
    while position < len(source) and depth:
        depth += {"<": 1, ">": -1}.get(source[position], 0)
        position += 1
    return position


def _number(text: str) -> float | None:
    """The number a value starts with, as Graphviz reads it (strtod), else None."""
    match = _NUMBER.match(text)
    if match is None:
        return None
    value = float(match.group())  # _NUMBER matches only what float() reads (never nan)
    return value if math.isfinite(value) else None  # 1e999 is inf: no bound can be read


def _pair(text: str) -> tuple[float, float]:
    """ "W,H" (or "W" for both) as numbers; 0 where none can be read."""
    first, _, rest = text.partition(",")
    w = _number(first) or 0.0
    h = _number(rest) if rest else w
    return w, h or 0.0
