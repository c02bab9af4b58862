"""Claim C6 on Figure 3's loss surfaces: the adversarial direction, with the natural model as control.

(i) For Free m=8 and 7-PGD the loss rises at least 5x as much along the adversarial direction as
along the Rademacher one; (ii) their adversarial rise is at most 1/3 of the natural model's (robust
training flattens the surface); (iii) no grid point inside the eps-ball has a loss above PGD-20's
at that image (the surface found no ascent that PGD missed).
"""
from __future__ import annotations

from typing import Any

from .evidence import Evidence, Undecided
from .verdicts import FAIL, INCONCLUSIVE, PASS, Verdict, combine, decided

C6_ADV_OVER_RAD = 5.0    # adversarial rise / Rademacher rise, robust models
C6_FLATTER = 1 / 3       # robust adversarial rise / natural adversarial rise, at most


def _rise(surface: dict[str, Any], image: dict[str, Any]) -> tuple[float, float]:
    """Loss increase from the image to the far positive end of each axis of the plane."""
    axis = surface["axis"]
    centre, end = axis.index(min(axis, key=abs)), len(axis) - 1
    losses = image["losses"]
    base = losses[centre][centre]
    return losses[end][centre] - base, losses[centre][end] - base


def _surfaces(ev: Evidence) -> dict[str, dict[str, Any]]:
    """The computed adversarial-plane surface of each figure3 model, by its method (natural, free, pgd)."""
    figure3 = ev.plan.targets.get("figure3")
    planned = [a for a in (figure3.analyses if figure3 else []) if a.options.get("plane") == "adv-rad"]
    found = {}
    for analysis in planned:
        model = ev.plan.models.get(analysis.model)
        role = (model.config if model else {}).get("method", analysis.label.lower())
        if role in ("natural", "free", "pgd") and role not in found and (ev.root / analysis.file).exists():
            found[role] = {"label": analysis.label, **ev.read(analysis.file, "loss-surface")}
    return found


def _need(surfaces: dict[str, dict[str, Any]], *roles: str) -> None:
    names = {"natural": "the natural model (the control)", "free": "Free m=8", "pgd": "7-PGD"}
    for role in roles:
        if role not in surfaces:
            raise Undecided(f"no adversarial-plane loss surface of {names[role]} has been computed")


def _c6_steeper(surfaces: dict[str, dict[str, Any]]) -> tuple[str, str]:
    """(i): adversarial rise >= 5x the Rademacher rise, for every image of each robust model."""
    _need(surfaces, "free", "pgd")
    ok, shown = True, []
    for role in ("free", "pgd"):
        for image in surfaces[role]["images"]:
            adv, rad = _rise(surfaces[role], image)
            ok &= adv > 0 and adv >= C6_ADV_OVER_RAD * rad
            shown.append(f"{surfaces[role]['label']} image {image['index']}: adversarial {adv:+.3f}, "
                         f"Rademacher {rad:+.3f}")
    return (PASS if ok else FAIL), f"(i) rise >= {C6_ADV_OVER_RAD:g}x Rademacher's: " + ", ".join(shown)


def _c6_flatter(surfaces: dict[str, dict[str, Any]]) -> tuple[str, str]:
    """(ii): each robust model's adversarial rise <= 1/3 of the natural model's, image by image."""
    _need(surfaces, "natural", "free", "pgd")
    natural = {im["index"]: _rise(surfaces["natural"], im)[0] for im in surfaces["natural"]["images"]}
    ok, shown = True, []
    for role in ("free", "pgd"):
        for image in surfaces[role]["images"]:
            if image["index"] not in natural:
                raise Undecided(f"the natural model's surface lacks image {image['index']}")
            ratio = _rise(surfaces[role], image)[0] / natural[image["index"]]
            ok &= natural[image["index"]] > 0 and ratio <= C6_FLATTER
            shown.append(f"{surfaces[role]['label']} image {image['index']} {ratio:.3f}")
    return (PASS if ok else FAIL), f"(ii) adversarial rise / natural's <= {C6_FLATTER:.3f}: " + ", ".join(shown)


def _c6_no_missed_ascent(surfaces: dict[str, dict[str, Any]]) -> tuple[str, str]:
    """(iii): inside the eps-ball no grid point's loss exceeds PGD-20's at that image."""
    _need(surfaces, "free", "pgd")
    ok, shown = True, []
    for role in ("natural", "free", "pgd"):
        for image in surfaces.get(role, {}).get("images", []):
            if "pgd20_loss" not in image:
                raise Undecided(f"the {surfaces[role]['label']} surface has no PGD-20 loss per image")
            ok &= image["ball_max_loss"] <= image["pgd20_loss"] * (1 + 1e-6)
            shown.append(f"{surfaces[role]['label']} image {image['index']}: grid max {image['ball_max_loss']:.3f}, "
                         f"PGD-20 {image['pgd20_loss']:.3f}")
    return (PASS if ok else FAIL), "(iii) no ascent PGD-20 missed inside the eps-ball: " + ", ".join(shown)


def c6_adversarial_direction(ev: Evidence) -> Verdict:
    statement = (f"along the adversarial direction the robust models' loss rises >= {C6_ADV_OVER_RAD:g}x as much "
                 f"as along a Rademacher one, at most {C6_FLATTER:.2f}x as much as the natural model's, and no "
                 "surface point inside the eps-ball beats PGD-20")
    try:
        surfaces = _surfaces(ev)
    except Undecided as why:
        return combine("C6", statement, [(INCONCLUSIVE, str(why))])
    parts = [decided(lambda check=check: check(surfaces)) for check in (_c6_steeper, _c6_flatter, _c6_no_missed_ascent)]
    return combine("C6", statement, parts)
