"""The fast paths of B3 / B3p and the kl tools give the numbers of the plain computation.

Checked against independent plain implementations (the reference arithmetic of the weight
draws, one kl inversion per call, each bound alone): the batched kl inversions
(``kl._kl_steps``, ``pac_bayes_bounds``), the kept streams of weight draws (a second count
over the same draws, across probes and calls), both layouts of the Monte Carlo blocks (few or
many wrong points), the Monte Carlo started ahead (``prefetch_monte_carlo``), and the checks
the public functions keep.
"""

from __future__ import annotations

import math
import os
import time

import numpy as np
import pytest

from cmcd_theory import bounds as B
from cmcd_theory.bounds import kl, pac_bayes, pac_bayes_mc


def _plain_errors(z, y, w, sigmas, seed, n_draws):
    """Error rates per sigma of ``n_draws`` draws per point, all drawn at once: the scores
    ``W z + s ||z|| xi`` and an error where the label's score is not above every other."""
    xi = np.random.default_rng(seed).standard_normal((n_draws, z.shape[0], w.shape[0]))
    noise = np.linalg.norm(z, axis=1)[None, :, None] * xi
    return np.array([np.mean(B._margins((z @ w.T)[None] + s * noise, y) <= 0) for s in sigmas])


def _data(n, K, d, seed, scale):
    rng = np.random.default_rng(seed)
    z = rng.standard_normal((n, d))
    y = rng.integers(0, K, n)
    w = scale * rng.standard_normal((K, d))
    return z, y, w


@pytest.fixture(autouse=True)
def _fresh_caches():
    pac_bayes._MC_MEMO.clear()
    pac_bayes_mc._KEPT.clear()
    yield
    pac_bayes._MC_MEMO.clear()
    pac_bayes_mc._KEPT.clear()


@pytest.mark.parametrize("agree", [0.0, 0.6, 0.97])  # many, some and few wrong points
def test_counts_equal_the_plain_draws_in_both_block_layouts(agree):
    z, y, w = _data(600, 4, 5, seed=int(agree * 100), scale=2.0)
    w[2] = w[1]  # exact ties: points counted by the reference arithmetic
    fit = np.random.default_rng(1).random(600) < agree
    y[fit] = np.argmax(z @ w.T, axis=1)[fit]  # labels the probe gets right
    P = pac_bayes_mc._Points(z, y, w, 4.0)
    assert (P.block(0, 600)["wrong"] is None) == (4 * P.wrong.sum() > 600)
    assert P.exact.any() and P.right.any() and P.wrong.any()
    sig = np.r_[0.0, 0.05, 0.3, 1.0, 4.0]
    got = pac_bayes._stochastic_errors(z, y, w, sig, 5, 9, 4)
    np.testing.assert_array_equal(got, _plain_errors(z, y, w, sig, 5, 9))


def test_kept_draws_count_again_the_same_draws():
    """A second probe on the same points and seed counts the kept stream: the same numbers as
    drawing it afresh; the kept arrays cannot be changed."""
    z, y, w = _data(300, 3, 4, seed=1, scale=2.0)
    first = B.stochastic_error_rate(z, y, w, sigma=0.4, seed=[7, 5], n_draws=10)
    assert len(pac_bayes_mc._KEPT) == 1
    kept = next(iter(pac_bayes_mc._KEPT.values()))
    assert all(not xi.flags.writeable for xi in kept)
    again = B.stochastic_error_rate(z, y, 1.5 * w, sigma=0.7, seed=[7, 5], n_draws=10)
    pac_bayes_mc._KEPT.clear()
    fresh = B.stochastic_error_rate(z, y, 1.5 * w, sigma=0.7, seed=[7, 5], n_draws=10)
    assert again == fresh
    assert first == _plain_errors(z, y, w, [0.4], [7, 5], 10)[0]


def test_kept_streams_stay_within_their_budget(monkeypatch):
    monkeypatch.setattr(pac_bayes_mc, "KEPT_DRAWS_TOTAL", 2 * 300 * 10 * 3)
    z, y, w = _data(300, 3, 4, seed=2, scale=1.0)
    for seed in range(4):
        B.stochastic_error_rate(z, y, w, sigma=0.3, seed=seed, n_draws=10)
    assert len(pac_bayes_mc._KEPT) == 2  # the two most recent streams
    monkeypatch.setattr(pac_bayes_mc, "KEPT_DRAWS_MAX", 100)
    pac_bayes_mc._KEPT.clear()
    B.stochastic_error_rate(z, y, w, sigma=0.3, seed=9, n_draws=10)
    assert not pac_bayes_mc._KEPT  # too large to keep


def test_batched_kl_inversions_equal_one_call_each():
    rng = np.random.default_rng(3)
    q = np.r_[0.0, 1.0, 1e-300, 0.5, rng.random(30)]
    c = np.r_[0.1, 0.2, 3.0, np.inf, rng.exponential(0.2, 30)]
    grid = (rng.random(4)[:, None], rng.exponential(0.5, (4, 6)))

    def steps(*pairs):
        got = []
        for pair in pairs:
            got.append((yield pair))
        return got

    a, b = kl._kl_steps(steps((q, c), grid), steps((q[5:], 1e-4), (0.3, 0.05)))
    np.testing.assert_array_equal(a[0], kl.kl_inverse_upper(q, c))
    np.testing.assert_array_equal(a[1], kl.kl_inverse_upper(*grid))
    np.testing.assert_array_equal(b[0], kl.kl_inverse_upper(q[5:], 1e-4))
    assert b[1] == kl.kl_inverse_upper(0.3, 0.05) and isinstance(b[1], float)


def test_kl_bernoulli_of_broadcast_and_scalar_inputs_equals_the_formula():
    q = np.array([[0.0], [0.2], [1.0]])
    p = np.array([[0.0, 0.1, 0.2, 0.7, 1.0]])
    got = B.kl_bernoulli(q, p)
    for i, qi in enumerate(q[:, 0]):
        for j, pj in enumerate(p[0]):
            assert got[i, j] == B.kl_bernoulli(float(qi), float(pj))
    assert got[1, 2] == 0.0 and got[0, 4] == math.inf and got[2, 0] == math.inf
    assert B.kl_bernoulli(0.2, 0.7) == pytest.approx(
        0.2 * math.log(0.2 / 0.7) + 0.8 * math.log(0.8 / 0.3), rel=1e-14
    )


def test_bounds_together_equal_the_bounds_alone():
    z, y, w = _data(400, 3, 4, seed=4, scale=1.5)
    z /= np.linalg.norm(z, axis=1, keepdims=True)
    b = np.array([0.1, -0.2, 0.05])
    kw = dict(features=z, labels=y, weights=w, bias=b, seed=11, n_weight_samples=30)
    split = dict(
        features=z[200:],
        labels=y[200:],
        weights=w,
        bias=b,
        prior_weights=0.8 * w,
        prior_bias=0.5 * b,
        n_prior=200,
        seed=[11, 3],
        delta=0.02,
        n_weight_samples=30,
    )
    together = B.pac_bayes_bounds(
        (B.pac_bayes_kl_bound, kw), (B.pac_bayes_split_prior_bound, split)
    )
    pac_bayes._MC_MEMO.clear()
    assert together == [B.pac_bayes_kl_bound(**kw), B.pac_bayes_split_prior_bound(**split)]
    with pytest.raises(ValueError, match="n_weight_samples"):
        B.pac_bayes_bounds((B.pac_bayes_kl_bound, dict(kw, n_weight_samples=0)))
    with pytest.raises(ValueError, match="calls: each bound"):
        B.pac_bayes_bounds((B.margin_bound, kw))


def test_prefetched_monte_carlo_is_the_bounds(monkeypatch):
    """After prefetch_monte_carlo, B3 and B3p (any delta) draw nothing: their Monte Carlo is
    the prefetched one."""
    z, y, w = _data(300, 4, 3, seed=5, scale=2.0)
    w0 = 0.9 * w + 0.1
    kw = dict(features=z, labels=y, weights=w, n_weight_samples=20)
    B.prefetch_monte_carlo(B.pac_bayes_kl_bound, dict(kw, seed=3))
    B.prefetch_monte_carlo(
        B.pac_bayes_split_prior_bound, dict(kw, seed=[3, 3], prior_weights=w0, n_prior=5)
    )

    def no_draws(*a, **k):
        raise AssertionError("drew again")

    monkeypatch.setattr(pac_bayes_mc, "error_counts", no_draws)
    b3 = B.pac_bayes_kl_bound(z, y, w, seed=3, delta=0.01, n_weight_samples=20)
    b3p = B.pac_bayes_split_prior_bound(
        z, y, w, prior_weights=w0, n_prior=5, seed=[3, 3], n_weight_samples=20
    )
    monkeypatch.undo()
    pac_bayes._MC_MEMO.clear()
    assert b3 == B.pac_bayes_kl_bound(z, y, w, seed=3, delta=0.01, n_weight_samples=20)
    assert b3p == B.pac_bayes_split_prior_bound(
        z, y, w, prior_weights=w0, n_prior=5, seed=[3, 3], n_weight_samples=20
    )
    with pytest.raises(ValueError, match="n_weight_samples"):
        B.prefetch_monte_carlo(B.pac_bayes_kl_bound, dict(kw, seed=3, n_weight_samples=0))


def test_gaussian_kl_checks_its_inputs_and_the_grid_uses_the_same_formula():
    with pytest.raises(ValueError, match="sigma_q"):
        B.gaussian_kl(1.0, 3, 0.0, 1.0)
    with pytest.raises(ValueError, match="mean_sq_norm"):
        B.gaussian_kl(-1.0, 3, 1.0, 1.0)
    with pytest.raises(ValueError, match="dim"):
        B.gaussian_kl(1.0, 0, 1.0, 1.0)
    z, y, w = _data(200, 3, 4, seed=6, scale=1.0)
    pb = B.pac_bayes_kl_bound(z, y, w, seed=0, n_weight_samples=10)
    assert pb.kl == B.gaussian_kl(pb.weight_norm**2, pb.D, pb.sigma_q, pb.sigma_p)


def _block_errors(z, y, w, sigmas, seed, n_draws, per):
    """Error rates of the block layout, drawn plainly: blocks of ``per`` draws, block 0 from
    ``default_rng(seed)``, block b from SFC64 seeded by ``SeedSequence(seed, spawn_key=(b,))``."""

    def gen(b):
        if b == 0:
            return np.random.default_rng(seed)
        return np.random.Generator(np.random.SFC64(np.random.SeedSequence(seed, spawn_key=(b,))))

    xi = np.concatenate(
        [
            gen(b).standard_normal((min(per, n_draws - d), z.shape[0], w.shape[0]))
            for b, d in enumerate(range(0, n_draws, per))
        ]
    )
    noise = np.linalg.norm(z, axis=1)[None, :, None] * xi
    return np.array([np.mean(B._margins((z @ w.T)[None] + s * noise, y) <= 0) for s in sigmas])


@pytest.mark.parametrize("cores", [1, 2, 5])
def test_a_stream_of_several_blocks_is_the_block_layout_whatever_the_threads(monkeypatch, cores):
    """Past BLOCK normals the draws come in blocks of their own generators (module docstring),
    counted on one thread per core: the counts are those of the blocks drawn plainly, on any
    number of threads, and a run of one block is the seed's single stream."""
    z, y, w = _data(200, 4, 5, seed=3, scale=2.0)
    sig = np.r_[0.0, 0.1, 0.5, 2.0]
    monkeypatch.setattr(pac_bayes_mc, "BLOCK", 200 * 4 * 6)  # 6 draws a block: 4 blocks
    monkeypatch.setattr(os, "sched_getaffinity", lambda pid: set(range(cores)))
    assert pac_bayes_mc._blocks(9, 200, 4, 21) == [6, 6, 6, 3]
    assert pac_bayes_mc._blocks(np.random.default_rng(9), 200, 4, 21) == [21]
    got = pac_bayes._stochastic_errors(z, y, w, sig, [9, 1], 21, 4, memo=False)
    want = _block_errors(z, y, w, sig, [9, 1], 21, per=6)
    np.testing.assert_array_equal(got, want)
    assert not np.array_equal(got, _plain_errors(z, y, w, sig, [9, 1], 21))  # not one stream
    one = pac_bayes._stochastic_errors(z, y, w, sig, [9, 1], 6, 4, memo=False)
    np.testing.assert_array_equal(one, _plain_errors(z, y, w, sig, [9, 1], 6))


def test_an_error_in_one_block_is_raised_after_every_thread_stopped(monkeypatch):
    monkeypatch.setattr(os, "sched_getaffinity", lambda pid: {0, 1})
    seen = []

    def fn(i):
        seen.append(i)
        if i == 1:
            raise RuntimeError("block 1 failed")
        time.sleep(0.01)  # the other blocks take a while: 50 of them 0.5 s
        return i

    with pytest.raises(RuntimeError, match="block 1 failed"):
        pac_bayes_mc._on_threads(fn, 50)
    assert len(seen) < 50  # the other thread stops taking blocks
    assert pac_bayes_mc._on_threads(lambda i: i * i, 7) == [0, 1, 4, 9, 16, 25, 36]
