"""Tests of cmcd_theory/bounds/ (docs/theory.md, B1-B6 and C).

Hand-computed cases write the arithmetic out with math.sqrt / math.log; the Lipschitz
constants of B4 and B5 are checked against independent float64 numpy implementations of the
losses (log-sum-exp); the kl inversions against a brute-force grid.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
from scipy.special import logsumexp, softmax

from cmcd_theory import bounds as B

SQRT2 = math.sqrt(2.0)


# --------------------------------------------------------------------------------------
# kl tools
# --------------------------------------------------------------------------------------


def test_kl_bernoulli_hand_values_and_edges():
    assert B.kl_bernoulli(0.5, 0.25) == pytest.approx(
        0.5 * math.log(2) + 0.5 * math.log(2 / 3), abs=1e-15
    )
    assert B.kl_bernoulli(0.0, 0.3) == pytest.approx(-math.log(0.7), abs=1e-15)
    assert B.kl_bernoulli(1.0, 0.3) == pytest.approx(-math.log(0.3), abs=1e-15)
    assert B.kl_bernoulli(0.3, 0.3) == 0.0
    assert B.kl_bernoulli(0.0, 0.0) == 0.0 and B.kl_bernoulli(1.0, 1.0) == 0.0
    assert B.kl_bernoulli(0.3, 0.0) == math.inf and B.kl_bernoulli(0.3, 1.0) == math.inf
    with pytest.raises(ValueError, match="q must"):
        B.kl_bernoulli(1.5, 0.3)
    with pytest.raises(ValueError, match="p must"):
        B.kl_bernoulli(0.5, -0.1)


def test_kl_bernoulli_accurate_near_p_equal_q():
    # Against 60-digit arithmetic on the exact binary values of q and p; the naive formula
    # q ln(q/p) + (1-q) ln((1-q)/(1-p)) has no correct digit at |p - q| ~ 1e-9.
    from decimal import Decimal, getcontext

    getcontext().prec = 60
    rng = np.random.default_rng(2)
    for _ in range(200):
        q = float(rng.uniform(1e-6, 1 - 1e-6))
        p = float(
            np.clip(q + rng.choice([1e-12, 1e-9, 1e-6, 1e-3, 0.1]) * rng.normal(), 1e-12, 1 - 1e-12)
        )
        dq, dp, one = Decimal(q), Decimal(p), Decimal(1)
        exact = dq * (dq / dp).ln() + (one - dq) * ((one - dq) / (one - dp)).ln()
        assert B.kl_bernoulli(q, p) == pytest.approx(float(exact), rel=1e-9, abs=1e-300)


KL_CASES = [
    (0.0, 0.0),
    (0.0, 0.1),
    (0.0, 3.0),
    (0.3, 0.0),
    (0.3, 0.05),
    (0.5, 2.0),
    (0.01, 1e-6),
    (0.999, 0.01),
    (1 - 1e-9, 0.1),
    (1.0, 0.3),
    (0.2, 10.0),
]


@pytest.mark.parametrize("q,c", KL_CASES)
def test_kl_inverses_match_brute_force_grid(q, c):
    step = 1.0 / 1_000_000
    grid = np.append(np.linspace(0.0, 1.0, 1_000_001), q)  # q itself: kl(q||q) = 0 <= c
    ok = B.kl_bernoulli(q, grid) <= c
    sup = grid[ok & (grid >= q)].max()
    inf = grid[ok & (grid <= q)].min()
    # The true sup lies in [sup, sup + step] (kl is increasing on [q, 1]); the inverse
    # returns a value in [p*, p* + 1e-12].
    up = B.kl_inverse_upper(q, c)
    assert sup - 1e-12 <= up <= min(1.0, sup + step) + 1e-12
    lo = B.kl_inverse_lower(q, c)
    assert max(0.0, inf - step) - 1e-12 <= lo <= inf + 1e-12


def test_kl_inverse_closed_forms_and_direction():
    for c in (1e-4, 0.1, 2.0):
        assert B.kl_inverse_upper(0.0, c) == pytest.approx(1 - math.exp(-c), abs=2e-12)
        assert B.kl_inverse_upper(0.0, c) >= 1 - math.exp(-c)  # never below p*
        assert B.kl_inverse_lower(1.0, c) == pytest.approx(math.exp(-c), abs=2e-12)
        assert B.kl_inverse_lower(1.0, c) <= math.exp(-c)  # never above p*
    assert B.kl_inverse_upper(0.4, 0.0) == pytest.approx(0.4, abs=1e-12)
    assert B.kl_inverse_upper(0.4, math.inf) == 1.0
    with pytest.raises(ValueError, match="c must"):
        B.kl_inverse_upper(0.4, -0.1)


# --------------------------------------------------------------------------------------
# Test-set estimates (C)
# --------------------------------------------------------------------------------------


def test_hoeffding_risk_upper_clopper_pearson_hand():
    assert B.hoeffding_slack(100, 0.05) == pytest.approx(math.sqrt(math.log(20) / 200), abs=1e-15)
    assert B.risk_upper(0.1, 100, 0.05) == pytest.approx(
        0.1 + math.sqrt(math.log(20) / 200), abs=1e-15
    )
    lo, hi = B.clopper_pearson(0, 50, 0.1)
    assert lo == 0.0 and hi == pytest.approx(1 - 0.05 ** (1 / 50), abs=1e-12)
    lo, hi = B.clopper_pearson(50, 50, 0.1)
    assert hi == 1.0 and lo == pytest.approx(0.05 ** (1 / 50), abs=1e-12)
    lo, hi = B.clopper_pearson(10, 50, 0.1)
    assert lo < 0.2 < hi
    with pytest.raises(ValueError, match="n must"):
        B.hoeffding_slack(0, 0.05)
    with pytest.raises(ValueError, match="delta must"):
        B.hoeffding_slack(10, 1.0)
    with pytest.raises(ValueError, match="k must"):
        B.clopper_pearson(11, 10, 0.05)


def test_holds_on_test_set_convention():
    s = math.sqrt(math.log(1 / 0.05) / (2 * 400))
    chk = B.holds_on_test_set(0.30, 0.30 + 0.5 * s, 400, 0.05)
    assert chk.holds and not chk.holds_strict and chk.slack == pytest.approx(s, abs=1e-15)
    assert not B.holds_on_test_set(0.30, 0.30 + 1.01 * s, 400, 0.05).holds
    assert B.holds_on_test_set(0.30, 0.30 - 1.01 * s, 400, 0.05).holds_strict


# --------------------------------------------------------------------------------------
# B1
# --------------------------------------------------------------------------------------


def test_transfer_bound_hand_and_no_clipping():
    t = B.transfer_bound(0.12, 0.3)
    assert (t.empirical, t.complexity, t.confidence) == (0.12, 0.3, 0.0)
    assert t.total == pytest.approx(0.42, abs=1e-15)
    big = B.transfer_bound(0.6, 0.7)
    assert big.total == pytest.approx(1.3, abs=1e-15) and big.vacuous  # never clipped
    assert big.as_dict()["bound"] == "B1"
    with pytest.raises(ValueError, match="tv_upper"):
        B.transfer_bound(0.1, -0.1)
    with pytest.raises(ValueError, match="risk_source"):
        B.transfer_bound(1.1, 0.1)


# --------------------------------------------------------------------------------------
# B2
# --------------------------------------------------------------------------------------

# Four unit-norm points, 25 copies each (n = 100), K = 2.
_Z4 = np.array([[1.0, 0.0], [0.0, 1.0], [0.6, 0.8], [0.8, 0.6]])
_Y4 = np.array([0, 1, 0, 1])
Z100, Y100 = np.repeat(_Z4, 25, axis=0), np.repeat(_Y4, 25)
W2 = np.array([[1.0, 0.0], [0.0, 1.0]])


def test_margin_bound_binary_data_free_hand():
    # margins: 1, 1, 0.6 - 0.8 = -0.2, 0.6 - 0.8 = -0.2.
    # rho = 2: ramp = (0.5 + 0.5 + 1 + 1) / 4 = 0.75; ||w_1 - w_2|| = sqrt2 -> Lambda = 2.
    b = B.margin_bound(
        Z100, Y100, W2, delta=0.05, rho_grid=[2.0], lambda_grid=[1.0, 2.0, 4.0], form="data_free"
    )
    d = 0.05 / 3
    expect = 0.75 + 2 * 2.0 * 1.0 / (2.0 * math.sqrt(100)) + math.sqrt(math.log(1 / d) / 200)
    assert b.binary and b.K == 2 and b.n == 100
    assert b.Lambda_hat == pytest.approx(SQRT2, abs=1e-15) and b.Lambda == 2.0
    assert b.empirical == pytest.approx(0.75, abs=1e-15) == b.empirical_margin_loss
    assert b.empirical_error == 0.5
    assert b.r == 1.0 and b.rho == 2.0
    assert b.total == pytest.approx(expect, abs=1e-12)
    assert b.total == pytest.approx(b.empirical + b.complexity + b.confidence, abs=1e-15)


def test_margin_bound_multiclass_sample_hand():
    # Multi-class form at K = 2: Lambda_hat = max_y ||w_y|| = 1 -> Lambda = 1 (on the grid).
    b = B.margin_bound(
        Z100,
        Y100,
        W2,
        delta=0.05,
        rho_grid=[2.0],
        lambda_grid=[1.0, 2.0, 4.0],
        form="sample",
        binary=False,
    )
    d = 0.05 / 3
    rad = 1.0 * math.sqrt(100 * 1.0) / 100
    expect = 0.75 + (4 * 2 / 2.0) * rad + 3 * math.sqrt(math.log(2 / d) / 200)
    assert not b.binary and b.Lambda == 1.0 and b.rademacher == pytest.approx(rad, abs=1e-15)
    assert b.total == pytest.approx(expect, abs=1e-12)


def test_margin_bound_with_bias_hand():
    # b = (0.5, -0.5): margins shift by +1 (y = 0) / -1 (y = 1): 2, 0, 0.8, -1.2.
    # rho = 2: ramp = (0 + 1 + 0.6 + 1) / 4 = 0.65; ||w~_1 - w~_2|| = ||(1, -1, 1)|| = sqrt3.
    b = B.margin_bound(
        Z100,
        Y100,
        W2,
        np.array([0.5, -0.5]),
        delta=0.1,
        rho_grid=[2.0],
        lambda_grid=[1.0, 2.0],
        form="data_free",
    )
    expect = 0.65 + 2 * 2.0 * SQRT2 / (2.0 * 10) + math.sqrt(math.log(2 / 0.1) / 200)
    assert b.Lambda_hat == pytest.approx(math.sqrt(3), abs=1e-15) and b.r == pytest.approx(SQRT2)
    assert b.empirical_error == 0.5  # the tie (margin 0) counts as an error
    assert b.total == pytest.approx(expect, abs=1e-12)


def test_margin_bound_three_classes_and_rho_choice_hand():
    z = np.repeat(np.eye(3), 33, axis=0)
    y = np.repeat(np.array([0, 1, 0]), 33)  # the third point is misclassified
    w = np.eye(3)  # margins 1, 1, -1
    rhos = [0.5, 1.0, 4.0]
    b = B.margin_bound(z, y, w, delta=0.05, rho_grid=rhos, lambda_grid=[1.0], form="data_free")
    d = 0.05 / 3
    conf = math.sqrt(math.log(1 / d) / (2 * 99))
    ramps = {0.5: 1 / 3, 1.0: 1 / 3, 4.0: (0.75 + 0.75 + 1) / 3}
    totals = {rho: ramps[rho] + 4 * 3 * 1.0 * 1.0 / (rho * math.sqrt(99)) + conf for rho in rhos}
    best = min(totals, key=totals.get)
    assert b.rho == best and b.total == pytest.approx(totals[best], abs=1e-12)
    assert b.K == 3 and not b.binary


def test_margin_union_bound_bookkeeping_and_errors():
    b = B.margin_bound(Z100, Y100, W2, delta=0.05, form="data_free")
    assert b.grid_size == len(B.RHO_GRID) * len(B.MARGIN_LAMBDA_GRID)
    assert b.delta_per_point == pytest.approx(0.05 / b.grid_size, rel=1e-15)
    assert b.confidence == pytest.approx(math.sqrt(math.log(b.grid_size / 0.05) / 200), abs=1e-13)
    grid = [0.5, 1.0, 2.0]
    # Lambda_hat = ||w_1 - w_2||: exactly on a grid value, just above it, above the grid.
    on = B.margin_bound(Z100, Y100, np.array([[0.5, 0.0], [-0.5, 0.0]]), lambda_grid=grid)
    assert on.Lambda_hat == 1.0 and on.Lambda == 1.0
    above = B.margin_bound(Z100, Y100, np.array([[0.5 + 1e-9, 0.0], [-0.5, 0.0]]), lambda_grid=grid)
    assert above.Lambda == 2.0
    with pytest.raises(ValueError, match="exceeds the largest value of lambda_grid"):
        B.margin_bound(Z100, Y100, np.array([[1.5, 0.0], [-1.5, 0.0]]), lambda_grid=grid)
    with pytest.raises(ValueError, match="feature_norm_bound"):
        B.margin_bound(2 * Z100, Y100, W2, form="data_free")
    with pytest.raises(ValueError, match="binary"):
        B.margin_bound(np.eye(3), np.array([0, 1, 2]), np.eye(3), binary=True)
    with pytest.raises(ValueError, match="labels"):
        B.margin_bound(Z100, Y100 + 1, W2)
    with pytest.raises(ValueError, match="rho_grid"):
        B.margin_bound(Z100, Y100, W2, rho_grid=[0.0, 1.0])
    with pytest.raises(ValueError, match="delta"):
        B.margin_bound(Z100, Y100, W2, delta=0.0)
    with pytest.raises(ValueError, match="form"):
        B.margin_bound(Z100, Y100, W2, form="other")


def test_margin_bound_monotone_in_n_and_delta():
    totals = [
        B.margin_bound(np.repeat(_Z4, r, axis=0), np.repeat(_Y4, r), W2, form=form).total
        for form in ("sample", "data_free")
        for r in (25, 100, 400)
    ]
    assert totals[0] > totals[1] > totals[2] and totals[3] > totals[4] > totals[5]
    assert (
        B.margin_bound(Z100, Y100, W2, delta=0.001).total
        > B.margin_bound(Z100, Y100, W2, delta=0.05).total
    )


# --------------------------------------------------------------------------------------
# B3
# --------------------------------------------------------------------------------------


def test_maurer_xi_at_most_2_sqrt_n():
    # xi(n) = sum_k C(n,k) (k/n)^k (1-k/n)^(n-k) <= 2 sqrt(n): Maurer proves n >= 8; the
    # finite cases n = 1..7 (and more) by direct evaluation, so maurer_bound holds for n >= 1.
    for n in range(1, 301):
        terms = [
            math.exp(
                math.lgamma(n + 1)
                - math.lgamma(k + 1)
                - math.lgamma(n - k + 1)
                + (k * math.log(k / n) if k else 0.0)
                + ((n - k) * math.log(1 - k / n) if k < n else 0.0)
            )
            for k in range(n + 1)
        ]
        assert sum(terms) <= 2 * math.sqrt(n)


def test_gaussian_kl_hand_and_general_formula():
    expect = 1.5 * (0.25 - 1 - math.log(0.25)) + 2.0 / 2
    assert B.gaussian_kl(2.0, 3, 0.5, 1.0) == pytest.approx(expect, abs=1e-15)
    # Against the general KL(N(m, S1) || N(0, S0)) formula with explicit covariance matrices.
    rng = np.random.default_rng(0)
    for _ in range(5):
        D = int(rng.integers(1, 8))
        m = rng.normal(size=D)
        sq, sp = rng.uniform(0.1, 3.0, size=2)
        S1, S0 = sq**2 * np.eye(D), sp**2 * np.eye(D)
        S0inv = np.linalg.inv(S0)
        general = 0.5 * (
            np.trace(S0inv @ S1)
            + m @ S0inv @ m
            - D
            + np.linalg.slogdet(S0)[1]
            - np.linalg.slogdet(S1)[1]
        )
        assert B.gaussian_kl(float(m @ m), D, sq, sp) == pytest.approx(general, rel=1e-12)


def test_pac_bayes_hand_computed_certificate():
    # Margins 200 and sigma_q = 1e-3: no perturbed classifier errs, so the MC loss is 0.
    z = np.repeat(np.eye(2), 100, axis=0)
    y = np.repeat(np.array([0, 1]), 100)
    w = 100.0 * np.array([[1.0, -1.0], [-1.0, 1.0]])
    n, n_w, delta, frac = 200, 50, 0.05, 0.4
    pb = B.pac_bayes_kl_bound(
        z,
        y,
        w,
        seed=1,
        delta=delta,
        sigma_p_grid=[10.0],
        sigma_q_grid=[1e-3],
        n_weight_samples=n_w,
        delta_mc_fraction=frac,
    )
    assert pb.empirical == 0.0 and pb.empirical_deterministic == 0.0
    d_mc, d_pb = frac * delta, (1 - frac) * delta
    emp_up = 1 - math.exp(-math.log(2 / d_mc) / (n * n_w))  # kl(0 || p) = -ln(1 - p)
    assert pb.empirical_upper == pytest.approx(emp_up, abs=1e-11)
    kl = (4 / 2) * (1e-8 - 1 - math.log(1e-8)) + 40000.0 / (2 * 100.0)
    assert pb.kl == pytest.approx(kl, rel=1e-13) and pb.D == 4 and pb.weight_norm == 200.0
    c = (kl + math.log(2 * math.sqrt(n) / d_pb)) / n
    assert pb.complexity + pb.confidence == pytest.approx(c, rel=1e-13)
    # total solves kl(emp_up || total) = c with total >= emp_up (the defining equation).
    assert pb.total > pb.empirical_upper
    assert B.kl_bernoulli(pb.empirical_upper, pb.total) == pytest.approx(c, rel=1e-8)
    assert pb.total_deterministic == 2 * pb.total
    assert (pb.delta_mc, pb.delta_pac_bayes) == pytest.approx((d_mc, d_pb))


def _gaussian_task(rng, n, K=3, d=5, sep=2.5):
    means = sep * np.eye(K, d)
    y = rng.integers(0, K, size=n)
    x = means[y] + rng.normal(size=(n, d))
    return x / np.linalg.norm(x, axis=1, keepdims=True), y


def test_pac_bayes_and_margin_bounds_on_separable_task_hold_on_fresh_data():
    rng = np.random.default_rng(3)
    z, y = _gaussian_task(rng, 600)
    # Nearest-class-mean probe, scaled (a probe fitted on the training sample).
    w = 8.0 * np.stack([z[y == c].mean(0) for c in range(3)])
    pb = B.pac_bayes_kl_bound(z, y, w, seed=0, n_weight_samples=300)
    assert pb.empirical < pb.empirical_upper < pb.total < 1.0
    assert pb.total_deterministic == 2 * pb.total
    mb = B.margin_bound(z, y, w, form="sample")
    z_test, y_test = _gaussian_task(np.random.default_rng(4), 20_000)
    err = float(np.mean(np.argmax(z_test @ w.T, axis=1) != y_test))
    assert err < 0.2  # a working classifier
    assert B.holds_on_test_set(pb.total_deterministic, err, 20_000, 1e-3).holds
    assert B.holds_on_test_set(mb.total, err, 20_000, 1e-3).holds
    # Same seed, same numbers; another seed, another Monte Carlo estimate.
    again = B.pac_bayes_kl_bound(z, y, w, seed=0, n_weight_samples=300)
    assert again == pb


def test_split_prior_pac_bayes_hand_computed_certificate():
    """B3p arithmetic: margins 200, sigma about 2, so no perturbed classifier errs (MC loss 0);
    posterior centre c W_hat with c = <W_hat, W_0> / ||W_hat||^2, KL = ||c W_hat - W_0||^2 /
    (2 sigma^2), sigma = kappa ||W_0|| / sqrt(D), union over the G kappas in both terms."""
    z = np.repeat(np.eye(2), 100, axis=0)
    y = np.repeat(np.array([0, 1]), 100)
    w = 100.0 * np.array([[1.0, -1.0], [-1.0, 1.0]])
    w0 = np.array([[99.0, -101.0], [-100.0, 99.0]])
    n, n_w, delta, frac, kappas = 200, 50, 0.05, 0.4, [1e-2, 2e-2]
    pb = B.pac_bayes_split_prior_bound(
        z,
        y,
        w,
        prior_weights=w0,
        n_prior=77,
        seed=1,
        delta=delta,
        kappa_grid=kappas,
        n_weight_samples=n_w,
        delta_mc_fraction=frac,
    )
    assert pb.empirical == 0.0 and pb.empirical_deterministic == 0.0 and pb.n == n
    c = float(np.sum(w * w0) / np.sum(w * w))
    assert pb.scale == pytest.approx(c, rel=1e-14) and c == pytest.approx(39900 / 40000)
    d_mc, d_pb, G = frac * delta, (1 - frac) * delta, 2
    emp_up = 1 - math.exp(-math.log(G / d_mc) / (n * n_w))  # kl(0 || p) = -ln(1 - p), one-sided
    assert pb.empirical_upper == pytest.approx(emp_up, abs=1e-11)
    sigma = 2e-2 * np.linalg.norm(w0) / 2.0  # the larger kappa: smaller KL
    kl = float(np.sum((c * w - w0) ** 2)) / (2 * sigma**2)
    assert pb.kappa == 2e-2 and pb.sigma == pytest.approx(sigma, rel=1e-14)
    assert pb.kl == pytest.approx(kl, rel=1e-12)
    cst = (kl + math.log(2 * math.sqrt(n) * G / d_pb)) / n
    assert pb.complexity + pb.confidence == pytest.approx(cst, rel=1e-12)
    assert B.kl_bernoulli(pb.empirical_upper, pb.total) == pytest.approx(cst, rel=1e-8)
    assert pb.total_deterministic == 2 * pb.total and pb.n_prior == 77
    # a prior pointing away from W_hat: c <= 0 is replaced by c = 1 (any c > 0 is valid)
    assert (
        B.pac_bayes_split_prior_bound(
            z, y, w, prior_weights=-w0, n_prior=1, seed=1, n_weight_samples=5
        ).scale
        == 1.0
    )
    with pytest.raises(ValueError, match="prior_bias"):
        B.pac_bayes_split_prior_bound(z, y, w, np.zeros(2), prior_weights=w0, n_prior=1, seed=1)
    with pytest.raises(ValueError, match="n_prior"):
        B.pac_bayes_split_prior_bound(z, y, w, prior_weights=w0, n_prior=0, seed=1)


def test_split_prior_bound_holds_for_the_stochastic_probe_on_fresh_data():
    """B3p with the prior fitted on S0 and W_hat on all the data: its bound on L(Q) is above
    the stochastic probe's held-out error (one fresh draw per use), and the measured
    deterministic error is below 2 L(Q)."""
    rng = np.random.default_rng(3)
    z, y = _gaussian_task(rng, 2000)
    h = 1000

    def means(zz, yy):
        return 8.0 * np.stack([zz[yy == c].mean(0) for c in range(3)])

    w, w0 = means(z, y), means(z[:h], y[:h])  # W_0 sees S0 only
    pb = B.pac_bayes_split_prior_bound(
        z[h:], y[h:], w, prior_weights=w0, n_prior=h, seed=0, n_weight_samples=200
    )
    z_t, y_t = _gaussian_task(np.random.default_rng(4), 20_000)
    stoch = B.stochastic_error_rate(z_t, y_t, pb.scale * w, sigma=pb.sigma, seed=5, n_draws=5)
    det = B.stochastic_error_rate(z_t, y_t, w, sigma=0.0, seed=5)
    assert det == float(np.mean(np.argmax(z_t @ w.T, 1) != y_t))
    assert det <= stoch + 0.01  # noise only adds errors here
    assert B.holds_on_test_set(pb.total, stoch, 20_000, 1e-3).holds
    assert B.holds_on_test_set(pb.total_deterministic, det, 20_000, 1e-3).holds
    # the split prior is close to W_hat: tighter than the zero-mean prior on the same data
    old = B.pac_bayes_kl_bound(z, y, w, seed=0, n_weight_samples=200)
    assert pb.total < old.total < 1


def test_derandomisation_wrong_argmax_stays_wrong_with_prob_at_least_half():
    rng = np.random.default_rng(7)
    n_draws, checked = 4000, 0
    for K in (2, 3, 5):
        w = rng.normal(size=(K, 4))  # augmented weights: last column = bias
        z = np.concatenate([rng.normal(size=(300, 3)), np.ones((300, 1))], axis=1)
        y = rng.integers(0, K, size=300)
        s = z @ w.T
        margin = s[np.arange(300), y] - np.max(np.where(np.eye(K)[y] > 0, -np.inf, s), axis=1)
        wrong = np.flatnonzero(margin <= 0)
        wrong = wrong[np.argsort(-margin[wrong])][:15]  # the closest calls: hardest case
        for sigma_q in (0.1, 1.0, 10.0):
            eps = rng.normal(size=(n_draws, K, 4))
            for i in wrong:
                scores = s[i] + sigma_q * eps @ z[i]  # (n_draws, K)
                others = np.delete(scores, y[i], axis=1).max(axis=1)
                freq = np.mean(scores[:, y[i]] - others <= 0)
                # Hoeffding with a union over at most 135 checks at total level 1e-6.
                assert freq >= 0.5 - math.sqrt(math.log(135 / 1e-6) / (2 * n_draws))
                checked += 1
    assert checked >= 100


def test_pac_bayes_validation_and_monotonicity():
    z, y, w = Z100, Y100, 3 * W2
    with pytest.raises(ValueError, match="delta_mc_fraction"):
        B.pac_bayes_kl_bound(z, y, w, seed=0, delta_mc_fraction=1.0)
    with pytest.raises(ValueError, match="n_weight_samples"):
        B.pac_bayes_kl_bound(z, y, w, seed=0, n_weight_samples=0)
    with pytest.raises(ValueError, match="sigma_p_grid"):
        B.pac_bayes_kl_bound(z, y, w, seed=0, sigma_p_grid=[1.0, 1.0])
    assert B.maurer_bound(0.1, 5.0, 100, 0.05) > B.maurer_bound(0.1, 5.0, 1000, 0.05)
    assert B.maurer_bound(0.1, 5.0, 100, 0.001) > B.maurer_bound(0.1, 5.0, 100, 0.05)
    assert B.sample_convergence_upper(0.1, 100, 0.05) > B.sample_convergence_upper(0.1, 1000, 0.05)


# --------------------------------------------------------------------------------------
# B4
# --------------------------------------------------------------------------------------


def test_tuple_split():
    assert B.tuple_split(1000, 64) == 15 and B.tuple_split(64, 64) == 1
    with pytest.raises(ValueError, match="no complete tuple"):
        B.tuple_split(63, 64)
    with pytest.raises(ValueError, match="tuple_size"):
        B.tuple_split(10, 0)


def test_distillation_bound_hand():
    # lambda_b = 1.5 -> Lambda = 2 on the grid (0.5, 1, 2, 4); delta' = 0.05 / 4.
    grid = [0.5, 1.0, 2.0, 4.0]
    b = B.distillation_bound(0.8, 50, 4, 0.2, 1.5, 1.0, 8, 0.05, lambda_grid=grid)
    b_range = math.log(1 + 3 * math.exp(2 * 2.0 * 1.0 / 0.2))
    comp = 4 * SQRT2 * 2.0 * 1.0 * math.sqrt(8) / (0.2 * math.sqrt(50))
    conf = b_range * math.sqrt(math.log(4 / 0.05) / (2 * 50))
    assert b.name == "B4" and b.Lambda == 2.0 and b.Lambda_hat == 1.5
    assert b.lipschitz == pytest.approx(2 / (0.2 * 2), abs=1e-15)
    assert b.loss_range == pytest.approx(b_range, abs=1e-12)
    assert b.complexity == pytest.approx(comp, abs=1e-12)
    assert b.total == pytest.approx(0.8 + comp + conf, abs=1e-12)
    assert b.delta_per_point == 0.05 / 4 and b.sum_sq_norms == 50 * 4 * 1.0
    # CMD: same constants.
    assert B.distillation_bound(
        0.8, 50, 4, 0.2, 1.5, 1.0, 8, 0.05, loss="cmd", lambda_grid=grid
    ).total == pytest.approx(b.total, abs=1e-15)
    # Sample form with S = 150 <= 200.
    s = B.distillation_bound(
        0.8, 50, 4, 0.2, 1.5, 1.0, 8, 0.05, form="sample", sum_sq_norms=150.0, lambda_grid=grid
    )
    rad = SQRT2 * (2 / (0.2 * 2)) * 2.0 * math.sqrt(8 * 150.0) / 50
    expect = 0.8 + 2 * rad + 3 * b_range * math.sqrt(math.log(2 * 4 / 0.05) / (2 * 50))
    assert s.rademacher == pytest.approx(rad, abs=1e-12)
    assert s.total == pytest.approx(expect, abs=1e-12)
    # Symmetric CLIP form: L = (1/2)(2/(tau sqrt N) + sqrt2/tau).
    sym = B.distillation_bound(
        0.8, 50, 4, 0.2, 1.5, 1.0, 8, 0.05, loss="cmc_symmetric", lambda_grid=grid
    )
    lip = 0.5 * (2 / (0.2 * 2) + SQRT2 / 0.2)
    assert sym.lipschitz == pytest.approx(lip, abs=1e-13)
    assert sym.complexity == pytest.approx(
        2 * SQRT2 * lip * 2.0 * math.sqrt(8 * 200.0) / 50, abs=1e-12
    )


def test_tuple_bounds_union_bookkeeping_and_validation():
    grid = [0.5, 1.0, 2.0]
    assert B.distillation_bound(0.5, 10, 4, 1.0, 1.0, 1.0, 2, lambda_grid=grid).Lambda == 1.0
    assert B.ssl_bound(0.5, 10, 4, 1.0, 1.0 + 1e-12, 1.0, 2, lambda_grid=grid).Lambda == 2.0
    b = B.distillation_bound(0.5, 10, 4, 1.0, 1.0, 1.0, 2)
    assert b.grid_size == len(B.LAMBDA_GRID) and b.delta_per_point == 0.05 / len(B.LAMBDA_GRID)
    for fn in (B.distillation_bound, B.ssl_bound):
        with pytest.raises(ValueError, match="exceeds the largest value of lambda_grid"):
            fn(0.5, 10, 4, 1.0, 2.5, 1.0, 2, lambda_grid=grid)
        with pytest.raises(ValueError, match="tau"):
            fn(0.5, 10, 4, 0.0, 1.0, 1.0, 2)
        with pytest.raises(ValueError, match="n_tuples"):
            fn(0.5, 0, 4, 1.0, 1.0, 1.0, 2)
        with pytest.raises(ValueError, match="delta"):
            fn(0.5, 10, 4, 1.0, 1.0, 1.0, 2, 1.5)
        with pytest.raises(ValueError, match="emp_loss"):
            fn(100.0, 10, 4, 1.0, 1.0, 1.0, 2)
        with pytest.raises(ValueError, match="sum_sq_norms"):
            fn(0.5, 10, 4, 1.0, 1.0, 1.0, 2, form="sample")
        with pytest.raises(ValueError, match="sum_sq_norms"):
            fn(0.5, 10, 4, 1.0, 1.0, 1.0, 2, form="sample", sum_sq_norms=1e6)
        with pytest.raises(ValueError, match="feature_dim"):
            fn(0.5, 10, 4, 1.0, 1.0, 1.0, 0)
    with pytest.raises(ValueError, match="loss"):
        B.distillation_bound(0.5, 10, 4, 1.0, 1.0, 1.0, 2, loss="l2")


@pytest.mark.parametrize("fn", [B.distillation_bound, B.ssl_bound])
def test_tuple_bounds_monotone_in_n_and_delta(fn):
    totals = [fn(0.7, n_t, 8, 0.5, 1.0, 1.0, 16).total for n_t in (10, 100, 1000, 10_000)]
    assert all(a > b for a, b in zip(totals, totals[1:]))
    assert (
        fn(0.7, 100, 8, 0.5, 1.0, 1.0, 16, 1e-4).total
        > fn(0.7, 100, 8, 0.5, 1.0, 1.0, 16, 0.05).total
    )
    # O(1/sqrt(n_t)): the excess over the empirical loss scales exactly as n_t^(-1/2).
    ex = [fn(0.7, n_t, 8, 0.5, 1.0, 1.0, 16).total - 0.7 for n_t in (100, 400)]
    assert ex[0] / ex[1] == pytest.approx(2.0, rel=1e-12)


# Independent float64 numpy losses (log-sum-exp), for the Lipschitz checks.


def _cmc_b_to_a(u, za, tau):
    logits = u @ za.T / tau
    return np.mean(logsumexp(logits, axis=1) - np.diagonal(logits))


def _cmc_a_to_b(u, za, tau):
    logits = za @ u.T / tau
    return np.mean(logsumexp(logits, axis=1) - np.diagonal(logits))


def _cmd(u, za, tau, p_a):
    logits = u @ za.T / tau
    logp = logits - logsumexp(logits, axis=1, keepdims=True)
    return -np.mean(np.sum(p_a * logp, axis=1))


def _infonce(u, v, tau):
    """Symmetric CLIP InfoNCE (O1), (1/2N) sum_i [CE(row i, i) + CE(column i, i)].

    u, v (..., N, k) -> (...): batched over leading axes.
    """
    s = np.einsum("...ik,...jk->...ij", u, v) / tau
    diag = np.diagonal(s, axis1=-2, axis2=-1)
    rows = logsumexp(s, axis=-1) - diag
    cols = logsumexp(s, axis=-2) - diag
    return 0.5 * (rows.mean(-1) + cols.mean(-1))


def _infonce_grad(u, v, tau):
    s = np.einsum("...ik,...jk->...ij", u, v) / tau
    N = u.shape[-2]
    g = (softmax(s, axis=-1) + softmax(s, axis=-2) - 2 * np.eye(N)) / (2 * N)
    return g @ v / tau, np.swapaxes(g, -1, -2) @ u / tau


def _ball(x, R):
    norms = np.linalg.norm(x, axis=-1, keepdims=True)
    return x * np.minimum(1.0, R / np.maximum(norms, 1e-300))


def _random_in_ball(rng, shape, R):
    x = rng.normal(size=shape)
    x /= np.linalg.norm(x, axis=-1, keepdims=True)
    # Half the rows on the sphere (where the constant is approached), half inside.
    radii = np.where(rng.random(shape[:-1]) < 0.5, 1.0, rng.random(shape[:-1]))
    return R * radii[..., None] * x


def _norm2(*arrays):
    """Euclidean norm of the stacked arrays, per leading (batch) index."""
    return np.sqrt(sum(np.sum(a**2, axis=(-2, -1)) for a in arrays))


def test_infonce_gradient_matches_finite_differences():
    rng = np.random.default_rng(0)
    u, v = rng.normal(size=(2, 5, 3))
    gu, gv = _infonce_grad(u, v, 0.7)
    h = 1e-6
    for which, g in ((0, gu), (1, gv)):
        for idx in np.ndindex(u.shape):
            e = np.zeros_like(u)
            e[idx] = h
            plus = (u + e, v) if which == 0 else (u, v + e)
            minus = (u - e, v) if which == 0 else (u, v - e)
            fd = (_infonce(*plus, 0.7) - _infonce(*minus, 0.7)) / (2 * h)
            assert fd == pytest.approx(g[idx], abs=1e-7)


def test_b5_infonce_lipschitz_never_exceeded():
    rng = np.random.default_rng(11)
    T = 200  # configurations per (N, k, tau, R), batched
    for N in (2, 3, 4, 6, 9, 16):
        for k in (1, 3):
            for tau, R in ((0.05, 1.0), (0.5, 1.0), (2.0, 3.0), (1.0, 0.3)):
                lip = B.infonce_tuple_lipschitz(N, tau, R)
                u, v = _random_in_ball(rng, (2, T, N, k), R)
                gu, gv = _infonce_grad(u, v, tau)
                gnorm = _norm2(gu, gv)
                assert np.all(gnorm <= lip * (1 + 1e-9))
                # Steps along the gradient (adversarial) and along random directions, of
                # several sizes; perturbed features are projected back into the ball.
                scale = np.maximum(gnorm, 1e-300)[:, None, None]
                ru, rv = rng.normal(size=(2, T, N, k))
                base = _infonce(u, v, tau)
                for du, dv in ((gu / scale, gv / scale), (ru, rv)):
                    for step in (1e-4, 1e-2, 0.3 * R):
                        u2, v2 = _ball(u + step * du, R), _ball(v + step * dv, R)
                        change = np.abs(_infonce(u2, v2, tau) - base)
                        assert np.all(change <= lip * _norm2(u2 - u, v2 - v) * (1 + 1e-9) + 1e-12)


def test_b5_infonce_lipschitz_attained_at_n_2():
    # u = (R, -R), v = (-R, R) (k = 1): every positive logit is the smallest, both softmaxes
    # saturate on the off-diagonal, G = [[-1, 1], [1, -1]] / 2 and |grad| = 2R/tau = L_2
    # up to O(exp(-2R^2/tau)).
    R, tau = 1.0, 0.02
    u, v = np.array([[R], [-R]]), np.array([[-R], [R]])
    gu, gv = _infonce_grad(u, v, tau)
    assert math.sqrt(np.sum(gu**2) + np.sum(gv**2)) == pytest.approx(
        B.infonce_tuple_lipschitz(2, tau, R), rel=1e-12
    )


def test_b5_infonce_range():
    rng = np.random.default_rng(5)
    for N, tau, R in ((2, 0.1, 1.0), (8, 1.0, 2.0), (5, 0.5, 0.7)):
        b = B.infonce_loss_range(N, tau, R)
        assert b == pytest.approx(math.log(1 + (N - 1) * math.exp(2 * R * R / tau)), rel=1e-12)
        for _ in range(50):
            u, v = _random_in_ball(rng, (2, N, 3), R)
            assert 0.0 <= _infonce(u, v, tau) <= b
        # b is the sharp range of one cross-entropy term: the row term of anchor 0 attains
        # it at u_0 = R e, v_0 = -R e, v_j = R e (j != 0).
        e = np.eye(3)[0]
        u = np.tile(R * e, (N, 1))
        v = np.tile(R * e, (N, 1))
        v[0] = -R * e
        row0 = logsumexp(u[0] @ v.T / tau) - u[0] @ v[0] / tau
        assert row0 == pytest.approx(b, rel=1e-12)


def test_b4_distillation_lipschitz_never_exceeded():
    rng = np.random.default_rng(12)
    for N in (2, 4, 10):
        for tau in (0.05, 0.5, 2.0):
            for _trial in range(30):
                za = _random_in_ball(rng, (N, 3), 1.0)
                p_a = softmax(za @ za.T / rng.uniform(0.05, 1.0), axis=1)
                u = rng.normal(size=(N, 3)) * rng.uniform(0.1, 5.0)  # any student norm
                d = rng.normal(size=(N, 3))
                d *= rng.uniform(1e-4, 1.0) / np.linalg.norm(d)
                for loss, f in (
                    ("cmc", lambda x: _cmc_b_to_a(x, za, tau)),
                    ("cmd", lambda x: _cmd(x, za, tau, p_a)),
                    (
                        "cmc_symmetric",
                        lambda x: 0.5 * (_cmc_b_to_a(x, za, tau) + _cmc_a_to_b(x, za, tau)),
                    ),
                ):
                    lip = B.distillation_tuple_lipschitz(N, tau, loss)
                    assert abs(f(u + d) - f(u)) <= lip * np.linalg.norm(d) * (1 + 1e-9) + 1e-12


def test_ssl_bound_hand():
    # N = 4: c_N = min(sqrt2, 1 + 1/2) = sqrt2; lambda_a = 0.9 -> Lambda = 1, R = 2.
    grid = [0.5, 1.0, 2.0]
    b = B.ssl_bound(1.5, 30, 4, 0.5, 0.9, 2.0, 3, 0.05, lambda_grid=grid)
    lip = (2.0 / 0.5) * (math.sqrt(2 / 4) + SQRT2 / SQRT2)
    b_range = math.log(1 + 3 * math.exp(2 * 4.0 / 0.5))
    s_max = 30 * 8 * 4.0
    rad = SQRT2 * lip * 1.0 * math.sqrt(3 * s_max) / 30
    conf = b_range * math.sqrt(math.log(3 / 0.05) / 60)
    assert b.name == "B5" and b.Lambda == 1.0 and b.inputs_per_tuple == 8
    assert b.lipschitz == pytest.approx(lip, abs=1e-14)
    assert b.loss_range == pytest.approx(b_range, abs=1e-12)
    assert b.total == pytest.approx(1.5 + 2 * rad + conf, abs=1e-12)
    # The closed data-free form 4 l_N sqrt(N) Lambda^2 r^2 sqrt(k) / (tau sqrt(n_t)).
    l_n = math.sqrt(2 / 4) + SQRT2 / SQRT2
    closed = 4 * l_n * 2 * 1.0 * 4.0 * math.sqrt(3) / (0.5 * math.sqrt(30))
    assert b.complexity == pytest.approx(closed, rel=1e-13)
    # N = 16: c_N = 1 + 1/4 < sqrt2.
    assert B.infonce_tuple_lipschitz(16, 1.0, 1.0) == pytest.approx(
        math.sqrt(2 / 16) + 1.25 / SQRT2, abs=1e-15
    )
    s = B.ssl_bound(
        1.5, 30, 4, 0.5, 0.9, 2.0, 3, 0.05, form="sample", sum_sq_norms=500.0, lambda_grid=grid
    )
    rad_s = SQRT2 * lip * math.sqrt(3 * 500.0) / 30
    expect = 1.5 + 2 * rad_s + 3 * b_range * math.sqrt(math.log(2 * 3 / 0.05) / 60)
    assert s.total == pytest.approx(expect, abs=1e-12)


# --------------------------------------------------------------------------------------
# B6
# --------------------------------------------------------------------------------------


def test_end_to_end_report_rows_and_checks():
    n = 10_000
    s = math.sqrt(math.log(1 / 0.05) / (2 * n))
    measured = {
        "err_B": 0.21,
        "err_A_head": 0.10,
        "bayes_A": 0.05,
        "bayes_B": 0.15,
        "tv_latent": 0.12,
        "tv_features_upper": 0.10,
        "b2_total": 0.9,
        "b3_total": 0.3,
        "err_B_stochastic": 0.22,
    }
    rows = {r.name: r for r in B.end_to_end_report(measured, n)}
    assert set(rows) == {"B2", "B3", "B3 stochastic", "B1b", "B1a", "floor"}
    assert rows["B3"].value == 0.6 and rows["B3"].holds and rows["B3"].holds_strict
    assert rows["B1b"].value == pytest.approx(0.2) and rows["B1b"].slack == pytest.approx(2 * s)
    assert rows["B1b"].holds and not rows["B1b"].holds_strict  # 0.21 within 0.2 + 2s
    assert rows["B1a"].value == pytest.approx(0.17) and rows["B1a"].holds
    assert rows["floor"].kind == "lower" and rows["floor"].holds
    # A violated bound is reported as such.
    bad = B.end_to_end_report(
        {"err_B": 0.5, "b2_total": 0.4, "bayes_A": 0.05, "bayes_B": 0.3, "tv_latent": 0.1}, n
    )
    assert [(r.name, r.holds) for r in bad] == [("B2", False), ("B1a", False), ("floor", True)]
    assert bad[0].as_dict()["measured"] == 0.5
    with pytest.raises(ValueError, match="err_B"):
        B.end_to_end_report({"b2_total": 0.4}, n)
    # NaN marks a quantity that does not apply: its rows are left out, not failed.
    rows = B.end_to_end_report(
        {
            "err_B": 0.2,
            "b2_total": float("nan"),
            "bayes_A": 0.1,
            "bayes_B": 0.15,
            "tv_latent": float("nan"),
        },
        n,
    )
    assert [r.name for r in rows] == ["floor"]


def test_as_dict_rows_are_flat():
    row = B.distillation_bound(0.5, 10, 4, 1.0, 1.0, 1.0, 2).as_dict()
    assert row["bound"] == "B4" and row["total"] > row["empirical"] and "vacuous" in row
    assert all(np.isscalar(v) for v in row.values())


# ---- B4n: normalised student features (per-pair PAC-Bayes-kl) -------------------------------


def test_b4n_candidate_mgf_upper_covers_the_exact_mgf_on_the_sphere():
    """Uniform z on S^2: M(u) = E exp(u.z/tau) = sinh(s)/s with s = 1/tau, for every unit u."""
    rng = np.random.default_rng(0)
    tau = 0.5
    bank = rng.standard_normal((20_000, 3))
    bank /= np.linalg.norm(bank, axis=1, keepdims=True)
    u = rng.standard_normal((200, 3))
    u /= np.linalg.norm(u, axis=1, keepdims=True)
    exact = math.sinh(1 / tau) * tau
    up = B.candidate_mgf_upper(u, bank, tau, 0.05)
    assert np.all(up >= exact)
    assert np.all(up <= 1.5 * exact)  # informative at this bank size
    # hand arithmetic: a bank of copies of u gives fbar = 1, so the cover term is
    # e^{(1 + eps)/tau} > e^{1/tau}; M+ is capped at e^{1/tau}, which bounds M(u) for every
    # unit u and keeps B4n's per-pair loss in [0, b]
    one = np.array([[1.0, 0.0, 0.0]])
    assert B.candidate_mgf_upper(one, np.repeat(one, 10, 0), tau, 0.05, eps=0.01)[
        0
    ] == pytest.approx(math.exp(1.0 / tau))
    assert np.all(up <= math.exp(1.0 / tau))
    small = B.candidate_mgf_upper(u, bank[:5], tau, 0.05)  # a tiny bank: the cap acts
    assert np.all(small <= math.exp(1.0 / tau)) and np.all(small >= exact)
    with pytest.raises(ValueError, match="unit"):
        B.candidate_mgf_upper(2 * one, one, tau, 0.05)


def test_b4n_jensen_over_candidates_upper_bounds_the_anchor_loss():
    """Lemma 1: E over i.i.d. candidates of the CMC anchor loss <= log(1 + (N-1) M(u) e^{-a})."""
    rng = np.random.default_rng(1)
    tau, N, k = 0.2, 16, 4
    cands = rng.standard_normal((200_000, k))
    cands /= np.linalg.norm(cands, axis=1, keepdims=True)
    for _ in range(3):
        u, z = rng.standard_normal(k), rng.standard_normal(k)
        u, z = u / np.linalg.norm(u), z / np.linalg.norm(z)
        a = u @ z / tau
        M = np.mean(np.exp(cands @ u / tau))
        others = cands[: (len(cands) // (N - 1)) * (N - 1)].reshape(-1, N - 1, k)
        loss = np.logaddexp(a, np.logaddexp.reduce(others @ u / tau, axis=1)) - a
        assert loss.mean() <= math.log1p((N - 1) * M * math.exp(-a)) + 1e-3


def test_b4n_terms_by_hand():
    rng = np.random.default_rng(2)
    n, d, k, N, tau, delta = 400, 6, 3, 8, 0.5, 0.05
    x = rng.standard_normal((n, d))
    W = rng.standard_normal((k, d))
    Wp = W + 0.1 * rng.standard_normal((k, d))
    z = x @ W.T
    z /= np.linalg.norm(z, axis=1, keepdims=True)
    nb = B.normalized_distillation_bound(
        x, z, W, Wp, z, tau=tau, tuple_size=N, seed=0, delta=delta, kappa_grid=(0.25, 0.5)
    )
    D, G = W.size, 2
    c = np.sum(W * Wp) / np.sum(W * W)
    sigma = nb.kappa * np.linalg.norm(Wp) / math.sqrt(D)
    assert nb.centre_scale == pytest.approx(c)
    assert nb.sigma == pytest.approx(sigma) and nb.nu == pytest.approx(sigma / c)
    assert nb.kl == pytest.approx(np.sum((c * W - Wp) ** 2) / (2 * sigma**2))
    assert nb.loss_range == pytest.approx(math.log(1 + (N - 1) * math.exp(2 / tau)))
    assert nb.confidence == pytest.approx(math.log(2 * math.sqrt(n) * G / (delta / 3)) / n)
    b = nb.loss_range
    up = b * B.kl_inverse_upper(nb.empirical / b, math.log(G / (delta / 3)) / (n * 2))
    assert nb.empirical_upper == pytest.approx(up)
    assert nb.total == pytest.approx(b * B.kl_inverse_upper(up / b, nb.kl / n + nb.confidence))
    assert nb.empirical_exact_mgf <= nb.empirical
    assert nb.delta_mgf + nb.delta_mc + nb.delta_pac_bayes == pytest.approx(delta)
    with pytest.raises(ValueError, match="inner product"):
        B.normalized_distillation_bound(x, z, W, -W, z, tau=tau, tuple_size=N, seed=0)


@pytest.mark.slow
def test_b4n_holds_on_a_trained_normalised_student():
    """The certified stochastic-student bound is above the measured population loss."""
    import jax

    from cmcd_theory import worlds
    from cmcd_theory.certify import certify
    from cmcd_theory.learn.pipeline import PipelineConfig, ground_truth, run_pipeline_jit
    from cmcd_theory.learn.training import TrainConfig

    cfg = PipelineConfig(
        M=512,
        m=1024,
        n=128,
        n_pop=2048,
        n_test=2000,
        tuple_size=64,
        ssl=TrainConfig(steps=100, batch_size=128, tau=0.1),
        distill=TrainConfig(steps=100, batch_size=128, tau=0.1),
        probe_steps=50,
    )
    w = worlds.make_world(worlds.WorldConfig())
    out = jax.device_get(run_pipeline_jit(w, jax.random.key(0), "cmc", cfg, 0.0))
    arts = out.pop("artifacts")
    row = {kk: float(v) for kk, v in out.items()}
    row.update(ground_truth(w.config, 0.0))
    res = certify(w, cfg, "cmc", 0.0, 0, row, arts, parts=("B4",))
    wide = res["wide"]
    assert np.isfinite(wide["b4n_total"]) and np.isnan(wide["b4_total"])
    assert wide["b4n_pop_loss_stochastic"] <= wide["b4n_total"]
    assert row["distill_pop_loss"] <= wide["b4n_total"]
    assert res["spent"]["b4n_total"] == pytest.approx(0.05)


def test_stochastic_errors_match_the_margin_formula_and_memo_returns_copies():
    """B3's Monte Carlo term: the in-place margin count equals the count of
    ``_margins(W_hat z + s ||z|| xi) <= 0`` over the same draws, for every sigma (ties
    included), and a plain seed is memoised without sharing the returned array."""
    from cmcd_theory import bounds as B

    rng = np.random.default_rng(3)
    n, K, d = 40, 4, 3
    z = rng.normal(size=(n, d))
    y = rng.integers(0, K, n)
    w = rng.normal(size=(K, d))
    w[1] = w[0]  # exact ties between two classes' scores
    sig = np.array([0.0, 0.3, 2.0])
    got = B._stochastic_errors(z, y, w, sig, 11, 7, 3)
    xi = np.random.default_rng(11).standard_normal((7, n, K))
    noise = np.linalg.norm(z, axis=1)[None, :, None] * xi
    want = [np.mean(B._margins((z @ w.T)[None] + s * noise, y) <= 0) for s in sig]
    np.testing.assert_array_equal(got, want)
    got[:] = -1.0  # the memo hands out copies
    np.testing.assert_array_equal(B._stochastic_errors(z, y, w, sig, 11, 7, 3), want)
    assert B._memo_key(z, y, w, sig, np.random.default_rng(11), 7, 3) is None
