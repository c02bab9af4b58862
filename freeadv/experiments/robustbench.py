"""RobustBench's leaderboard entries for the models the tables compare with (CIFAR-10, Linf, eps 8/255).

Reference numbers only (facts, not code): each entry as RobustBench lists it, with the architecture
of the model RobustBench evaluated, which a table names whenever it differs from the row's. The
gap between an entry's reported (PGD) and AutoAttack accuracy is how much PGD overstated that
model's robustness; claim C5 shows ours beside this paper's (46.19 - 41.47 = 4.72 points).
"""
from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Entry:
    name: str            # RobustBench model name
    paper: str
    architecture: str    # as RobustBench lists it
    clean: float         # percent
    reported: float      # the paper's own robust number (its PGD evaluation)
    autoattack: float    # RobustBench's AutoAttack accuracy

    @property
    def gap(self) -> float:
        """Reported minus AutoAttack: how far PGD overstated the robustness (points)."""
        return self.reported - self.autoattack


ENTRIES: dict[str, Entry] = {e.name: e for e in (
    Entry("Shafahi2019Adversarial", "Adversarial Training for Free! (Shafahi et al. 2019)", "WRN-34-10",
          86.11, 46.19, 41.47),
    Entry("Wong2020Fast", "Fast is better than free (Wong et al. 2020)", "PreAct ResNet-18", 83.34, 46.06, 43.21),
    Entry("Zhang2019Theoretically", "TRADES (Zhang et al. 2019)", "WRN-34-10", 84.92, 56.43, 53.08),
)}

THIS_PAPER = "Shafahi2019Adversarial"
