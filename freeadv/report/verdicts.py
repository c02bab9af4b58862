"""A claim's verdict: PASS, FAIL or INCONCLUSIVE, from the parts of its test.

A claim PASSes when its interval lies on the claim's side of the threshold, FAILs when it lies
wholly on the other side, and is INCONCLUSIVE when it straddles the threshold or its inputs are
not there: never PASS for want of evidence.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable

from .evidence import Undecided

PASS, FAIL, INCONCLUSIVE = "PASS", "FAIL", "INCONCLUSIVE"
CONFIDENCE = 0.90        # two-sided; its lower bound is a one-sided 95% test (non-inferiority, equivalence)


@dataclass
class Verdict:
    claim: str          # C1 ... C6
    statement: str      # what the paper says, as a checkable sentence with its threshold
    status: str         # PASS | FAIL | INCONCLUSIVE
    evidence: str       # the numbers and intervals behind the status
    parts: list[dict[str, str]] = field(default_factory=list)   # each sub-test's status and text

    @property
    def passed(self) -> bool:
        return self.status == PASS

    def line(self) -> str:
        return f"{self.claim} {self.status}  {self.statement}\n     {self.evidence}"


def combine(claim: str, statement: str, parts: list[tuple[str, str]], note: str = "") -> Verdict:
    """FAIL if any decided part fails, else INCONCLUSIVE if any part could not be decided, else PASS."""
    statuses = {status for status, _ in parts}
    status = FAIL if FAIL in statuses else INCONCLUSIVE if (INCONCLUSIVE in statuses or not parts) else PASS
    undecided = [t for s, t in parts if s == INCONCLUSIVE]
    shown = [f"{t} [{s}]" for s, t in parts if s != INCONCLUSIVE or len(undecided) <= 2]
    if len(undecided) > 2:   # one reason stands for the rest (all are in ``parts``)
        shown.append(f"{len(undecided)} parts undecided, e.g. {undecided[0]} [{INCONCLUSIVE}]")
    text = "; ".join(shown) + (f". {note}" if note else "")
    return Verdict(claim, statement, status, text, [{"status": s, "text": t} for s, t in parts])


def verdict_of(passes: bool, fails: bool) -> str:
    """PASS when the interval lies on the claim's side of its threshold, FAIL when it lies on the
    other side, INCONCLUSIVE when it straddles the threshold: too few images or seeds to decide."""
    return PASS if passes else FAIL if fails else INCONCLUSIVE


STRADDLES = " (the interval straddles the threshold: more images or seeds would decide)"


def judged(status: str, text: str) -> tuple[str, str]:
    return status, text + (STRADDLES if status == INCONCLUSIVE else "")


def decided(part: Callable[[], tuple[str, str]]) -> tuple[str, str]:
    """Run one sub-test; what it cannot decide becomes INCONCLUSIVE with the reason."""
    try:
        return part()
    except Undecided as why:
        return INCONCLUSIVE, str(why)
