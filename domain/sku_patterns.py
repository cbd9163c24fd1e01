"""SKU patterns of a rule (`final_sale_skus`): exact SKUs and fnmatch-style globs (`*`, `?`, `[seq]`,
`[!seq]`), compared without case.

Without case because Magento keeps one product per SKU whatever its case (the catalogue's SKU column is
unique under a case-insensitive collation), and feeds are not consistent about it: a rule written
`CLEAR-*` must catch `clear-42` too, or a final-sale item slips through on a spelling.

Compiled once per rules object (rules are read at start), so that matching a line costs a dictionary
lookup and a few regular expression matches, never a compile.
"""

from __future__ import annotations

import fnmatch
import re
from collections.abc import Iterable

_GLOB = re.compile(r"[*?\[]")


class SkuPatterns:
    def __init__(self, patterns: Iterable[str]) -> None:
        self._exact: dict[str, str] = {}
        self._globs: list[tuple[re.Pattern[str], str]] = []
        for pattern in patterns:
            folded = pattern.casefold()
            if _GLOB.search(pattern) is None:
                self._exact.setdefault(folded, pattern)
            else:
                self._globs.append((re.compile(fnmatch.translate(folded)), pattern))

    def __bool__(self) -> bool:
        return bool(self._exact or self._globs)

    def match(self, sku: str | None) -> str | None:
        """The pattern, as written in the rules, that names this SKU; None when none does. An exact SKU
        wins over a glob; among globs the first listed wins, so the answer is the same on every run."""
        if sku is None or not self:
            return None
        folded = sku.casefold()
        exact = self._exact.get(folded)
        if exact is not None:
            return exact
        for compiled, pattern in self._globs:
            if compiled.match(folded) is not None:
                return pattern
        return None
