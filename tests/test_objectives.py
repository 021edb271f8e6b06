"""Tests of cmcd_theory.learn.objectives (docs/theory.md O1-O4, and the per-anchor facts of B4).

Each loss is compared with an independent float64 implementation written as explicit loops,
its gradient with central finite differences, and the range / Lipschitz statements used by
bound B4 are checked on random and on extremal inputs.
"""

import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from cmcd_theory.learn.objectives import (
    cmc,
    cmc_b_to_a,
    cmc_per_anchor,
    cmd,
    cmd_per_anchor,
    infonce,
    l2_align,
    update_queue,
)

# ------------------------------------------------------------------------------------
# Independent references: plain Python loops in float64, explicit exp and sum.
# The largest logit of a row is subtracted before exponentiating, an exact identity that
# lets the same references serve at tau = 0.01.
# ------------------------------------------------------------------------------------


def _dot(x, y):
    return sum(float(a) * float(b) for a, b in zip(x, y))


def _neg_log_softmax_entry(logits, k):
    m = max(logits)
    total = 0.0
    for value in logits:
        total += math.exp(value - m)
    return -(logits[k] - m - math.log(total))


def _softmax(logits):
    m = max(logits)
    exps = [math.exp(value - m) for value in logits]
    total = sum(exps)
    return [e / total for e in exps]


def ref_clip_symmetric(u, v, tau):
    n = len(u)
    logits = [[_dot(u[i], v[j]) / tau for j in range(n)] for i in range(n)]
    total = 0.0
    for i in range(n):
        row = [logits[i][j] for j in range(n)]
        col = [logits[j][i] for j in range(n)]
        total += _neg_log_softmax_entry(row, i) + _neg_log_softmax_entry(col, i)
    return total / (2 * n)


def ref_cmc_per_anchor(z_b, z_a, tau):
    n = len(z_b)
    out = []
    for i in range(n):
        row = [_dot(z_b[i], z_a[j]) / tau for j in range(n)]
        out.append(_neg_log_softmax_entry(row, i))
    return np.array(out)


def ref_cmd_per_anchor(z_b, z_a, tau_a, tau_b, queue=None):
    candidates = [list(row) for row in z_a]
    if queue is not None:
        candidates += [list(row) for row in queue]
    out = []
    for i in range(len(z_b)):
        p_a = _softmax([_dot(z_a[i], c) / tau_a for c in candidates])
        logits_b = [_dot(z_b[i], c) / tau_b for c in candidates]
        loss = 0.0
        for j in range(len(candidates)):
            loss += p_a[j] * _neg_log_softmax_entry(logits_b, j)
        out.append(loss)
    return np.array(out)


def ref_l2(z_b, z_a):
    total = 0.0
    for row_b, row_a in zip(z_b, z_a):
        total += sum((float(b) - float(a)) ** 2 for b, a in zip(row_b, row_a))
    return total / len(z_b)


def _features(rng, n, p, scale=None):
    """Gaussian rows; unit norm if scale is None, else norm ~ scale (unnormalised)."""
    x = rng.normal(size=(n, p))
    if scale is None:
        return x / np.linalg.norm(x, axis=1, keepdims=True)
    return scale * x / np.sqrt(p)


def _in_ball(rng, n, p, radius):
    """Rows uniform in direction with norms in [0, radius], the first one exactly radius."""
    x = rng.normal(size=(n, p))
    x /= np.linalg.norm(x, axis=1, keepdims=True)
    norms = radius * rng.uniform(size=(n, 1)) ** (1.0 / p)
    norms[0] = radius
    return x * norms


def _all_outputs(u, v, tau_a, tau_b, queue):
    """Every public function of the module on one set of inputs (one jit compile)."""
    return {
        "infonce": infonce(u, v, tau_b),
        "cmc": cmc(u, v, tau_b),
        "cmc_per_anchor": cmc_per_anchor(u, v, tau_b),
        "cmc_b_to_a": cmc_b_to_a(u, v, tau_b),
        "cmd_per_anchor": cmd_per_anchor(u, v, tau_a, tau_b),
        "cmd": cmd(u, v, tau_a, tau_b),
        "cmd_per_anchor+queue": cmd_per_anchor(u, v, tau_a, tau_b, queue=queue),
        "cmd+queue": cmd(u, v, tau_a, tau_b, queue=queue),
        "l2_align": l2_align(u, v),
        "update_queue": update_queue(queue, v),
    }


def _all_references(u, v, tau_a, tau_b, queue):
    cmc_rows = ref_cmc_per_anchor(u, v, tau_b)
    cmd_rows = ref_cmd_per_anchor(u, v, tau_a, tau_b)
    cmd_rows_q = ref_cmd_per_anchor(u, v, tau_a, tau_b, queue)
    pushed = [list(row) for row in v] + [list(row) for row in queue]
    return {
        "infonce": ref_clip_symmetric(u, v, tau_b),
        "cmc": ref_clip_symmetric(u, v, tau_b),
        "cmc_per_anchor": cmc_rows,
        "cmc_b_to_a": cmc_rows.mean(),
        "cmd_per_anchor": cmd_rows,
        "cmd": cmd_rows.mean(),
        "cmd_per_anchor+queue": cmd_rows_q,
        "cmd+queue": cmd_rows_q.mean(),
        "l2_align": ref_l2(u, v),
        "update_queue": np.array(pushed[: len(queue)]),
    }


_all_outputs_jit = jax.jit(_all_outputs)

CASES = [  # (N, p, Q, tau): several batch sizes, dimensions, queue sizes, temperatures
    (1, 3, 1, 0.5),
    (2, 2, 6, 0.1),
    (4, 3, 3, 0.2),
    (8, 5, 2, 0.07),
]


# ------------------------------------------------------------------------------------
# Values against the direct implementations
# ------------------------------------------------------------------------------------


@pytest.mark.parametrize("n, p, q, tau", CASES)
@pytest.mark.parametrize("scale", [None, 1.5])
def test_losses_match_direct_implementation(n, p, q, tau, scale):
    rng = np.random.default_rng(100 * n + 10 * p + q + (scale is None))
    u, v, queue = _features(rng, n, p, scale), _features(rng, n, p), _features(rng, q, p)
    tau_a = 0.5 * tau
    expected = _all_references(u, v, tau_a, tau, queue)

    def f32(x):
        return jnp.asarray(x, jnp.float32)

    got = _all_outputs_jit(f32(u), f32(v), tau_a, tau, f32(queue))
    for name, value in got.items():
        assert value.dtype == jnp.float32, name
        assert value.shape == np.shape(expected[name]), name
        # A per-anchor loss near 0 is log(1 + small) in float32: its error is absolute (~eps).
        np.testing.assert_allclose(value, expected[name], rtol=1e-5, atol=1e-6, err_msg=name)


def test_losses_match_direct_implementation_float64():
    # In float64 the agreement is to rounding: no approximation hides behind the 1e-5 above.
    n, p, q, tau = 6, 3, 4, 0.1
    rng = np.random.default_rng(42)
    u, v, queue = _features(rng, n, p, 1.5), _features(rng, n, p), _features(rng, q, p)
    expected = _all_references(u, v, 0.5 * tau, tau, queue)
    with jax.enable_x64(True):
        got = _all_outputs_jit(u, v, 0.5 * tau, tau, queue)
        for name, value in got.items():
            assert value.dtype == jnp.float64, name
            np.testing.assert_allclose(value, expected[name], rtol=1e-12, atol=1e-15, err_msg=name)


def test_update_queue_is_fifo_with_fixed_size():
    queue = jnp.arange(10.0).reshape(5, 2)
    batch = -jnp.arange(1.0, 5.0).reshape(2, 2)
    new = update_queue(queue, batch)
    assert new.shape == queue.shape and new.dtype == queue.dtype
    np.testing.assert_array_equal(new, np.concatenate([batch, queue[:3]]))
    # Two pushes: the newest batch first, then the previous one, then the oldest survivors.
    newer = update_queue(new, batch + 100.0)
    np.testing.assert_array_equal(newer, np.concatenate([batch + 100.0, batch, queue[:1]]))
    # A batch at least as large as the queue replaces it by its first Q rows.
    big = jnp.arange(14.0).reshape(7, 2) + 50.0
    np.testing.assert_array_equal(update_queue(queue, big), big[:5])
    # The pushed features carry no gradient.
    grad = jax.grad(lambda z: jnp.sum(update_queue(queue, z)))(batch)
    np.testing.assert_array_equal(grad, np.zeros_like(batch))


# ------------------------------------------------------------------------------------
# Gradients against central finite differences
# ------------------------------------------------------------------------------------

SCALAR_LOSSES = ["infonce", "cmc", "cmc_b_to_a", "cmd", "cmd+queue", "l2_align"]
TEACHER_STOPPED = {"cmd", "cmd+queue"}  # no gradient to z_a by design (tested below)


def _scalar_losses(u, v, tau_a, tau_b, queue):
    outputs = _all_outputs(u, v, tau_a, tau_b, queue)
    return jnp.stack([outputs[name] for name in SCALAR_LOSSES])


def _check_gradients(n, p, tau, seed, dtype, h, rtol):
    """Jacobian of every scalar loss in (z_b, z_a, tau_b) against central differences."""
    rng = np.random.default_rng(seed)
    u, v, queue = _features(rng, n, p, 1.2), _features(rng, n, p), _features(rng, 3, p)
    tau_a = 0.15
    theta = np.concatenate([u.ravel(), v.ravel(), [tau]]).astype(dtype)
    size = n * p

    def losses(t):
        return _scalar_losses(
            t[:size].reshape(n, p),
            t[size : 2 * size].reshape(n, p),
            tau_a,
            t[-1],
            jnp.asarray(queue, dtype),
        )

    jac = np.asarray(jax.jit(jax.jacrev(losses))(theta))  # (losses, coordinates)
    steps = (h * np.eye(theta.size)).astype(dtype)
    batched = jax.jit(jax.vmap(losses))
    fd = (
        (
            np.asarray(batched(theta + steps), np.float64)
            - np.asarray(batched(theta - steps), np.float64)
        )
        / (2 * h)
    ).T
    assert jac.dtype == dtype
    student = np.r_[0:size, theta.size - 1]  # z_b and tau_b
    for k, name in enumerate(SCALAR_LOSSES):
        cols = student if name in TEACHER_STOPPED else np.arange(theta.size)
        scale = np.max(np.abs(jac[k, cols]))
        assert scale > 0, name
        np.testing.assert_allclose(
            jac[k, cols], fd[k, cols], rtol=rtol, atol=rtol * scale, err_msg=name
        )
        if name in TEACHER_STOPPED:
            np.testing.assert_array_equal(jac[k, size : 2 * size], 0.0, err_msg=name)


@pytest.mark.parametrize("n, p, tau", [(5, 3, 0.1)])
def test_gradients_match_finite_differences_float64(n, p, tau):
    with jax.enable_x64(True):
        _check_gradients(n, p, tau, seed=7 * n + p, dtype=np.float64, h=1e-6, rtol=1e-6)


def test_gradients_match_finite_differences_float32():
    _check_gradients(4, 3, 0.5, seed=3, dtype=np.float32, h=1e-2, rtol=1e-2)


def test_cmd_teacher_side_has_no_gradient():
    rng = np.random.default_rng(11)
    z_b, z_a, queue = _features(rng, 4, 3, 1.0), _features(rng, 4, 3), _features(rng, 5, 3)
    g_a, g_q, g_tau_a = jax.jit(
        jax.grad(lambda a, q, t: cmd(z_b, a, t, 0.2, queue=q), argnums=(0, 1, 2))
    )(jnp.asarray(z_a, jnp.float32), jnp.asarray(queue, jnp.float32), 0.1)
    np.testing.assert_array_equal(g_a, np.zeros_like(z_a))
    np.testing.assert_array_equal(g_q, np.zeros_like(queue))
    assert float(g_tau_a) == 0.0


# ------------------------------------------------------------------------------------
# Numerical stability at small temperature and large feature norms
# ------------------------------------------------------------------------------------


@pytest.mark.parametrize("norm", [1.0, 100.0])
def test_finite_at_small_temperature(norm):
    # Rows of norm exactly `norm` (unnormalised when 100: logits up to 1e6), tau = 0.01.
    tau = 0.01
    n, p = 6, 4
    rng = np.random.default_rng(5)
    u, v, queue = (norm * _features(rng, k, p) for k in (n, n, 3))

    def f32(x):
        return jnp.asarray(x, jnp.float32)

    got = _all_outputs_jit(f32(u), f32(v), tau, tau, f32(queue))
    expected = _all_references(u, v, tau, tau, queue)
    logit_scale = norm**2 / tau
    for name, value in got.items():
        assert np.all(np.isfinite(value)), name
        # float32 logits carry an absolute error of about eps * logit_scale.
        np.testing.assert_allclose(
            value, expected[name], rtol=1e-4, atol=1e-6 * logit_scale, err_msg=name
        )
    jac_u, jac_v = jax.jit(jax.jacrev(_scalar_losses, argnums=(0, 1)))(
        f32(u), f32(v), tau, tau, f32(queue)
    )
    assert np.all(np.isfinite(jac_u)) and np.all(np.isfinite(jac_v))
    assert np.max(np.abs(jac_u)) > 0


# ------------------------------------------------------------------------------------
# Known values
# ------------------------------------------------------------------------------------

# Shapes (N, p, Q) as in CASES, so that these reuse the compiled _all_outputs_jit.


@pytest.mark.parametrize("n, p, q", [(2, 2, 6), (5, 6, 1)])
def test_cmc_of_orthogonal_identical_features(n, p, q):
    z = jnp.eye(n, p, dtype=jnp.float32)  # orthonormal rows, z_b = z_a
    queue = jnp.zeros((q, p), jnp.float32)
    values = []
    for tau in (0.5, 0.1, 0.01):
        out = _all_outputs_jit(z, z, tau, tau, queue)
        exact = math.log1p((n - 1) * math.exp(-1.0 / tau))
        for name in ("cmc", "infonce", "cmc_b_to_a"):
            np.testing.assert_allclose(out[name], exact, rtol=1e-5, atol=1e-7, err_msg=name)
        values.append(float(out["cmc"]))
    # The loss tends to 0 as tau -> 0: at tau = 0.01 it is (N - 1) e^{-100}, 0 in float32.
    assert values[0] > values[1] > values[2] >= 0.0
    assert values[2] < 1e-7


@pytest.mark.parametrize("n, p, q", [(1, 3, 1), (4, 3, 3), (8, 5, 2)])
def test_all_features_equal_give_log_n(n, p, q):
    z = jnp.full((n, p), 0.5, dtype=jnp.float32)
    queue = jnp.full((q, p), 0.5, dtype=jnp.float32)
    for tau in (0.01, 0.3, 2.0):
        out = _all_outputs_jit(z, z, tau, 2 * tau, queue)
        for name in ("cmc", "infonce", "cmc_b_to_a"):
            np.testing.assert_allclose(out[name], math.log(n), rtol=1e-6, atol=1e-7, err_msg=name)
        np.testing.assert_allclose(
            out["cmc_per_anchor"], np.full(n, math.log(n)), rtol=1e-6, atol=1e-7
        )
        # CMD: p_A and p_B both uniform over the N (+ Q) candidates.
        np.testing.assert_allclose(
            out["cmd_per_anchor"], np.full(n, math.log(n)), rtol=1e-6, atol=1e-7
        )
        np.testing.assert_allclose(
            out["cmd_per_anchor+queue"], np.full(n, math.log(n + q)), rtol=1e-6
        )


def test_l2_known_values():
    rng = np.random.default_rng(0)
    z = jnp.asarray(rng.normal(size=(6, 3)), jnp.float32)
    assert float(l2_align(z, z)) == 0.0
    shift = jnp.zeros((6, 3)).at[:, 1].set(2.0)
    np.testing.assert_allclose(l2_align(z + shift, z), 4.0, rtol=1e-6)


def test_cmd_with_matching_student_is_teacher_entropy():
    # z_b = z_a and tau_b = tau_a give p_B = p_A, so the loss is the entropy of p_A.
    rng = np.random.default_rng(2)
    z = _features(rng, 4, 3)  # shape as in CASES: reuses the compiled _all_outputs_jit
    tau = 0.2
    logits = z @ z.T / tau
    prob = np.exp(logits - logits.max(axis=1, keepdims=True))
    prob /= prob.sum(axis=1, keepdims=True)
    entropy = -(prob * np.log(prob)).sum(axis=1)
    z32, queue = jnp.asarray(z, jnp.float32), jnp.zeros((3, 3), jnp.float32)
    out = _all_outputs_jit(z32, z32, tau, tau, queue)
    np.testing.assert_allclose(out["cmd_per_anchor"], entropy, rtol=1e-5, atol=1e-6)
    # Any other student does worse (Gibbs' inequality).
    other = jnp.asarray(_features(rng, 4, 3), jnp.float32)
    out = _all_outputs_jit(other, z32, tau, tau, queue)
    assert np.all(np.asarray(out["cmd_per_anchor"]) >= entropy - 1e-6)


# ------------------------------------------------------------------------------------
# Range and Lipschitz facts of the per-anchor losses (bound B4)
# ------------------------------------------------------------------------------------


def _per_anchor_outputs(z_b, z_a, tau, queue):
    """(N,) per-anchor B->A losses, each (2/tau)-Lipschitz in its anchor (tau = student's)."""
    return jnp.stack(
        [
            cmc_per_anchor(z_b, z_a, tau),
            cmd_per_anchor(z_b, z_a, 0.5 * tau, tau),
            cmd_per_anchor(z_b, z_a, 2.0 * tau, tau, queue=queue),
        ]
    )


PER_ANCHOR_NAMES = ["cmc", "cmd", "cmd+queue"]


@pytest.mark.parametrize("tau", [0.05, 0.5])
def test_per_anchor_losses_are_2_over_tau_lipschitz_in_the_anchor(tau):
    n, p, q, draws = 6, 4, 5, 1000
    with jax.enable_x64(True):
        rng = np.random.default_rng(int(100 * tau))
        z_a = _in_ball(rng, n, p, 1.0)  # teacher / candidate norms <= 1
        queue = _in_ball(rng, q, p, 1.0)
        z_b = _features(rng, n, p, 3.0)  # no norm condition on the student
        i = rng.integers(n, size=draws)
        delta = rng.normal(size=(draws, p))
        delta *= (10.0 ** rng.uniform(-4, 1, size=(draws, 1))) / np.linalg.norm(
            delta, axis=1, keepdims=True
        )
        perturbed = np.repeat(z_b[None], draws, axis=0)
        perturbed[np.arange(draws), i] += delta

        base = np.asarray(jax.jit(_per_anchor_outputs)(z_b, z_a, tau, queue))  # (3, N)
        moved = np.asarray(
            jax.jit(jax.vmap(_per_anchor_outputs, (0, None, None, None)))(
                perturbed, z_a, tau, queue
            )
        )  # (draws, 3, N)
        allowed = (2.0 / tau) * np.linalg.norm(delta, axis=1)
        for k, name in enumerate(PER_ANCHOR_NAMES):
            change = np.abs(moved[np.arange(draws), k, i] - base[k, i])
            assert np.all(change <= allowed * (1 + 1e-9) + 1e-12), name
            # The largest observed ratio is a sizeable fraction of the constant (not vacuous).
            assert np.max(change / allowed) > 0.1, name
            # Only the perturbed anchor's loss moves.
            others = np.ones((draws, n), bool)
            others[np.arange(draws), i] = False
            np.testing.assert_allclose(
                moved[:, k][others],
                np.broadcast_to(base[k], (draws, n))[others],
                rtol=1e-12,
                err_msg=name,
            )


def test_lipschitz_constant_2_over_tau_is_attained():
    # Anchor pushed away from its positive z_a^i = e_1 and towards the candidate -e_1:
    # the gradient tends to (-e_1 - e_1) / tau, of norm 2 / tau, so 2 / tau cannot be lowered.
    tau = 0.1
    with jax.enable_x64(True):
        z_a = jnp.array([[1.0, 0.0], [-1.0, 0.0]])
        z_b = jnp.array([[-5.0, 0.0], [0.0, 1.0]])
        for name, f in [
            ("cmc", lambda b: cmc_per_anchor(b, z_a, tau)[0]),
            # CMD with a sharp teacher: p_A on the self term, p_B on the other candidate.
            ("cmd", lambda b: cmd_per_anchor(b, z_a, 0.01, tau)[0]),
        ]:
            grad_norm = float(jnp.linalg.norm(jax.jit(jax.grad(f))(z_b)))
            assert 0.999 * 2 / tau <= grad_norm <= 2 / tau, name


@pytest.mark.parametrize("radius, tau", [(1.0, 0.1), (3.0, 0.5), (0.5, 0.05)])
def test_per_anchor_losses_lie_in_0_b(radius, tau):
    n, p, q, trials = 5, 3, 4, 200
    rng = np.random.default_rng(int(radius * 10 + tau * 100))
    z_b = np.stack([_in_ball(rng, n, p, radius) for _ in range(trials)])
    z_a = np.stack([_in_ball(rng, n, p, 1.0) for _ in range(trials)])
    queue = np.stack([_in_ball(rng, q, p, 1.0) for _ in range(trials)])
    values = np.asarray(
        jax.jit(jax.vmap(_per_anchor_outputs, (0, 0, None, 0)))(
            jnp.asarray(z_b, jnp.float32),
            jnp.asarray(z_a, jnp.float32),
            tau,
            jnp.asarray(queue, jnp.float32),
        )
    )  # (trials, 3, N)
    for k, (name, n_candidates) in enumerate(zip(PER_ANCHOR_NAMES, [n, n, n + q])):
        bound = math.log1p((n_candidates - 1) * math.exp(2 * radius / tau))
        assert np.all(values[:, k] >= 0.0), name
        assert np.all(values[:, k] <= bound), name


def test_upper_end_of_the_range_is_attained():
    # z_a^j = -z_a^i for j != i and z_b^i = -R z_a^i give exactly b = log(1 + (N-1) e^{2R/tau}).
    n, radius, tau = 4, 2.0, 0.5
    z_a = np.array([[1.0, 0.0]] + [[-1.0, 0.0]] * (n - 1))
    z_b = np.zeros((n, 2))
    z_b[0] = -radius * z_a[0]
    with jax.enable_x64(True):
        value = float(cmc_per_anchor(z_b, z_a, tau)[0])
    np.testing.assert_allclose(value, math.log1p((n - 1) * math.exp(2 * radius / tau)), rtol=1e-12)


# ------------------------------------------------------------------------------------
# jit and vmap
# ------------------------------------------------------------------------------------


def test_jit_and_vmap_agree_with_plain_calls():
    seeds, n, p, q, tau = 3, 4, 3, 3, 0.2  # (n, p, q) as in CASES: jit cache reused
    rng = np.random.default_rng(9)
    z_b = jnp.asarray(rng.normal(size=(seeds, n, p)), jnp.float32)
    z_a = jnp.asarray(rng.normal(size=(seeds, n, p)), jnp.float32)
    queue = jnp.asarray(rng.normal(size=(seeds, q, p)), jnp.float32)
    taus = np.array([0.1, 0.2, 0.7], np.float32)
    plain = [
        _all_outputs(z_b[s], z_a[s], 0.5 * float(taus[s]), float(taus[s]), queue[s])
        for s in range(seeds)
    ]
    plain_fixed = [_all_outputs(z_b[s], z_a[s], 0.5 * tau, tau, queue[s]) for s in range(seeds)]
    jitted = [
        _all_outputs_jit(z_b[s], z_a[s], 0.5 * float(taus[s]), float(taus[s]), queue[s])
        for s in range(seeds)
    ]
    # Seeds and temperatures both on the leading axis: tau is a tracer under vmap.
    vmapped = jax.jit(jax.vmap(_all_outputs))(z_b, z_a, 0.5 * taus, taus, queue)
    # Seeds only, with fixed Python temperatures.
    vmapped_fixed = jax.jit(jax.vmap(lambda b, a, qu: _all_outputs(b, a, 0.5 * tau, tau, qu)))(
        z_b, z_a, queue
    )
    for name in plain[0]:
        expected = np.stack([out[name] for out in plain])
        np.testing.assert_allclose(
            np.stack([out[name] for out in jitted]), expected, rtol=1e-6, atol=1e-7, err_msg=name
        )
        np.testing.assert_allclose(vmapped[name], expected, rtol=1e-6, atol=1e-7, err_msg=name)
        np.testing.assert_allclose(
            vmapped_fixed[name],
            np.stack([out[name] for out in plain_fixed]),
            rtol=1e-6,
            atol=1e-7,
            err_msg=name,
        )


# ------------------------------------------------------------------------------------
# Input checks
# ------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "bad_tau", [0.0, -0.1, float("nan"), float("inf"), np.float32(0.0), np.array([0.1, 0.2]), True]
)
def test_bad_temperature_is_rejected(bad_tau):
    z = np.ones((3, 2), np.float32)
    with pytest.raises(ValueError, match="tau"):
        cmc(z, z, bad_tau)
    with pytest.raises(ValueError, match="tau"):
        infonce(z, z, bad_tau)
    with pytest.raises(ValueError, match="tau"):
        cmc_per_anchor(z, z, bad_tau)
    with pytest.raises(ValueError, match="tau_a"):
        cmd(z, z, bad_tau, 0.1)
    with pytest.raises(ValueError, match="tau_b"):
        cmd_per_anchor(z, z, 0.1, bad_tau)


def test_bad_shapes_are_rejected():
    z = np.ones((3, 2), np.float32)
    with pytest.raises(ValueError, match="z_b"):
        cmc(np.ones(3, np.float32), z, 0.1)
    with pytest.raises(ValueError, match="z_a"):
        cmc(z, np.ones((1, 3, 2), np.float32), 0.1)
    with pytest.raises(ValueError, match="z_b and z_a"):
        cmc(z, np.ones((4, 2), np.float32), 0.1)
    with pytest.raises(ValueError, match="u and v"):
        infonce(z, np.ones((3, 3), np.float32), 0.1)
    with pytest.raises(ValueError, match="z_b and z_a"):
        l2_align(z, np.ones((3, 3), np.float32))
    with pytest.raises(ValueError, match="queue"):
        cmd(z, z, 0.1, 0.1, queue=np.ones((4, 3), np.float32))
    with pytest.raises(ValueError, match="queue"):
        update_queue(np.ones((4, 3), np.float32), z)
    with pytest.raises(ValueError, match="z_b"):
        cmc(np.ones((3, 2), np.int32), z, 0.1)
    with pytest.raises(ValueError, match="u"):
        infonce(np.ones((0, 2), np.float32), np.ones((0, 2), np.float32), 0.1)


# The docstring examples run as doctests (pytest --doctest-modules, setup.cfg).
