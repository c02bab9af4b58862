"""Interval statistics for accuracies measured on a fixed set of test images.

Every model is attacked on the same test images, and an evaluation records, per image, whether
the attack left it correctly classified. Claims are decided on intervals computed from those
per-image bitmaps: an accuracy gets a Wilson interval (or a t interval over training seeds), and
a difference of two models gets a paired interval, since both saw the same images.

Accuracies, differences and interval bounds are in percentage points (0..100). The module uses
numpy and scipy only, so the claims can be checked without torch.
"""
from __future__ import annotations

import base64
import binascii
import math
import operator
from dataclasses import dataclass, replace
from typing import Sequence

import numpy as np

PERCENT = 100.0


@dataclass(frozen=True)
class Interval:
    """A point estimate with a two-sided interval, in percentage points."""
    estimate: float
    low: float
    high: float
    confidence: float   # e.g. 0.90
    method: str         # how the interval was computed, for the reader of a claim

    def text(self, signed: bool = True) -> str:
        """E.g. ``+1.20 [-0.85, +3.10] (90%, Newcombe paired)``; ``signed=False`` for accuracies."""
        f = "{:+.2f}" if signed else "{:.2f}"
        level = f"{round(PERCENT * self.confidence, 6):g}%"
        return (f"{f.format(self.estimate)} [{f.format(self.low)}, {f.format(self.high)}] "
                f"({level}, {self.method})")


# -- per-image bitmaps ------------------------------------------------------------------------

def pack_flags(flags) -> str:
    """A 1-D bool array -> base64 text of its packed bits (numpy's big-endian bit order).

    Eight images per byte keep a 10,000-image bitmap at 1,250 bytes (1,668 base64 characters),
    small enough to sit in every evaluation JSON next to the accuracy it explains.
    """
    return base64.b64encode(np.packbits(_flags(flags, "flags"))).decode("ascii")


def unpack_flags(text: str, n: int) -> np.ndarray:
    """The inverse of :func:`pack_flags` for ``n`` images; ValueError on any inconsistency.

    The length and the zero padding bits are checked so that a bitmap stored for another image
    count (or a damaged one) is refused instead of silently read as a different result.
    """
    n = _count(n, "n", minimum=0)
    if not isinstance(text, str):
        raise ValueError(f"packed flags must be a str, got {type(text).__name__}")
    try:
        raw = base64.b64decode(text.encode("ascii"), validate=True)
    except (UnicodeEncodeError, binascii.Error) as err:
        raise ValueError(f"packed flags are not valid base64: {err}") from None
    if len(raw) != math.ceil(n / 8):
        raise ValueError(f"packed flags hold {len(raw)} bytes; {n} images need {math.ceil(n / 8)}")
    bits = np.unpackbits(np.frombuffer(raw, dtype=np.uint8))
    if bits[n:].any():
        raise ValueError(f"packed flags have nonzero padding bits past image {n}")
    return bits[:n].astype(bool)


def accuracy(flags) -> float:
    """The percentage of True flags."""
    arr = _flags(flags, "flags")
    if arr.size == 0:
        raise ValueError("flags are empty: accuracy needs at least one image")
    return PERCENT * float(arr.mean())


# -- one accuracy ------------------------------------------------------------------------------

def wilson(correct: int, n: int, confidence: float = 0.95) -> tuple[float, float]:
    """Wilson score interval for ``correct`` out of ``n``, in percent.

    Robust accuracies sit near 0 (natural models under attack) and clean ones near 100, where the
    Wald interval p +- z*sqrt(p(1-p)/n) collapses: 0/1000 reads "0.00 +- 0.00". Wilson inverts
    the score test instead, so its bounds stay inside [0, 100] and are never degenerate: 0/1000
    at 95% gives [0, 0.38].
    """
    n = _count(n, "n", minimum=1)
    correct = _count(correct, "correct", minimum=0)
    if correct > n:
        raise ValueError(f"correct must be at most n={n}, got {correct}")
    z = float(_scipy_stats().norm.ppf(0.5 + _confidence(confidence) / 2))
    p, z2 = correct / n, z * z
    centre = (p + z2 / (2 * n)) / (1 + z2 / n)
    half = z / (1 + z2 / n) * math.sqrt(p * (1 - p) / n + z2 / (4 * n * n))
    return PERCENT * max(0.0, centre - half), PERCENT * min(1.0, centre + half)


def mean_interval(runs: Sequence, confidence: float = 0.95) -> Interval:
    """One model's accuracy over training seeds (``runs``: one bitmap per seed, same images).

    Seeds are few, so the seed term is a t term with k-1 degrees of freedom; the images are many
    and shared by all seeds, so they add the variance of the per-image seed-averaged correctness
    over n. The two are combined with Welch-Satterthwaite degrees of freedom. A single run, or
    identical runs (no seed variation observed), get the Wilson interval of that run, which stays
    sensible at 0 and 100 where a t interval would be degenerate.
    """
    confidence = _confidence(confidence)
    r = _runs(runs, "runs")
    k, n = r.shape
    if k == 1 or not (r != r[0]).any():
        low, high = wilson(int(r[0].sum()), n, confidence)
        return Interval(accuracy(r[0]), low, high, confidence, "Wilson")
    if n < 2:
        raise ValueError("runs need at least 2 images for a seed interval")
    acc = PERCENT * r.mean(axis=1)
    per_image = PERCENT * r.mean(axis=0)
    terms = [(per_image.var(ddof=1) / n, n - 1), (acc.var(ddof=1) / k, k - 1)]
    iv = _t_interval(float(acc.mean()), terms, confidence, f"t, {k} seeds")
    return replace(iv, low=max(0.0, iv.low), high=min(PERCENT, iv.high))


# -- differences on the same images ------------------------------------------------------------

def paired_difference(a, b, confidence: float = 0.90) -> Interval:
    """acc(a) - acc(b) of two models on the same images, with Newcombe's paired score interval.

    Why paired: two 1,000-image accuracies near 50% each carry a standard error of ~1.6 points,
    so an unpaired difference has ~2.2; but on the same images only the discordant images (one
    model right, the other wrong) move the difference, and related models disagree on few
    images, so the paired interval is often several times narrower.

    Why this interval: the difference is (n10 - n01)/n with n10 = #(a right, b wrong) and n01 =
    #(a wrong, b right). An interval conditional on the discordant count d = n10 + n01 (McNemar's
    conditioning) treats d as fixed, so it can never reach past +-d/n: with d = 0 it is [0, 0],
    and with the discordance all one way it is far too narrow. Newcombe's hybrid score interval
    (Stat. Med. 17:2635, 1998, method 10) is unconditional: it combines the Wilson intervals of the
    two accuracies with their correlation phi over the images, and stays sensible at d = 0 and at
    accuracies near 0 or 100. phi uses Newcombe's correction (a positive n11*n00 - n10*n01 is
    reduced by n/2), which can only widen the interval. statsmodels has this interval only in
    its development branch (confint_proportions_paired), so it is written here on scipy.
    """
    confidence = _confidence(confidence)
    a, b = _flags(a, "a"), _flags(b, "b")
    if a.size != b.size or a.size == 0:
        raise ValueError(f"a and b must be non-empty and the same length, got {a.size} and {b.size}")
    counts = (int((a & b).sum()), int((a & ~b).sum()), int((~a & b).sum()), int((~a & ~b).sum()))
    return paired_difference_counts(*counts, confidence=confidence)


def paired_difference_counts(n11: int, n10: int, n01: int, n00: int, confidence: float = 0.90) -> Interval:
    """:func:`paired_difference` from the four cells of the paired table (n11: both right)."""
    confidence = _confidence(confidence)
    cells = [_count(v, name, minimum=0) for v, name in ((n11, "n11"), (n10, "n10"), (n01, "n01"), (n00, "n00"))]
    n11, n10, n01, n00 = cells
    n = _count(sum(cells), "n11 + n10 + n01 + n00", minimum=1)
    p1, p2 = (n11 + n10) / n, (n11 + n01) / n
    l1, u1 = (v / PERCENT for v in wilson(n11 + n10, n, confidence))
    l2, u2 = (v / PERCENT for v in wilson(n11 + n01, n, confidence))
    phi = _newcombe_phi(n11, n10, n01, n00)
    low = p1 - p2 - math.sqrt(max(0.0, (p1 - l1) ** 2 - 2 * phi * (p1 - l1) * (u2 - p2) + (u2 - p2) ** 2))
    high = p1 - p2 + math.sqrt(max(0.0, (p2 - l2) ** 2 - 2 * phi * (p2 - l2) * (u1 - p1) + (u1 - p1) ** 2))
    return Interval(PERCENT * (n10 - n01) / n, PERCENT * max(-1.0, low), PERCENT * min(1.0, high),
                    confidence, "Newcombe paired")


def _newcombe_phi(n11: int, n10: int, n01: int, n00: int) -> float:
    """The correlation of the two models' correctness over the images, as Newcombe corrects it:
    0 when a margin is empty (a model is right everywhere or nowhere)."""
    n = n11 + n10 + n01 + n00
    margins = (n11 + n10) * (n01 + n00) * (n11 + n01) * (n10 + n00)
    if margins == 0:
        return 0.0
    cross = n11 * n00 - n10 * n01
    cross = max(0.0, cross - n / 2) if cross > 0 else cross
    return cross / math.sqrt(margins)


def seeded_difference(a_runs: Sequence, b_runs: Sequence, confidence: float = 0.90) -> Interval:
    """Mean accuracy of a minus that of b over training seeds, all runs on the same images.

    The variance has an image term, var over images of d_i = mean_s a_si - mean_s b_si over n
    (paired: the images are shared, so only per-image disagreement counts), and a seed term,
    s_a^2/k_a + s_b^2/k_b, where s^2 is the sample variance over seeds of a model's accuracy on
    the fixed images, i.e. training-seed variation alone. Seeds are few (often 3), so the interval
    uses a t quantile with Welch-Satterthwaite degrees of freedom; a bootstrap over 3 seeds would
    see at most 10 distinct resamples and come out too narrow.

    A side with one seed borrows the other side's seed variance (and its degrees of freedom),
    assuming both training procedures vary alike across seeds; ``method`` says so. With one seed
    each, seed variation cannot be estimated and the paired interval of the two runs is
    returned, its method marked "1 seed each: image term only".
    """
    confidence = _confidence(confidence)
    a, b = _runs(a_runs, "a_runs"), _runs(b_runs, "b_runs")
    (ka, n), (kb, nb) = a.shape, b.shape
    if n != nb:
        raise ValueError(f"a_runs have {n} images and b_runs {nb}; both must use the same images")
    if ka == 1 and kb == 1:
        iv = paired_difference(a[0], b[0], confidence)
        return replace(iv, method=f"{iv.method}; 1 seed each: image term only")
    if n < 2:
        raise ValueError("runs need at least 2 images for a seed interval")
    acc_a, acc_b = PERCENT * a.mean(axis=1), PERCENT * b.mean(axis=1)
    d = PERCENT * (a.mean(axis=0) - b.mean(axis=0))
    var_a, df_a = (float(acc_a.var(ddof=1)), ka - 1) if ka > 1 else (None, 0)
    var_b, df_b = (float(acc_b.var(ddof=1)), kb - 1) if kb > 1 else (None, 0)
    method = f"t, seeds {ka} vs {kb}, paired images"
    if var_a is None:
        var_a, df_a, method = var_b, df_b, method + "; seed variance of a pooled from b"
    if var_b is None:
        var_b, df_b, method = var_a, df_a, method + "; seed variance of b pooled from a"
    terms = [(float(d.var(ddof=1)) / n, n - 1), (var_a / ka, df_a), (var_b / kb, df_b)]
    return _t_interval(float(acc_a.mean() - acc_b.mean()), terms, confidence, method)


def _scipy_stats():
    """scipy.stats, imported on first use: it costs ~0.6 s, which every evaluation job (that only
    packs bitmaps) and every parse of the workflow (which imports the claims) would otherwise pay."""
    from scipy import stats
    return stats


# -- helpers -----------------------------------------------------------------------------------

def _t_interval(estimate: float, terms: list[tuple[float, int]], confidence: float,
                method: str) -> Interval:
    """estimate +- t * sqrt(sum of variances), df by Welch-Satterthwaite over (variance, df).

    With no variation at all (every run and image agree), the interval is the point itself."""
    total = sum(v for v, _ in terms)
    if total <= 0:
        return Interval(estimate, estimate, estimate, confidence, method)
    df = total ** 2 / sum(v * v / df for v, df in terms if v > 0)
    half = float(_scipy_stats().t.ppf(0.5 + confidence / 2, df)) * math.sqrt(total)
    return Interval(estimate, estimate - half, estimate + half, confidence, method)


def _confidence(confidence: float) -> float:
    if not (isinstance(confidence, (int, float)) and 0 < confidence < 1):
        raise ValueError(f"confidence must be strictly between 0 and 1, got {confidence!r}")
    return float(confidence)


def _count(value, name: str, minimum: int) -> int:
    try:
        value = operator.index(value)
    except TypeError:
        raise ValueError(f"{name} must be an integer, got {value!r}") from None
    if value < minimum:
        raise ValueError(f"{name} must be at least {minimum}, got {value}")
    return value


def _flags(flags, name: str) -> np.ndarray:
    """A 1-D bool array; 0/1 integers (a JSON list) are accepted, anything else refused."""
    arr = np.asarray(flags)
    if arr.ndim != 1:
        raise ValueError(f"{name} must be 1-D, got shape {arr.shape}")
    if arr.dtype != bool:
        if arr.size and not (np.issubdtype(arr.dtype, np.integer) and np.isin(arr, (0, 1)).all()):
            raise ValueError(f"{name} must hold booleans (or 0/1), got dtype {arr.dtype}")
        arr = arr.astype(bool)
    return arr


def _runs(runs: Sequence, name: str) -> np.ndarray:
    """One bitmap per seed, stacked into a (seeds, images) bool array; lengths must agree."""
    arrays = [_flags(r, f"{name}[{i}]") for i, r in enumerate(runs)]
    if not arrays:
        raise ValueError(f"{name} is empty: at least one run is needed")
    n = arrays[0].size
    for i, arr in enumerate(arrays):
        if arr.size != n or n == 0:
            raise ValueError(f"{name}[{i}] has {arr.size} images, expected {n} (and at least 1)")
    return np.stack(arrays)
