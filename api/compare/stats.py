"""Statistics of a comparison over seeds: summaries with CIs, tests against the best group, Holm, power.

Pure functions over numbers (numpy + scipy.stats; no FastAPI, no database). Intervals are 95% whatever
`alpha` is: alpha only decides verdicts and the power planning.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

import numpy as np
from pydantic import BaseModel, Field
from scipy import special, stats

CONFIDENCE = 0.95
TARGET_POWER = 0.8
MAX_SEEDS_ESTIMATE = 1000
MIN_SEEDS_TO_TEST = 2
Z_CRITICAL = float(stats.norm.ppf(0.5 + CONFIDENCE / 2))  # for the normal-approximation CI of g
Mode = Literal["min", "max"]
TestKind = Literal["welch", "paired"]


class Summary(BaseModel):
    """One metric over a group's seeds: n, mean, sample std (n − 1), 95% CI of the mean, median, range."""

    n: int = Field(description="Finite values summarized (NaN and infinities are left out).")
    mean: float | None
    std: float | None = Field(description="Sample standard deviation (n − 1); null when n < 2.")
    ci_low: float | None = Field(
        description="95% Student-t confidence interval of the mean; null when n < 2."
    )
    ci_high: float | None
    median: float | None
    min: float | None
    max: float | None


class PairTest(BaseModel):
    """The best group against one other group on the compared metric."""

    best: int = Field(description="Index of the best group in `groups`.")
    other: int = Field(description="Index of the group it is tested against.")
    test: TestKind | None = Field(
        description="welch: Welch's t-test; paired: paired t-test over per-seed differences; "
        "null when a group has fewer than 2 values."
    )
    reason: str = Field(description="Why this test (or why none).")
    n_best: int
    n_other: int
    difference: float | None = Field(description="Mean of the best group − mean of the other.")
    ci_low: float | None = Field(description="95% CI of the difference (Welch–Satterthwaite or paired df).")
    ci_high: float | None
    df: float | None = Field(description="Degrees of freedom of the t distribution used.")
    t: float | None
    p: float | None = Field(description="Two-sided p-value of this comparison alone.")
    p_holm: float | None = Field(description="p adjusted by Holm's method over every test in the response.")
    hedges_g: float | None = Field(
        description="Bias-corrected standardized difference: over the pooled std (welch) or over the std "
        "of per-seed differences (paired); null when that std is 0 or there are too few values."
    )
    g_ci_low: float | None = Field(description="95% CI of g (normal approximation, Hedges & Olkin).")
    g_ci_high: float | None
    verdict: str = Field(
        description="better / worse (from Holm's p at alpha and the sign) or "
        "'not distinguishable at alpha A', or 'too few seeds to test'."
    )
    seeds_needed: int | None = Field(
        description="Estimate, from the observed g: seeds per group for 80% power at alpha (per comparison) "
        "with this test. Only for pairs that are not distinguishable; null when g is unknown or 0."
    )
    seeds_needed_capped: bool = Field(
        description="True when even `seeds_needed` (the cap) would not reach 80% power."
    )


@dataclass(frozen=True)
class Sample:
    """A group's values on the compared metric, with the seed of each and its data split identity."""

    values: Sequence[float]
    seeds: Sequence[int] | None = None
    split: str | None = None  # same string: the same seed gives the same data split


def finite(values: Sequence[float]) -> np.ndarray:
    """The finite values as a float array."""
    array = np.asarray(values, dtype=float)
    return array[np.isfinite(array)]


@functools.lru_cache(maxsize=4096)
def t_critical(df: float, confidence: float = CONFIDENCE) -> float:
    """The two-sided Student-t quantile t(1 − (1 − c)/2, df), remembered: a compare asks for few dfs often."""
    return float(stats.t.ppf(0.5 + confidence / 2, df))


def t_half_width(std: float, n: int, confidence: float = CONFIDENCE) -> float:
    """Half-width of the Student-t CI of a mean: t(1 − (1 − c)/2, n − 1) · std / √n."""
    return t_critical(n - 1, confidence) * std / math.sqrt(n)


def summarize(values: Sequence[float]) -> Summary:
    """Summary of the finite values."""
    data = finite(values)
    n = len(data)
    if n == 0:
        return Summary(n=0, mean=None, std=None, ci_low=None, ci_high=None, median=None, min=None, max=None)
    mean = float(np.mean(data))
    std = half = None
    if n >= 2:
        std = float(np.std(data, ddof=1))
        half = t_half_width(std, n)
    return Summary(
        n=n,
        mean=mean,
        std=std,
        ci_low=None if half is None else mean - half,
        ci_high=None if half is None else mean + half,
        median=float(np.median(data)),
        min=float(np.min(data)),
        max=float(np.max(data)),
    )


def pick_best(summaries: Sequence[Summary], mode: Mode) -> int | None:
    """Index of the group with the best mean (lowest for min, highest for max); first one on ties."""
    scored = [(index, s.mean) for index, s in enumerate(summaries) if s.mean is not None]
    if not scored:
        return None
    sign = 1.0 if mode == "min" else -1.0
    return min(scored, key=lambda item: (sign * item[1], item[0]))[0]


def pairing(best: Sample, other: Sample) -> tuple[bool, str]:
    """(paired?, why): paired when both ran the same seeds, once each, and a seed fixes the same split."""
    if best.seeds is None or other.seeds is None:
        return False, "Welch: the seeds of the runs are unknown"
    if len(set(best.seeds)) < len(best.seeds) or len(set(other.seeds)) < len(other.seeds):
        return False, "Welch: a seed appears more than once in a group"
    if set(best.seeds) != set(other.seeds):
        shared = len(set(best.seeds) & set(other.seeds))
        return False, f"Welch: the groups ran different seeds ({shared} in common)"
    if best.split is None or best.split != other.split:
        return False, "Welch: the groups differ in dataset or split settings, so a seed is not the same split"
    return True, "paired: both groups ran the same seeds on the same dataset and split settings"


def _paired_values(best: Sample, other: Sample) -> tuple[np.ndarray, np.ndarray]:
    """Both groups' finite values ordered by seed, dropping a seed where either value is not finite."""
    assert best.seeds is not None and other.seeds is not None
    mine = dict(zip(best.seeds, best.values, strict=True))
    theirs = dict(zip(other.seeds, other.values, strict=True))
    a = np.array([mine[seed] for seed in sorted(mine)], dtype=float)
    b = np.array([theirs[seed] for seed in sorted(mine)], dtype=float)
    keep = np.isfinite(a) & np.isfinite(b)
    return a[keep], b[keep]


def hedges_correction(df: float) -> float | None:
    """Exact small-sample factor J(df) = Γ(df/2) / (√(df/2) Γ((df − 1)/2)); None for df < 2 (J would be 0)."""
    if df < 2:
        return None
    return float(np.exp(special.gammaln(df / 2) - special.gammaln((df - 1) / 2)) / math.sqrt(df / 2))


def power(effect: float, n: int, alpha: float, test: TestKind) -> float:
    """Power of the two-sided t-test with n seeds per group for the standardized effect (noncentral t)."""
    if test == "paired":
        df, ncp = n - 1, effect * math.sqrt(n)
    else:  # planned with equal n and equal variances: the pooled two-sample t
        df, ncp = 2 * n - 2, effect * math.sqrt(n / 2)
    critical = stats.t.ppf(1 - alpha / 2, df)
    # P(T < −c | δ) as P(T > c | −δ): scipy's nct.cdf gives NaN for far tails where sf gives 0.
    return float(stats.nct.sf(critical, df, ncp) + stats.nct.sf(critical, df, -ncp))


def seeds_for_power(
    effect: float, alpha: float, test: TestKind, cap: int = MAX_SEEDS_ESTIMATE
) -> tuple[int, bool]:
    """(smallest n ≥ 2 with power ≥ 80%, False), or (cap, True) when even cap seeds fall short."""
    if power(effect, cap, alpha, test) < TARGET_POWER:
        return cap, True
    low, high = 2, cap  # power rises with n: bisect for the first n that reaches the target
    while low < high:
        middle = (low + high) // 2
        if power(effect, middle, alpha, test) >= TARGET_POWER:
            high = middle
        else:
            low = middle + 1
    return low, False


@dataclass(frozen=True)
class _TTest:
    difference: float
    se: float
    df: float
    t: float
    p: float


def _degenerate(difference: float, df: float) -> _TTest:
    """A zero standard error: the limit t = ±∞ (p = 0), or t = 0 (p = 1) when the means are equal."""
    if difference == 0:
        return _TTest(difference, 0.0, df, 0.0, 1.0)
    return _TTest(difference, 0.0, df, math.copysign(math.inf, difference), 0.0)


def welch(a: np.ndarray, b: np.ndarray) -> tuple[_TTest, float | None, float | None]:
    """Welch's t-test of mean(a) − mean(b) (scipy's ttest_ind(equal_var=False)), with g and its SE."""
    na, nb = len(a), len(b)
    va, vb = float(np.var(a, ddof=1)), float(np.var(b, ddof=1))
    se = math.sqrt(va / na + vb / nb)
    difference = float(np.mean(a) - np.mean(b))
    if se > 0:
        test = stats.ttest_ind(a, b, equal_var=False)
        result = _TTest(difference, se, float(test.df), float(test.statistic), float(test.pvalue))
    else:
        result = _degenerate(difference, float(na + nb - 2))
    pooled = math.sqrt(((na - 1) * va + (nb - 1) * vb) / (na + nb - 2))
    correction = hedges_correction(na + nb - 2)
    if pooled == 0 or correction is None:
        return result, None, None
    g = correction * difference / pooled
    return result, g, math.sqrt((na + nb) / (na * nb) + g**2 / (2 * (na + nb)))


def paired(a: np.ndarray, b: np.ndarray) -> tuple[_TTest, float | None, float | None]:
    """Paired t-test over a − b (scipy's ttest_rel), with g over the std of the differences and its SE."""
    differences = a - b
    n = len(differences)
    std = float(np.std(differences, ddof=1))
    difference = float(np.mean(differences))
    if std > 0:
        test = stats.ttest_rel(a, b)
        se = std / math.sqrt(n)
        result = _TTest(difference, se, float(test.df), float(test.statistic), float(test.pvalue))
    else:
        result = _degenerate(difference, float(n - 1))
    correction = hedges_correction(n - 1)
    if std == 0 or correction is None:
        return result, None, None
    g = correction * difference / std
    return result, g, math.sqrt(1 / n + g**2 / (2 * n))


def holm(p_values: Sequence[float | None]) -> list[float | None]:
    """Holm's step-down adjustment over the given p-values (None stays None and does not count)."""
    present = sorted((p, index) for index, p in enumerate(p_values) if p is not None)
    m = len(present)
    adjusted: list[float | None] = [None] * len(p_values)
    running = 0.0
    for rank, (p, index) in enumerate(present):
        running = max(running, min(1.0, (m - rank) * p))
        adjusted[index] = running
    return adjusted


def _verdict(difference: float, p_holm: float, alpha: float, mode: Mode) -> str:
    if p_holm >= alpha:
        return f"not distinguishable at alpha {alpha:g}"
    return "better" if (difference < 0) == (mode == "min") else "worse"


def compare_pair(best: Sample, other: Sample, *, best_index: int, other_index: int) -> PairTest:
    """One comparison before Holm (p_holm, verdict and seeds_needed are filled by `best_vs_others`)."""
    is_paired, reason = pairing(best, other)
    if is_paired:
        a, b = _paired_values(best, other)
    else:
        a, b = finite(best.values), finite(other.values)
    empty = PairTest(
        best=best_index,
        other=other_index,
        test=None,
        reason=f"too few seeds to test: n = {len(a)} and {len(b)} (need {MIN_SEEDS_TO_TEST} each)",
        n_best=len(a),
        n_other=len(b),
        difference=float(np.mean(a) - np.mean(b)) if len(a) and len(b) else None,
        ci_low=None,
        ci_high=None,
        df=None,
        t=None,
        p=None,
        p_holm=None,
        hedges_g=None,
        g_ci_low=None,
        g_ci_high=None,
        verdict="too few seeds to test",
        seeds_needed=None,
        seeds_needed_capped=False,
    )
    if min(len(a), len(b)) < MIN_SEEDS_TO_TEST:
        return empty
    result, g, g_se = paired(a, b) if is_paired else welch(a, b)
    half = t_critical(result.df) * result.se
    return empty.model_copy(
        update={
            "test": "paired" if is_paired else "welch",
            "reason": reason,
            "difference": result.difference,
            "ci_low": result.difference - half,
            "ci_high": result.difference + half,
            "df": result.df,
            "t": result.t if math.isfinite(result.t) else None,
            "p": result.p,
            "hedges_g": g,
            "g_ci_low": None if g is None or g_se is None else g - Z_CRITICAL * g_se,
            "g_ci_high": None if g is None or g_se is None else g + Z_CRITICAL * g_se,
        }
    )


def best_vs_others(samples: Sequence[Sample], *, best: int, mode: Mode, alpha: float) -> list[PairTest]:
    """The best group tested against each other group, Holm-adjusted over these tests, with verdicts."""
    tests = [
        compare_pair(samples[best], sample, best_index=best, other_index=index)
        for index, sample in enumerate(samples)
        if index != best
    ]
    return finish(tests, mode=mode, alpha=alpha)


def finish(tests: Sequence[PairTest], *, mode: Mode, alpha: float) -> list[PairTest]:
    """Holm over all `tests`, then each verdict and, where not distinguishable, the seeds-needed estimate."""
    finished = []
    for test, p_holm in zip(tests, holm([test.p for test in tests]), strict=True):
        if p_holm is None or test.test is None or test.difference is None:
            finished.append(test)
            continue
        verdict = _verdict(test.difference, p_holm, alpha, mode)
        needed, capped = None, False
        if verdict.startswith("not") and test.hedges_g not in (None, 0.0):
            assert test.hedges_g is not None
            needed, capped = seeds_for_power(abs(test.hedges_g), alpha, test.test)
        finished.append(
            test.model_copy(
                update={
                    "p_holm": p_holm,
                    "verdict": verdict,
                    "seeds_needed": needed,
                    "seeds_needed_capped": capped,
                }
            )
        )
    return finished
