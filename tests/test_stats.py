"""freeadv.stats: each interval checked against an independent computation in this file (formula,
scipy.stats.beta, hand-written variance terms), plus the bitmap format and a coverage check."""
from __future__ import annotations

import base64
import math
from statistics import NormalDist

import numpy as np
import pytest
from scipy import stats as sps

from freeadv import stats


def wilson_by_formula(correct: int, n: int, confidence: float) -> tuple[float, float]:
    z = NormalDist().inv_cdf(0.5 + confidence / 2)
    p = correct / n
    centre = (p + z * z / (2 * n)) / (1 + z * z / n)
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / (1 + z * z / n)
    return 100 * max(0.0, centre - half), 100 * min(1.0, centre + half)


def pair(n10: int, n01: int, n11: int, n00: int) -> tuple[np.ndarray, np.ndarray]:
    """Two bitmaps with the given concordant/discordant counts (in a fixed shuffled order)."""
    a = np.array([1] * n10 + [0] * n01 + [1] * n11 + [0] * n00, dtype=bool)
    b = np.array([0] * n10 + [1] * n01 + [1] * n11 + [0] * n00, dtype=bool)
    order = np.random.default_rng(0).permutation(a.size)
    return a[order], b[order]


def seeded_by_hand(a_runs, b_runs, confidence):
    """The two variance terms and the Satterthwaite df, written out for k >= 2 seeds each side
    (or one side with a single seed borrowing the other's variance)."""
    a, b = np.array(a_runs, dtype=float), np.array(b_runs, dtype=float)
    n = a.shape[1]
    acc_a, acc_b = 100 * a.mean(axis=1), 100 * b.mean(axis=1)
    d = 100 * (a.mean(axis=0) - b.mean(axis=0))
    v_img = np.sum((d - d.mean()) ** 2) / (n - 1) / n
    s2 = lambda x: np.sum((x - x.mean()) ** 2) / (len(x) - 1) if len(x) > 1 else None
    s2a, s2b = s2(acc_a), s2(acc_b)
    dfa, dfb = len(acc_a) - 1, len(acc_b) - 1
    if s2a is None:
        s2a, dfa = s2b, dfb
    if s2b is None:
        s2b, dfb = s2a, dfa
    va, vb = s2a / len(acc_a), s2b / len(acc_b)
    total = v_img + va + vb
    df = total ** 2 / (v_img ** 2 / (n - 1) + va ** 2 / dfa + vb ** 2 / dfb)
    half = sps.t.ppf(0.5 + confidence / 2, df) * math.sqrt(total)
    est = acc_a.mean() - acc_b.mean()
    return est, est - half, est + half


# -- Wilson ----------------------------------------------------------------------------------

@pytest.mark.parametrize("correct,n", [(0, 1000), (500, 1000)])
def test_wilson_matches_the_formula(correct, n):
    low, high = stats.wilson(correct, n, 0.95)
    want_low, want_high = wilson_by_formula(correct, n, 0.95)
    assert low == pytest.approx(want_low, abs=1e-9) and high == pytest.approx(want_high, abs=1e-9)


def test_wilson_is_not_degenerate_at_zero():
    low, high = stats.wilson(0, 1000, 0.95)
    assert low == pytest.approx(0.0, abs=1e-12) and 0.37 < high < 0.39


@pytest.mark.parametrize("args", [(-1, 10), (11, 10), (0, 0), (5, 10, 0.0), (5, 10, 1.0),
                                  (5, 10, 1.5), (2.5, 10), (5, "10")])
def test_wilson_refuses_invalid_input(args):
    with pytest.raises(ValueError):
        stats.wilson(*args)


# -- bitmaps ---------------------------------------------------------------------------------

@pytest.mark.parametrize("n", [0, 1, 7, 8, 9, 13, 1001, 10_000])
def test_pack_unpack_round_trip(n):
    flags = np.random.default_rng(n).random(n) < 0.4
    text = stats.pack_flags(flags)
    assert isinstance(text, str) and text.isascii()
    back = stats.unpack_flags(text, n)
    assert back.dtype == bool and np.array_equal(back, flags)
    assert len(text) == 4 * math.ceil(math.ceil(n / 8) / 3)   # base64 of ceil(n/8) bytes
    if n == 10_000:
        assert len(text) < 1700   # 1,250 packed bytes -> 1,668 characters


def test_pack_uses_big_endian_bit_order():
    assert stats.pack_flags([True] + [False] * 7) == base64.b64encode(b"\x80").decode()
    assert stats.pack_flags([False] * 7 + [True, True]) == base64.b64encode(b"\x01\x80").decode()


def test_unpack_refuses_bad_text():
    good = stats.pack_flags(np.ones(13, dtype=bool))
    for text in ("not base64!", good[:-1], "é" + good, good + "\n"):
        with pytest.raises(ValueError, match="base64"):
            stats.unpack_flags(text, 13)
    for n in (8, 17, 24):   # 1 and 3 bytes, where 13 images take 2
        with pytest.raises(ValueError, match="bytes"):
            stats.unpack_flags(good, n)
    padded = stats.pack_flags(np.array([0] * 15 + [1], dtype=bool))   # bit 15 set
    with pytest.raises(ValueError, match="padding"):
        stats.unpack_flags(padded, 13)
    assert stats.unpack_flags(padded, 16)[-1]
    with pytest.raises(ValueError):
        stats.unpack_flags(b"gA==", 1)


def test_accuracy_and_interval_text():
    assert stats.accuracy([True, False, True, True]) == 75.0
    iv = stats.Interval(1.2, -0.85, 3.1, 0.9, "Newcombe paired")
    assert iv.text() == "+1.20 [-0.85, +3.10] (90%, Newcombe paired)"
    assert stats.Interval(45.0, 43.5, 46.5, 0.95, "Wilson").text(signed=False) == \
        "45.00 [43.50, 46.50] (95%, Wilson)"


# -- paired difference -----------------------------------------------------------------------

def newcombe_by_hand(n11, n10, n01, n00, confidence):
    """Newcombe's method 10, written out from the paper's formulas with scipy's quantile."""
    n = n11 + n10 + n01 + n00
    z = sps.norm.ppf(0.5 + confidence / 2)

    def wilson(x):
        p = x / n
        centre, half = p + z * z / (2 * n), z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n))
        return p, (centre - half) / (1 + z * z / n), (centre + half) / (1 + z * z / n)

    (p1, l1, u1), (p2, l2, u2) = wilson(n11 + n10), wilson(n11 + n01)
    ad_bc = n11 * n00 - n10 * n01
    corrected = max(ad_bc - n / 2, 0) if ad_bc > 0 else ad_bc
    margins = (n11 + n10) * (n01 + n00) * (n11 + n01) * (n10 + n00)
    phi = corrected / math.sqrt(margins) if margins else 0.0
    low = p1 - p2 - math.sqrt((p1 - l1) ** 2 - 2 * phi * (p1 - l1) * (u2 - p2) + (u2 - p2) ** 2)
    high = p1 - p2 + math.sqrt((p2 - l2) ** 2 - 2 * phi * (p2 - l2) * (u1 - p1) + (u1 - p1) ** 2)
    return 100 * (p1 - p2), 100 * low, 100 * high


@pytest.mark.parametrize("n11,n10,n01,n00", [(400, 30, 10, 560), (14, 5, 0, 22), (100, 7, 0, 100),
                                             (300, 0, 9, 691), (2, 1, 1, 996)])
def test_paired_is_newcombes_hybrid_score_interval(n11, n10, n01, n00):
    a, b = pair(n10, n01, n11=n11, n00=n00)
    iv = stats.paired_difference(a, b, confidence=0.90)
    assert (iv.estimate, iv.low, iv.high) == pytest.approx(newcombe_by_hand(n11, n10, n01, n00, 0.90), abs=1e-9)
    assert iv.confidence == 0.90 and iv.method == "Newcombe paired"
    assert iv.low < iv.estimate < iv.high


def test_models_that_agree_everywhere_still_get_an_interval_of_positive_width():
    """No discordant image is evidence of a small difference, not proof of none: the interval
    contains 0 and narrows as the images grow."""
    widths = []
    for n in (100, 1000, 10000):
        a = np.arange(n) < n // 2
        iv = stats.paired_difference(a, a.copy())
        assert iv.estimate == 0.0 and iv.low < 0 < iv.high
        widths.append(iv.high - iv.low)
    assert widths[0] > widths[1] > widths[2] > 0
    everywhere = stats.paired_difference(np.ones(500, bool), np.ones(500, bool))
    assert everywhere.low < 0 < everywhere.high and -100 <= everywhere.low


def test_paired_sign_convention():
    a, b = pair(n10=25, n01=5, n11=300, n00=670)   # a right on 20 more images
    ab, ba = stats.paired_difference(a, b), stats.paired_difference(b, a)
    assert ab.estimate == pytest.approx(2.0) and ab.low > 0
    assert (ba.estimate, ba.low, ba.high) == pytest.approx((-ab.estimate, -ab.high, -ab.low))


def test_paired_is_narrower_than_unpaired_wald_for_correlated_models():
    n = 1000
    a, b = pair(n10=15, n01=10, n11=480, n00=495)   # ~50% accurate, agreeing on 97.5%
    iv = stats.paired_difference(a, b, confidence=0.90)
    pa, pb = a.mean(), b.mean()
    z = NormalDist().inv_cdf(0.95)
    wald_width = 2 * z * 100 * math.sqrt(pa * (1 - pa) / n + pb * (1 - pb) / n)
    assert iv.high - iv.low < wald_width / 3


def test_paired_refuses_mismatched_input():
    with pytest.raises(ValueError):
        stats.paired_difference(np.ones(10, bool), np.ones(11, bool))
    with pytest.raises(ValueError):
        stats.paired_difference(np.full(4, 0.5), np.ones(4, bool))
    with pytest.raises(ValueError):
        stats.paired_difference(np.ones(4, bool), np.ones(4, bool), confidence=90)


# -- seeded difference -----------------------------------------------------------------------

def runs(rng, accuracies, n, base=None, flip=0.05):
    """One bitmap per seed: a shared base pattern with a fraction flipped, then set to accuracy."""
    base = rng.random(n) if base is None else base
    out = []
    for acc in accuracies:
        score = base + flip * rng.standard_normal(n)
        out.append(score < np.quantile(score, acc))
    return out


def test_seeded_matches_hand_computation():
    rng = np.random.default_rng(2)
    n, base = 500, rng.random(500)
    a_runs, b_runs = runs(rng, [0.52, 0.55, 0.50], n, base), runs(rng, [0.47, 0.49, 0.46], n, base)
    iv = stats.seeded_difference(a_runs, b_runs, confidence=0.90)
    est, low, high = seeded_by_hand(a_runs, b_runs, 0.90)
    assert (iv.estimate, iv.low, iv.high) == pytest.approx((est, low, high), abs=1e-9)
    assert iv.low < iv.estimate < iv.high and "3 vs 3" in iv.method


def test_seed_spread_widens_the_interval():
    rng = np.random.default_rng(3)
    n, base = 1000, rng.random(1000)
    a_runs = runs(rng, [0.40, 0.60, 0.80], n, base)
    b_runs = runs(rng, [0.45, 0.62, 0.75], n, base)
    seeded = stats.seeded_difference(a_runs, b_runs)
    single = stats.paired_difference(a_runs[0], b_runs[0])
    assert seeded.high - seeded.low > 3 * (single.high - single.low)


def test_one_seed_on_one_side_borrows_the_other_variance():
    rng = np.random.default_rng(4)
    n, base = 400, rng.random(400)
    a_runs, b_runs = runs(rng, [0.55], n, base), runs(rng, [0.45, 0.50, 0.40], n, base)
    iv = stats.seeded_difference(a_runs, b_runs)
    assert (iv.estimate, iv.low, iv.high) == pytest.approx(seeded_by_hand(a_runs, b_runs, 0.90),
                                                           abs=1e-9)
    assert "pooled" in iv.method and "a pooled from b" in iv.method
    flipped = stats.seeded_difference(b_runs, a_runs)
    assert "b pooled from a" in flipped.method
    assert (flipped.low, flipped.high) == pytest.approx((-iv.high, -iv.low), abs=1e-9)


def test_one_seed_each_falls_back_to_paired():
    a, b = pair(n10=30, n01=10, n11=400, n00=560)
    iv = stats.seeded_difference([a], [b])
    ref = stats.paired_difference(a, b)
    assert (iv.estimate, iv.low, iv.high) == (ref.estimate, ref.low, ref.high)
    assert "1 seed each: image term only" in iv.method


def test_seeded_refuses_bad_runs():
    ok = [np.ones(10, bool), np.zeros(10, bool)]
    with pytest.raises(ValueError, match=r"b_runs\[1\] has 9 images, expected 10"):
        stats.seeded_difference(ok, [np.ones(10, bool), np.ones(9, bool)])
    for other in ([np.ones(11, bool)], [np.ones(11, bool)] * 2):
        with pytest.raises(ValueError, match="same images"):
            stats.seeded_difference(ok, other)
    with pytest.raises(ValueError):
        stats.seeded_difference([], ok)


# -- one model over seeds --------------------------------------------------------------------

def test_mean_interval():
    rng = np.random.default_rng(5)
    one = rng.random(1000) < 0.3
    iv = stats.mean_interval([one], 0.95)
    assert (iv.low, iv.high) == pytest.approx(wilson_by_formula(int(one.sum()), 1000, 0.95))
    assert stats.mean_interval([one, one.copy()]).method == "Wilson"
    n, base = 1000, rng.random(1000)
    r = np.array(runs(rng, [0.30, 0.36, 0.33], n, base), dtype=float)
    iv = stats.mean_interval(list(r.astype(bool)), 0.95)
    acc, per_image = 100 * r.mean(axis=1), 100 * r.mean(axis=0)
    v_img, v_seed = per_image.var(ddof=1) / n, acc.var(ddof=1) / 3
    df = (v_img + v_seed) ** 2 / (v_img ** 2 / (n - 1) + v_seed ** 2 / 2)
    half = sps.t.ppf(0.975, df) * math.sqrt(v_img + v_seed)
    assert (iv.estimate, iv.low, iv.high) == pytest.approx((acc.mean(), acc.mean() - half,
                                                            acc.mean() + half), abs=1e-9)
    assert stats.mean_interval([np.ones(50, bool), np.ones(50, bool)]).high == 100.0


# -- coverage --------------------------------------------------------------------------------

@pytest.mark.parametrize("p11,p10,p01", [
    (0.40, 0.05, 0.03),      # related models, discordance both ways
    (0.40, 0.004, 0.0),      # a few discordant images, all one way: the conditional (McNemar) interval covered 57% of these draws
])
def test_paired_interval_covers_the_true_difference(p11, p10, p01):
    """400 draws of two correlated models on 1,000 images; true difference 100*(p10 - p01)."""
    cells = np.random.default_rng(6).choice(4, size=(400, 1000), p=[p11, p10, p01, 1 - p11 - p10 - p01])
    a_all, b_all = (cells == 0) | (cells == 1), (cells == 0) | (cells == 2)
    truth = 100 * (p10 - p01)
    covered = [iv.low <= truth <= iv.high
               for iv in (stats.paired_difference(a, b, 0.90) for a, b in zip(a_all, b_all))]
    rate = float(np.mean(covered))
    assert 0.85 <= rate <= 0.99, rate
