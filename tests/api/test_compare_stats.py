"""The statistics of compare against scipy.stats and independent computations, on generated data."""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import pytest
from scipy import integrate, stats

from api.compare import stats as cs
from api.compare.bands import aligned_epochs, band, bands
from api.compare.effects import grid_effects
from api.compare.stats import Sample

TOL = 1e-9


def close(actual: float | None, expected: float | np.floating) -> bool:
    return actual is not None and math.isclose(actual, float(expected), rel_tol=TOL, abs_tol=TOL)


@pytest.fixture
def rng() -> np.random.Generator:
    return np.random.default_rng(20261206)


# ------------------------------------------------------------------------------------------- summary


@pytest.mark.parametrize("n", [2, 3, 5, 17, 50])
def test_summary_matches_scipy(rng: np.random.Generator, n: int) -> None:
    values = rng.normal(0.4, 0.05, n)
    summary = cs.summarize(values.tolist())
    low, high = stats.t.interval(0.95, n - 1, loc=np.mean(values), scale=stats.sem(values))
    assert summary.n == n
    assert close(summary.mean, float(np.mean(values)))
    assert close(summary.std, float(np.std(values, ddof=1)))
    assert close(summary.ci_low, low) and close(summary.ci_high, high)
    assert close(summary.median, float(np.median(values)))
    assert summary.min == values.min() and summary.max == values.max()


def test_t_half_width_is_t_ppf() -> None:
    for n in (2, 3, 10, 1000):
        assert close(cs.t_half_width(2.0, n), stats.t.ppf(0.975, n - 1) * 2.0 / math.sqrt(n))


def test_summary_edge_cases() -> None:
    empty = cs.summarize([])
    assert empty.n == 0 and empty.mean is None and empty.ci_low is None
    one = cs.summarize([0.3])
    assert (one.n, one.mean, one.std, one.ci_low, one.median) == (1, 0.3, None, None, 0.3)
    constant = cs.summarize([0.5, 0.5, 0.5])
    assert (constant.std, constant.ci_low, constant.ci_high) == (0.0, 0.5, 0.5)
    with_nan = cs.summarize([0.1, float("nan"), 0.3, float("inf")])
    assert with_nan.n == 2 and close(with_nan.mean, 0.2)
    assert cs.summarize([float("nan")]).n == 0


def test_pick_best_by_mode() -> None:
    summaries = [cs.summarize(v) for v in ([0.3, 0.4], [0.1, 0.2], [], [0.5, 0.6])]
    assert cs.pick_best(summaries, "min") == 1
    assert cs.pick_best(summaries, "max") == 3
    assert cs.pick_best([cs.summarize([])], "min") is None


# ------------------------------------------------------------------------------------------- tests


def welch_df(a: np.ndarray, b: np.ndarray) -> float:
    """Welch–Satterthwaite, written out."""
    wa, wb = np.var(a, ddof=1) / len(a), np.var(b, ddof=1) / len(b)
    return float((wa + wb) ** 2 / (wa**2 / (len(a) - 1) + wb**2 / (len(b) - 1)))


@pytest.mark.parametrize(("na", "nb"), [(2, 2), (3, 7), (10, 10), (50, 23)])
def test_welch_matches_scipy(rng: np.random.Generator, na: int, nb: int) -> None:
    a, b = rng.normal(0.30, 0.02, na), rng.normal(0.32, 0.05, nb)
    test = cs.compare_pair(Sample(a.tolist()), Sample(b.tolist()), best_index=0, other_index=1)
    expected = stats.ttest_ind(a, b, equal_var=False)
    interval = expected.confidence_interval(0.95)
    assert test.test == "welch" and "seeds of the runs are unknown" in test.reason
    assert close(test.t, expected.statistic) and close(test.p, expected.pvalue)
    assert close(test.df, welch_df(a, b)) and close(test.df, expected.df)
    assert close(test.difference, float(np.mean(a) - np.mean(b)))
    assert close(test.ci_low, interval.low) and close(test.ci_high, interval.high)
    se = math.sqrt(np.var(a, ddof=1) / na + np.var(b, ddof=1) / nb)
    assert close(test.ci_high, test.difference + stats.t.ppf(0.975, welch_df(a, b)) * se)


@pytest.mark.parametrize("n", [2, 3, 8, 40])
def test_paired_matches_scipy(rng: np.random.Generator, n: int) -> None:
    seeds = rng.permutation(n).tolist()
    shared = rng.normal(0.0, 0.1, n)  # what the seed fixes: split and initialization
    a, b = 0.3 + shared + rng.normal(0, 0.01, n), 0.31 + shared + rng.normal(0, 0.01, n)
    other_order = rng.permutation(n)
    best = Sample(a.tolist(), seeds, split="iris")
    other = Sample(b[other_order].tolist(), [seeds[i] for i in other_order], split="iris")
    test = cs.compare_pair(best, other, best_index=0, other_index=1)
    expected = stats.ttest_rel(a, b)
    interval = expected.confidence_interval(0.95)
    assert test.test == "paired" and test.reason.startswith("paired")
    assert close(test.t, expected.statistic) and close(test.p, expected.pvalue)
    assert test.df == n - 1 and test.n_best == test.n_other == n
    assert close(test.ci_low, interval.low) and close(test.ci_high, interval.high)
    welch = stats.ttest_ind(a, b, equal_var=False)
    assert test.p != pytest.approx(welch.pvalue)


def test_pairing_needs_same_seeds_and_split() -> None:
    values = [0.1, 0.2, 0.3]
    base = Sample(values, [0, 1, 2], "iris")
    assert cs.pairing(base, Sample(values, [2, 1, 0], "iris"))[0]
    assert cs.pairing(base, Sample(values, [0, 1, 2], "wine")) == (
        False,
        "Welch: the groups differ in dataset or split settings, so a seed is not the same split",
    )
    assert cs.pairing(base, Sample(values, [0, 1, 3], "iris")) == (
        False,
        "Welch: the groups ran different seeds (2 in common)",
    )
    assert not cs.pairing(base, Sample(values, [0, 0, 1], "iris"))[0]
    assert not cs.pairing(base, Sample(values, None, "iris"))[0]


def test_hedges_g_and_its_interval(rng: np.random.Generator) -> None:
    a, b = rng.normal(1.0, 1.0, 6), rng.normal(0.0, 2.0, 9)
    test = cs.compare_pair(Sample(a.tolist()), Sample(b.tolist()), best_index=0, other_index=1)
    df = 6 + 9 - 2
    pooled = math.sqrt((5 * np.var(a, ddof=1) + 8 * np.var(b, ddof=1)) / df)
    correction = math.gamma(df / 2) / (math.sqrt(df / 2) * math.gamma((df - 1) / 2))
    g = correction * (np.mean(a) - np.mean(b)) / pooled
    assert close(test.hedges_g, g)
    assert abs(correction - (1 - 3 / (4 * df - 1))) < 1e-3  # the textbook approximation agrees
    se = math.sqrt(15 / 54 + g**2 / 30)
    assert close(test.g_ci_low, g - stats.norm.ppf(0.975) * se)
    assert close(test.g_ci_high, g + stats.norm.ppf(0.975) * se)


def test_paired_g_is_over_the_differences(rng: np.random.Generator) -> None:
    a, b = rng.normal(1.0, 1.0, 7), rng.normal(0.8, 1.0, 7)
    seeds = list(range(7))
    test = cs.compare_pair(
        Sample(a.tolist(), seeds, "x"), Sample(b.tolist(), seeds, "x"), best_index=0, other_index=1
    )
    d = a - b
    correction = math.gamma(3) / (math.sqrt(3) * math.gamma(2.5))
    assert close(test.hedges_g, correction * np.mean(d) / np.std(d, ddof=1))
    assert cs.hedges_correction(1) is None


# ------------------------------------------------------------------------------------------- power


def power_by_integration(effect: float, n: int, alpha: float, paired: bool) -> float:
    """Power from the definition T = (Z + δ) / √(V / df), V ~ χ²(df): integrate over V (no noncentral t)."""
    df = n - 1 if paired else 2 * n - 2
    delta = effect * (math.sqrt(n) if paired else math.sqrt(n / 2))
    critical = stats.t.ppf(1 - alpha / 2, df)

    def density(v: float) -> float:
        scale = critical * math.sqrt(v / df)
        rejects = stats.norm.sf(scale - delta) + stats.norm.cdf(-scale - delta)
        return float(rejects * stats.chi2.pdf(v, df))

    low, high = stats.chi2.ppf(1e-16, df), stats.chi2.isf(1e-16, df)  # all but 2e-16 of V's mass
    value, _error = integrate.quad(density, low, high, points=[df], epsabs=1e-13, epsrel=1e-12, limit=200)
    return value


@pytest.mark.parametrize(
    ("effect", "n", "alpha", "paired"),
    [(0.5, 64, 0.05, False), (0.8, 10, 0.05, True), (1.3, 4, 0.01, False), (0.2, 200, 0.1, True)],
)
def test_power_matches_an_independent_integral(effect: float, n: int, alpha: float, paired: bool) -> None:
    kind: cs.TestKind = "paired" if paired else "welch"
    assert close(cs.power(effect, n, alpha, kind), power_by_integration(effect, n, alpha, paired))


def test_power_matches_simulation(rng: np.random.Generator) -> None:
    trials, n, effect = 20_000, 8, 1.0
    a = rng.normal(effect, 1.0, (trials, n))
    b = rng.normal(0.0, 1.0, (trials, n))
    rejected = np.mean(stats.ttest_ind(a, b, axis=1).pvalue < 0.05)
    assert abs(rejected - cs.power(effect, n, 0.05, "welch")) < 4 * math.sqrt(0.25 / trials)


def test_seeds_for_power() -> None:
    assert cs.seeds_for_power(0.5, 0.05, "welch") == (64, False)  # Cohen's table: d = 0.5 needs 64 per group
    assert cs.seeds_for_power(0.5, 0.05, "paired") == (34, False)
    n, capped = cs.seeds_for_power(1.1, 0.01, "welch")
    assert not capped and cs.power(1.1, n, 0.01, "welch") >= 0.8 > cs.power(1.1, n - 1, 0.01, "welch")
    assert cs.seeds_for_power(0.01, 0.05, "welch") == (cs.MAX_SEEDS_ESTIMATE, True)


# ------------------------------------------------------------------------------------------- Holm


def test_holm_by_hand() -> None:
    # sorted: 0.005·4 = 0.02, 0.01·3 = 0.03, 0.03·2 = 0.06, 0.04·1 = 0.04 → kept monotone: 0.06
    assert cs.holm([0.01, 0.04, 0.03, 0.005]) == pytest.approx([0.03, 0.06, 0.06, 0.02], abs=1e-15)
    assert cs.holm([0.5, None, 0.6]) == [1.0, None, 1.0]
    assert cs.holm([]) == []


def test_best_vs_others_adjusts_over_all_tests(rng: np.random.Generator) -> None:
    groups = [rng.normal(mean, 0.02, 5).tolist() for mean in (0.30, 0.36, 0.305, 0.5)]
    best = cs.pick_best([cs.summarize(g) for g in groups], "min")
    tests = cs.best_vs_others([Sample(g) for g in groups], best=best or 0, mode="min", alpha=0.05)
    assert best == 0 and [t.other for t in tests] == [1, 2, 3]
    assert [t.p_holm for t in tests] == pytest.approx(cs.holm([t.p for t in tests]), abs=1e-15)
    assert [t.verdict for t in tests] == ["better", "not distinguishable at alpha 0.05", "better"]
    assert tests[1].seeds_needed is not None and tests[0].seeds_needed is None
    strict = cs.best_vs_others([Sample(g) for g in groups], best=0, mode="min", alpha=1e-12)
    assert strict[0].verdict == "not distinguishable at alpha 1e-12"


def test_verdict_respects_mode() -> None:
    tests = cs.best_vs_others(
        [Sample([0.9, 0.91, 0.92]), Sample([0.5, 0.51, 0.52])], best=0, mode="max", alpha=0.05
    )
    assert tests[0].verdict == "better" and (tests[0].difference or 0.0) > 0
    tests = cs.best_vs_others(
        [Sample([0.9, 0.91, 0.92]), Sample([0.5, 0.51, 0.52])], best=0, mode="min", alpha=0.05
    )
    assert tests[0].verdict == "worse"


def test_edge_cases_of_tests() -> None:
    single = cs.compare_pair(Sample([0.2]), Sample([0.3, 0.4]), best_index=0, other_index=1)
    assert single.test is None and single.p is None and single.verdict == "too few seeds to test"
    assert single.difference == pytest.approx(-0.15)
    [finished] = cs.finish([single], mode="min", alpha=0.05)
    assert finished.p_holm is None and finished.seeds_needed is None
    two = cs.compare_pair(Sample([0.2, 0.21]), Sample([0.3, 0.35]), best_index=0, other_index=1)
    assert two.test == "welch" and close(
        two.p, stats.ttest_ind([0.2, 0.21], [0.3, 0.35], equal_var=False).pvalue
    )
    same = cs.best_vs_others([Sample([0.5, 0.5]), Sample([0.5, 0.5])], best=0, mode="min", alpha=0.05)[0]
    assert (same.p, same.t, same.hedges_g, same.seeds_needed) == (1.0, 0.0, None, None)
    assert same.verdict == "not distinguishable at alpha 0.05"
    apart = cs.best_vs_others([Sample([0.4, 0.4]), Sample([0.5, 0.5])], best=0, mode="min", alpha=0.05)[0]
    assert (apart.p, apart.t, apart.verdict) == (0.0, None, "better")
    with_nan = cs.compare_pair(
        Sample([0.2, float("nan"), 0.22, 0.21]), Sample([0.3, 0.31, 0.33]), best_index=0, other_index=1
    )
    assert with_nan.n_best == 3 and close(
        with_nan.p, stats.ttest_ind([0.2, 0.22, 0.21], [0.3, 0.31, 0.33], equal_var=False).pvalue
    )
    paired_nan = cs.compare_pair(
        Sample([0.2, float("nan"), 0.22], [0, 1, 2], "x"),
        Sample([0.3, 0.31, 0.35], [0, 1, 2], "x"),
        best_index=0,
        other_index=1,
    )
    assert paired_nan.test == "paired" and paired_nan.n_best == 2 and paired_nan.hedges_g is None
    assert close(paired_nan.p, stats.ttest_rel([0.2, 0.22], [0.3, 0.35]).pvalue)


# ------------------------------------------------------------------------------------------- effects


def ols(rows: list[tuple[tuple[int, int], float]]) -> tuple[np.ndarray, np.ndarray, int]:
    """Saturated 2×2 model with ±1/2 coding: coefficients are mean(high) − mean(low) and the interaction."""
    x = np.array([[1, a - 0.5, b - 0.5, (a - 0.5) * (b - 0.5)] for (a, b), _v in rows])
    y = np.array([value for _levels, value in rows])
    beta, *_ = np.linalg.lstsq(x, y, rcond=None)
    df = len(y) - 4
    residual = float(np.sum((y - x @ beta) ** 2)) / df
    covariance = residual * np.linalg.inv(x.T @ x)
    return beta, np.sqrt(np.diag(covariance)), df


def test_two_by_two_effects_match_least_squares(rng: np.random.Generator) -> None:
    sizes = {(0, 0): 5, (0, 1): 3, (1, 0): 4, (1, 1): 6}  # unbalanced on purpose
    means = {(0, 0): 0.9, (0, 1): 0.5, (1, 0): 0.4, (1, 1): 0.3}
    rows = [(cell, float(v)) for cell, k in sizes.items() for v in rng.normal(means[cell], 0.05, k)]
    levels = [["sigmoid", "relu"], ["none", "batch"]]
    named = [((levels[0][a], levels[1][b]), v) for (a, b), v in rows]
    result = grid_effects(named, ["activation", "normalization.layers"], levels)
    beta, se, df = ols(rows)
    assert result.complete and result.residual_df == df == 14 and result.n == 18
    [activation, norm, interaction] = result.effects
    assert (activation.term, activation.contrast) == ("activation", "relu − sigmoid")
    assert interaction.contrast == "(relu − sigmoid) × (batch − none)"
    assert interaction.term == "activation × normalization.layers"
    # with ±1/2 coding the product's coefficient is the difference of differences
    for effect, coefficient, error in zip(result.effects, beta[1:], se[1:], strict=True):
        assert close(effect.estimate, coefficient) and close(effect.se, error)
        assert close(effect.ci_high, coefficient + stats.t.ppf(0.975, df) * error)
    cell = {c: np.mean([v for cc, v in rows if cc == c]) for c in sizes}
    assert close(norm.estimate, (cell[0, 1] + cell[1, 1] - cell[0, 0] - cell[1, 0]) / 2)
    assert close(interaction.estimate, (cell[1, 1] - cell[1, 0]) - (cell[0, 1] - cell[0, 0]))


def test_multi_level_field_and_missing_cells(rng: np.random.Generator) -> None:
    levels: list[list[Any]] = [[0.0, 0.1, 0.2], [True, False]]
    rows = [((d, n), float(v)) for d in levels[0] for n in levels[1] for v in rng.normal(d, 0.01, 3)]
    result = grid_effects(rows, ["dropout", "flag"], levels)
    assert [e.contrast for e in result.effects] == [
        "0.1 − 0.0",
        "0.2 − 0.0",
        "false − true",
        "(0.1 − 0.0) × (false − true)",
        "(0.2 − 0.0) × (false − true)",
    ]
    at = {d: np.mean([v for (level, _flag), v in rows if level == d]) for d in levels[0]}
    assert close(result.effects[1].estimate, at[0.2] - at[0.0])  # balanced: marginal means are plain means
    missing = grid_effects([r for r in rows if r[0] != (0.2, False)], ["dropout", "flag"], levels)
    assert not missing.complete and missing.effects == [] and "5 of 6" in (missing.reason or "")
    single = grid_effects(
        [((0.0, True), 1.0), ((0.0, False), 2.0)], ["dropout", "flag"], [[0.0], [True, False]]
    )
    assert single.effects[0].estimate == 1.0 and single.effects[0].ci_low is None and single.reason


# ------------------------------------------------------------------------------------------- bands


def test_band_per_exact_epoch(rng: np.random.Generator) -> None:
    runs = [(list(range(1, 11)), rng.normal(0.5, 0.1, 10).tolist()) for _ in range(4)]
    runs.append((list(range(1, 6)), rng.normal(0.5, 0.1, 5).tolist()))  # stopped early at epoch 5
    runs.append(([1, 2, 3], [0.4, float("nan"), None]))  # diverged
    result = band(runs, list(range(1, 12)))
    assert result.epochs == list(range(1, 11))  # epoch 11: nobody reached it
    assert result.n == [6, 5, 5, 5, 5, 4, 4, 4, 4, 4]
    for column, epoch in enumerate(result.epochs):
        values = [v[epoch - 1] for e, v in runs if epoch in e and v[epoch - 1] is not None]
        summary = cs.summarize(values)
        assert close(result.mean[column], summary.mean or 0.0)
        assert close(result.ci_low[column], summary.ci_low or 0.0)
        assert close(result.ci_high[column], summary.ci_high or 0.0)
    lonely = band([([1, 2], [0.3, 0.2])], [1, 2])
    assert lonely.n == [1, 1] and lonely.ci_low == [None, None] and lonely.mean == [0.3, 0.2]


def test_downsampling_keeps_groups_aligned() -> None:
    long = [(list(range(1, 1001)), [1.0 / e for e in range(1, 1001)])]
    short = [(list(range(1, 301)), [2.0 / e for e in range(1, 301)])]
    first, second = bands([long, short], points=50)
    assert len(first.epochs) == 50 and first.epochs[0] == 1 and first.epochs[-1] == 1000
    assert second.epochs == [e for e in first.epochs if e <= 300]
    assert aligned_epochs(long, None) == list(range(1, 1001))
    assert aligned_epochs([], 10) == []
