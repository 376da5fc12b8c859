"""Fixed-width text tables, the one layout every console table of ktfleet uses.

Columns are two spaces apart; a width of 0 leaves a cell as long as it is (the
last, free-text column).  ``table`` sizes the columns to their cells;
``line`` and ``rule`` build tables whose widths the caller fixes.
"""

from __future__ import annotations

from collections.abc import Sequence

GAP = "  "


def line(cells: Sequence[object], widths: Sequence[int], align: str = "") -> str:
    """One row: each cell padded to its width, '<' (left, the default) or '>' per column in ``align``."""
    out = []
    for i, (cell, width) in enumerate(zip(cells, widths, strict=True)):
        side = align[i] if i < len(align) else "<"
        out.append(f"{cell!s:{side}{width}}")
    return GAP.join(out)


def rule(widths: Sequence[int]) -> str:
    """The dashes under a header: '-------  --------'."""
    return GAP.join("-" * width for width in widths)


def table(rows: Sequence[Sequence[object]], align: str = "") -> list[str]:
    """The first row as a header, a rule, then the rest; columns as wide as their widest cell,
    trailing white space trimmed from every row (not the rule)."""
    texts = [[str(cell) for cell in r] for r in rows]
    widths = [max(len(r[i]) for r in texts) for i in range(len(texts[0]))]
    lines = [line(r, widths, align).rstrip() for r in texts]
    lines.insert(1, rule(widths))
    return lines
