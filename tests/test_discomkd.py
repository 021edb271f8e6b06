"""Tests of cmcd_theory.learn.discomkd (docs/theory.md, section O, the DisCoM-KD comparator).

Gradient reversal is checked to flip exactly the sign of the gradient and scale it by lambda;
each loss term is compared with an independent float64 NumPy implementation (the encoders
included) and with central finite differences; the wiring of the reversal inside the full
objective is checked against the gradients of the un-reversed terms; the training loop is
run on a separable toy problem.
"""

import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax.test_util import check_grads

from cmcd_theory.learn.discomkd import (
    DiscomConfig,
    discomkd_features,
    discomkd_logits,
    discomkd_loss,
    discomkd_model,
    discomkd_predict,
    gradient_reversal,
    init_discomkd,
    label_cross_entropy,
    modality_cross_entropy,
    orthogonality_loss,
    train_discomkd,
)

# Compile at XLA optimisation level 0 on CPU: the programs here are tiny, compilation dominates.
_FAST = {"xla_backend_optimization_level": 0} if jax.default_backend() == "cpu" else None


# ------------------------------------------------------------------------------------
# Independent float64 references
# ------------------------------------------------------------------------------------


def np_log_softmax(logits):
    logits = np.asarray(logits, np.float64)
    m = logits.max(axis=-1, keepdims=True)
    return logits - m - np.log(np.exp(logits - m).sum(axis=-1, keepdims=True))


def np_label_ce(logits, y):
    logits = np.asarray(logits, np.float64)
    total = 0.0
    for v in range(logits.shape[0]):
        lp = np_log_softmax(logits[v])
        total += -np.mean([lp[i, y[i]] for i in range(len(y))])
    return total


def np_modality_ce(logits):
    logits = np.asarray(logits, np.float64)
    m, n, _ = logits.shape
    vals = [-np_log_softmax(logits[v])[i, v] for v in range(m) for i in range(n)]
    return float(np.mean(vals))


def np_orth(inv, spec):
    inv, spec = np.asarray(inv, np.float64), np.asarray(spec, np.float64)
    a = inv.reshape(-1, inv.shape[-1])
    s = spec.reshape(-1, spec.shape[-1])
    cos2 = [(x @ z) ** 2 / ((x @ x) * (z @ z)) for x, z in zip(a, s)]
    return float(np.mean(cos2))


def np_gelu(x):  # jax.nn.gelu default: the tanh approximation
    return 0.5 * x * (1.0 + np.tanh(math.sqrt(2.0 / math.pi) * (x + 0.044715 * x**3)))


def np_mlp(layers, x):
    x = np.asarray(x, np.float64)
    for layer in layers[:-1]:
        x = np_gelu(x @ np.asarray(layer["W"], np.float64).T + np.asarray(layer["b"], np.float64))
    last = layers[-1]
    return x @ np.asarray(last["W"], np.float64).T + np.asarray(last["b"], np.float64)


def np_discomkd_terms(params, q, xs, y):
    us = [np_mlp(p, x) for p, x in zip(params["enc"], xs)]
    inv = np.stack([u[:, :q] for u in us])
    spec = np.stack([u[:, q:] for u in us])
    cls = np.stack(
        [
            u @ np.asarray(c["W"], np.float64).T + np.asarray(c["b"], np.float64)
            for u, c in zip(us, params["cls"])
        ]
    )
    return {
        "cls": np_label_ce(cls, y),
        "aux": np_label_ce(np_mlp(params["aux"], inv), y),
        "adv": np_modality_ce(np_mlp(params["disc"], inv)),
        "mod": np_modality_ce(np_mlp(params["mod"], spec)),
        "orth": np_orth(inv, spec),
    }


def _toy_batch(seed, n=12, dims=(5, 3), k=4):
    rng = np.random.default_rng(seed)
    xs = tuple(rng.standard_normal((n, d)).astype(np.float32) for d in dims)
    return xs, rng.integers(0, k, n).astype(np.int32)


def _normal(seed, shape, dtype=np.float32):
    return np.random.default_rng(seed).standard_normal(shape).astype(dtype)


def _fast_jit(fun, **kwargs):
    return jax.jit(fun, compiler_options=_FAST, **kwargs)


_init = _fast_jit(init_discomkd, static_argnums=1)
# one small architecture for the unit tests, so that compiled programs are shared
_SMALL = discomkd_model([5, 3], d_part=2, num_classes=4, hidden=(6,), disc_hidden=(5,))


# ------------------------------------------------------------------------------------
# Gradient reversal
# ------------------------------------------------------------------------------------


def test_gradient_reversal_is_identity_forward():
    x = _normal(0, (3, 4))
    assert np.array_equal(np.asarray(gradient_reversal(x, 0.7)), np.asarray(x))


@pytest.mark.parametrize("lam", [0.0, 0.3, 1.0, 2.5])
def test_gradient_reversal_flips_sign_and_scales_by_lambda(lam):
    x = jnp.asarray(_normal(1, (5,)))

    def f(z):  # non-linear, so the gradient depends on x
        return jnp.sum(jnp.sin(z) * z**2)

    g_plain = jax.grad(f)(x)
    g_rev = jax.grad(lambda z: f(gradient_reversal(z, lam)))(x)
    np.testing.assert_array_equal(np.asarray(g_rev), np.asarray(-lam * g_plain))


def test_gradient_reversal_only_reverses_the_path_through_it():
    # d/dx [f(x) + g(R(x))] = f'(x) - lam g'(x)
    x, lam = jnp.array([0.3, -1.2]), 0.5
    grad = jax.grad(lambda z: jnp.sum(z**3) + jnp.sum(jnp.exp(gradient_reversal(z, lam))))(x)
    expected = 3 * x**2 - lam * jnp.exp(x)
    np.testing.assert_allclose(np.asarray(grad), np.asarray(expected), rtol=1e-6)


def test_gradient_reversal_under_jit_vmap_with_traced_lambda_and_no_gradient_to_lambda():
    lams = jnp.array([0.0, 1.0, 3.0])
    x = jnp.array([1.0, 2.0])
    grads = jax.jit(
        jax.vmap(lambda lam: jax.grad(lambda z: jnp.sum(gradient_reversal(z, lam) ** 2))(x))
    )(lams)
    np.testing.assert_allclose(np.asarray(grads), -np.asarray(lams)[:, None] * 2 * np.asarray(x))
    # lambda receives no gradient: d/dlam of sum(R(x, lam)) with x fixed is 0
    assert float(jax.grad(lambda lam: jnp.sum(gradient_reversal(x, lam)))(2.0)) == 0.0


# ------------------------------------------------------------------------------------
# Loss terms against direct implementations
# ------------------------------------------------------------------------------------


@pytest.mark.parametrize("scale", [1.0, 1e4])
def test_label_cross_entropy_matches_reference(scale):
    logits = scale * _normal(2, (3, 7, 5))
    y = np.random.default_rng(3).integers(0, 5, 7)
    got = float(label_cross_entropy(logits, y))
    assert math.isfinite(got)
    np.testing.assert_allclose(got, np_label_ce(logits, y), rtol=1e-5)


@pytest.mark.parametrize("scale", [1.0, 1e4])
def test_modality_cross_entropy_matches_reference(scale):
    logits = scale * _normal(4, (3, 6, 3))
    got = float(modality_cross_entropy(logits))
    assert math.isfinite(got)
    np.testing.assert_allclose(got, np_modality_ce(logits), rtol=1e-5)


def test_orthogonality_loss_matches_reference_and_known_values():
    inv, spec = _normal(5, (2, 9, 4)), _normal(6, (2, 9, 4))
    np.testing.assert_allclose(float(orthogonality_loss(inv, spec)), np_orth(inv, spec), rtol=1e-5)
    e1, e2 = jnp.eye(4)[:1], jnp.eye(4)[1:2]
    assert float(orthogonality_loss(e1, e2)) == 0.0
    np.testing.assert_allclose(float(orthogonality_loss(e1, -3.0 * e1)), 1.0, rtol=1e-6)
    # invariant to the scale of either part
    np.testing.assert_allclose(
        float(orthogonality_loss(7.0 * inv, 0.1 * spec)),
        float(orthogonality_loss(inv, spec)),
        rtol=1e-5,
    )


def test_loss_terms_gradients_match_finite_differences():
    with jax.enable_x64(True):
        y = jnp.array([0, 2, 1, 1, 0])
        check_grads(
            jax.jit(lambda logits: label_cross_entropy(logits, y)),
            (_normal(7, (2, 5, 3), np.float64),),
            order=1,
            modes=["rev"],
        )
        check_grads(
            jax.jit(modality_cross_entropy),
            (_normal(8, (2, 5, 2), np.float64),),
            order=1,
            modes=["rev"],
        )
        check_grads(
            jax.jit(orthogonality_loss),
            (_normal(9, (2, 5, 3), np.float64), _normal(10, (2, 5, 3), np.float64)),
            order=1,
            modes=["rev"],
        )


def test_discomkd_loss_terms_match_numpy_forward():
    model = _SMALL
    params = _init(jax.random.key(11), model)
    xs, y = _toy_batch(12)
    total, terms = _fast_jit(
        lambda p, xs, y: discomkd_loss(
            p, model, xs, y, lam=0.7, w_adv=0.5, w_mod=2.0, w_orth=3.0, w_aux=0.25
        )
    )(params, xs, y)
    ref = np_discomkd_terms(params, 2, xs, y)
    for name in ("cls", "aux", "adv", "mod", "orth"):
        np.testing.assert_allclose(float(terms[name]), ref[name], rtol=2e-5, err_msg=name)
    expected = (
        ref["cls"] + 0.25 * ref["aux"] + 0.5 * ref["adv"] + 2.0 * ref["mod"] + 3.0 * ref["orth"]
    )
    np.testing.assert_allclose(float(total), expected, rtol=2e-5)


def test_reversal_wiring_in_the_full_objective():
    """Encoders get grad(rest) - lam w_adv grad(adv); the discriminator gets +w_adv grad(adv)."""
    model = _SMALL
    params = _init(jax.random.key(13), model)
    xs, y = _toy_batch(14)
    lam, w_adv = 0.8, 1.5

    def adv_plain(p):  # the adversarial term with no reversal, written from the pieces
        inv = jnp.stack([discomkd_features(p, model, x, v)[0] for v, x in enumerate(xs)])
        return modality_cross_entropy(model.discriminator.apply(p["disc"], inv))

    def rest(p):
        _, t = discomkd_loss(p, model, xs, y, lam=lam, w_adv=w_adv)
        return t["cls"] + t["aux"] + t["mod"] + t["orth"]

    def grads(p):
        g_total = jax.grad(lambda q: discomkd_loss(q, model, xs, y, lam=lam, w_adv=w_adv)[0])(p)
        return g_total, jax.grad(rest)(p), jax.grad(adv_plain)(p)

    g_total, g_rest, g_adv = _fast_jit(grads)(params)
    for part in ("enc",):
        want = jax.tree.map(lambda r, a: r - lam * w_adv * a, g_rest[part], g_adv[part])
        jax.tree.map(
            lambda g, w: np.testing.assert_allclose(g, w, rtol=1e-4, atol=1e-6), g_total[part], want
        )
    jax.tree.map(
        lambda g, w: np.testing.assert_allclose(g, w_adv * w, rtol=1e-4, atol=1e-6),
        g_total["disc"],
        g_adv["disc"],
    )
    # heads see no adversarial gradient
    jax.tree.map(
        lambda g, w: np.testing.assert_allclose(g, w, rtol=1e-5, atol=1e-7),
        g_total["cls"],
        g_rest["cls"],
    )


def test_predict_and_logits_use_one_modality_only():
    model = _SMALL
    params = _init(jax.random.key(15), model)
    x_b = _normal(16, (8, 3))
    logits, pred = _fast_jit(
        lambda p, x: (discomkd_logits(p, model, x, 1), discomkd_predict(p, model, x, 1))
    )(params, x_b)
    assert logits.shape == (8, 4)
    np.testing.assert_array_equal(np.asarray(pred), np.argmax(np.asarray(logits), -1))
    u = np_mlp(params["enc"][1], x_b)
    ref = u @ np.asarray(params["cls"][1]["W"], np.float64).T + np.asarray(params["cls"][1]["b"])
    np.testing.assert_allclose(np.asarray(logits), ref, rtol=1e-4, atol=1e-5)


# ------------------------------------------------------------------------------------
# Training
# ------------------------------------------------------------------------------------


def _toy_problem(seed, n):
    """Three well-separated classes seen through two different linear maps (d 6 and 4)."""
    rng = np.random.default_rng(seed)
    maps = np.random.default_rng(100)
    a, b = maps.standard_normal((3, 6)), maps.standard_normal((3, 4))
    y = rng.integers(0, 3, n)
    s = 4.0 * np.eye(3)[y] + rng.standard_normal((n, 3))
    xa = s @ a + 0.1 * rng.standard_normal((n, 6))
    xb = s @ b + 0.1 * rng.standard_normal((n, 4))
    return (xa.astype(np.float32), xb.astype(np.float32)), y.astype(np.int32)


_MODEL = discomkd_model([6, 4], d_part=4, num_classes=3, encoder="linear", disc_hidden=(8,))
_CFG = DiscomConfig(steps=200, batch_size=32, lr=3e-3)


@pytest.fixture(scope="module")
def train_fn():
    return jax.jit(
        lambda k, xa, xb, y: train_discomkd(k, _MODEL, (xa, xb), y, _CFG), compiler_options=_FAST
    )


@pytest.fixture(scope="module")
def toy():
    return _toy_problem(20, 240), _toy_problem(21, 600)


def test_training_reduces_the_loss_and_learns_the_target_classifier(train_fn, toy):
    (xs, y), (xs_test, y_test) = toy
    params, hist = train_fn(jax.random.key(0), *xs, y)
    total, cls = np.asarray(hist["total"]), np.asarray(hist["cls"])
    assert np.all(np.isfinite(total))
    # The adversarial term is a saddle-point game (it oscillates by design), so the total is
    # compared between the untrained model and the average over the last quarter of training.
    assert total[-50:].mean() < total[0]
    assert cls[-50:].mean() < cls[0]
    # chance error is 2/3; the classes are 4 noise sd apart along each axis
    pred = _fast_jit(lambda p, x: discomkd_predict(p, _MODEL, x, 1))(params, xs_test[1])
    err_b = float(np.mean(np.asarray(pred) != y_test))
    assert err_b < 0.2


def test_same_key_same_result_other_key_other_result(train_fn, toy):
    (xs, y), _ = toy
    p1, h1 = train_fn(jax.random.key(3), *xs, y)
    p2, h2 = train_fn(jax.random.key(3), *xs, y)
    p3, _ = train_fn(jax.random.key(4), *xs, y)
    jax.tree.map(
        lambda a, b: np.testing.assert_array_equal(np.asarray(a), np.asarray(b)), (p1, h1), (p2, h2)
    )
    assert not np.array_equal(np.asarray(p1["cls"][1]["W"]), np.asarray(p3["cls"][1]["W"]))


# ------------------------------------------------------------------------------------
# Input checks and docstrings
# ------------------------------------------------------------------------------------


def test_input_checks():
    model = _SMALL
    params = _init(jax.random.key(0), model)
    xs, y = _toy_batch(1)
    with pytest.raises(ValueError, match="xs"):
        discomkd_loss(params, model, xs[:1], y)
    with pytest.raises(ValueError, match=r"xs\[1\]"):
        discomkd_loss(params, model, (xs[0], xs[0]), y)
    with pytest.raises(ValueError, match="y"):
        discomkd_loss(params, model, xs, y[:-1])
    with pytest.raises(ValueError, match="w_adv"):
        discomkd_loss(params, model, xs, y, w_adv=-1.0)
    with pytest.raises(ValueError, match="lam"):
        discomkd_loss(params, model, xs, y, lam=-0.5)
    with pytest.raises(ValueError, match="w_aux"):
        discomkd_loss(params, model, xs, y, w_aux=float("nan"))
    with pytest.raises(ValueError, match="modality"):
        discomkd_predict(params, model, xs[1], 2)
    with pytest.raises(ValueError, match="d_ins"):
        discomkd_model([5], 2, 4)
    with pytest.raises(ValueError, match="d_part"):
        discomkd_model([5, 3], 0, 4)
    with pytest.raises(ValueError, match="num_classes"):
        discomkd_model([5, 3], 2, 1)
    with pytest.raises(ValueError, match="encoder"):
        discomkd_model([5, 3], 2, 4, encoder="cnn")
    with pytest.raises(ValueError, match="steps"):
        DiscomConfig(steps=0)
    with pytest.raises(ValueError, match="lr"):
        DiscomConfig(lr=0.0)
    with pytest.raises(ValueError, match="lam"):
        DiscomConfig(lam=-1.0)
    with pytest.raises(ValueError, match="logits"):
        modality_cross_entropy(jnp.zeros((2, 4, 3)))
    with pytest.raises(ValueError, match="labels"):
        label_cross_entropy(jnp.zeros((2, 4, 3)), jnp.zeros((5,), jnp.int32))
    with pytest.raises(ValueError, match="inv and spec"):
        orthogonality_loss(jnp.zeros((3, 2)), jnp.zeros((3, 4)))
    with pytest.raises(ValueError, match="cfg"):
        train_discomkd(jax.random.key(0), model, xs, y, {"steps": 3})


# The docstring examples of this module run as doctests (pytest --doctest-modules, setup.cfg).
