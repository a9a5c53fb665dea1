"""In-order scoreboard: the model's expected items against what the DUT produced."""

from collections import deque
from typing import Any

__all__ = ["Scoreboard", "describe_difference"]


def describe_difference(expected: Any, got: Any) -> str:
    """One line naming the differing fields (dicts) or both values."""
    if isinstance(expected, dict) and isinstance(got, dict):
        keys = list(expected) + [k for k in got if k not in expected]
        parts = [f"{k}: expected {expected.get(k)!r}, got {got.get(k)!r}"
                 for k in keys if expected.get(k) != got.get(k)]
        return "; ".join(parts)
    return f"expected {expected!r}, got {got!r}"


class Scoreboard:
    """Items are checked in order as they arrive; mismatches are collected (the first
    ``max_reported`` in detail) and raised by :meth:`result` so a bench sees all of them.

    ``expect(item, label)``: ``label`` (e.g. the stimulus index and type) goes into reports.
    """

    def __init__(self, name: str, *, max_reported: int = 10):
        self.name = name
        self.max_reported = max_reported
        self.expected: deque[tuple[Any, str]] = deque()
        self.matched = 0
        self.mismatched = 0
        self.unexpected = 0
        self.reports: list[str] = []

    def expect(self, item: Any, label: str = "") -> None:
        self.expected.append((item, label))

    def check(self, got: Any) -> bool:
        if not self.expected:
            self.unexpected += 1
            self._report(f"unexpected item {got!r}")
            return False
        want, label = self.expected.popleft()
        if want == got:
            self.matched += 1
            return True
        self.mismatched += 1
        index = self.matched + self.mismatched - 1
        self._report(f"item {index} {label}: {describe_difference(want, got)}")
        return False

    def _report(self, line: str) -> None:
        if len(self.reports) < self.max_reported:
            self.reports.append(line)

    @property
    def ok(self) -> bool:
        return not (self.mismatched or self.unexpected or self.expected)

    def result(self) -> None:
        """Raise AssertionError unless every expected item arrived, matching, and no other."""
        if self.ok:
            return
        lines = [f"{self.name}: {self.matched} matched, {self.mismatched} mismatched, "
                 f"{self.unexpected} unexpected, {len(self.expected)} never arrived"]
        lines += self.reports
        if self.expected:
            lines.append(f"first missing: {self.expected[0][1]} {self.expected[0][0]!r}")
        raise AssertionError("\n".join(lines))
