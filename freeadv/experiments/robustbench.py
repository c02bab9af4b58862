"""RobustBench's leaderboard entries for the models the tables compare with (CIFAR-10, Linf), and
the papers whose methods the training methods reproduce, as RobustBench's model_info files list them.

Reference numbers only (facts, not code): each entry as RobustBench lists it, with the architecture
of the model RobustBench evaluated, which a table names whenever it differs from the row's, and
the eps it was evaluated at: 8/255 for all but TRADES, which RobustBench evaluated at 0.031
(about 7.9/255), the eps of its release. The gap between an entry's reported (PGD) and AutoAttack
accuracy is how much PGD overstated that model's robustness; claim C5 shows ours beside this
paper's (46.19 - 41.47 = 4.72 points).
"""
from __future__ import annotations

from dataclasses import dataclass


DEFAULT_EPS = "8/255"   # the eps of this paper's CIFAR tables and of most RobustBench entries


@dataclass(frozen=True)
class Entry:
    name: str            # RobustBench model name
    paper: str
    architecture: str    # as RobustBench lists it
    clean: float         # percent
    reported: float      # the paper's own robust number (its PGD evaluation)
    autoattack: float    # RobustBench's AutoAttack accuracy
    eps: str = DEFAULT_EPS   # the Linf eps RobustBench evaluated it at, as its model_info writes it

    @property
    def gap(self) -> float:
        """Reported minus AutoAttack: how far PGD overstated the robustness (points)."""
        return self.reported - self.autoattack


ENTRIES: dict[str, Entry] = {e.name: e for e in (
    Entry("Shafahi2019Adversarial", "Adversarial Training for Free! (Shafahi et al. 2019)", "WRN-34-10",
          86.11, 46.19, 41.47),
    Entry("Wong2020Fast", "Fast is better than free (Wong et al. 2020)", "PreAct ResNet-18", 83.34, 46.06, 43.21),
    Entry("Zhang2019Theoretically", "TRADES (Zhang et al. 2019)", "WRN-34-10", 84.92, 56.43, 53.08, eps="0.031"),
)}

THIS_PAPER = "Shafahi2019Adversarial"


@dataclass(frozen=True)
class Paper:
    """A paper as RobustBench's model_info names it: ``name`` (the title), link, authors, venue."""
    title: str
    link: str
    authors: str
    venue: str


PAPERS: dict[str, Paper] = {   # by training method (freeadv.methods.METHODS)
    "free": Paper("Adversarial Training for Free!", "https://arxiv.org/abs/1904.12843",
                  "Ali Shafahi, Mahyar Najibi, Amin Ghiasi, Zheng Xu, John Dickerson, Christoph Studer, "
                  "Larry S. Davis, Gavin Taylor, Tom Goldstein", "NeurIPS 2019"),
    "pgd": Paper("Towards Deep Learning Models Resistant to Adversarial Attacks", "https://arxiv.org/abs/1706.06083",
                 "Aleksander Madry, Aleksandar Makelov, Ludwig Schmidt, Dimitris Tsipras, Adrian Vladu", "ICLR 2018"),
    "fgsm_rs": Paper("Fast is better than free: Revisiting adversarial training", "https://arxiv.org/abs/2001.03994",
                     "Eric Wong, Leslie Rice, J. Zico Kolter", "ICLR 2020"),
    "trades": Paper("Theoretically Principled Trade-off between Robustness and Accuracy",
                    "https://arxiv.org/abs/1901.08573", "Hongyang Zhang, Yaodong Yu, Jiantao Jiao, Eric P. Xing, "
                    "Laurent El Ghaoui, Michael I. Jordan", "ICML 2019"),
    "natural": Paper("Standardly trained model", "https://github.com/RobustBench/robustbench/", "", "N/A"),
}
