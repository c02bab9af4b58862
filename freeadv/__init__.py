"""freeadv: natural, Free-m, K-PGD and FGSM-RS adversarial training, PGD/CW attacks and the
reproduction of 'Adversarial Training for Free!' (Shafahi et al., NeurIPS 2019)."""
__version__ = "0.1.0"
