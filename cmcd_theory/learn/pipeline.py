"""One CMCD run on a world, and its baselines on the same data (docs/theory.md, O and B6).

:func:`run_pipeline` (world, method, sizes and hyper-parameters, key) -> named metrics. It is
the composition of

* :func:`train_teacher`: stage 1 on M source samples; depends only on the key's first half,
  never on the channel knob t or the method, so a sweep trains it once per seed and shares it;
* :func:`run_downstream`: stage 2 (distillation) and stage 3 (probe) or a baseline, and the
  evaluation on a large labeled paired test set; :func:`run_downstream_multi` runs several
  methods on the same data and shares what does not depend on the method, and
  :func:`run_downstream_ns` runs them at several label counts n, training every label-free
  stage (distillation, target SSL) once for all of them.

Methods: ``cmc``, ``cmd``, ``l2`` (CMCD with the O2, O3, O4 stage-2 loss), ``cmc_ssl`` (the
combined route, O5: CMC plus :data:`CMC_SSL_WEIGHT` times the target's own InfoNCE on one
encoder, then the probe) and the baselines
``supervised`` (encoder + head trained on the n target labels only), ``target_ssl`` (InfoNCE on
target views of the m unlabeled target samples, then the probe), ``random`` (a random frozen
encoder plus the probe) and ``oracle`` (the probe on the true target latent s_B, which
approaches eps*_B). All methods of one seed see the same samples (common random numbers).

Everything is pure and jit-able with ``method`` and ``config`` static and ``t`` traced, so a
sweep ``vmap`` s seeds and distances.
"""

from __future__ import annotations

import dataclasses
import functools
from collections.abc import Callable, Sequence
from typing import Any, NamedTuple, cast

import jax
import jax.numpy as jnp

from cmcd_theory import validation as V
from cmcd_theory import worlds
from cmcd_theory.learn import divergences
from cmcd_theory.learn.models import Encoder, clip_to_ball, make_encoder, normalize
from cmcd_theory.learn.probe import fit_probe, probe_error
from cmcd_theory.learn.training import (
    DISTILL_METHODS,
    TrainConfig,
    ssl_batch_loss,
    student_features,
    train_distill,
    train_ssl,
    train_supervised,
    tuple_loss,
)


@dataclasses.dataclass(frozen=True)
class PipelineConfig:
    """Sizes and hyper-parameters of one CMCD run (hashable: a static jit argument).

    Attributes:
      M, m, n: source samples (stage 1), unlabeled pairs (stage 2), target labels (stage 3).
      encoder: ``"linear"`` (theory track, ``W clip(x)``) or ``"mlp"``.
      feature_dim: feature dimension p; ``None`` = the world's latent_dim (the Gaussian track
        of B1b needs p = k).
      hidden: hidden widths of the MLP encoder.
      ssl, distill, supervised: :class:`~cmcd_theory.learn.training.TrainConfig` of each stage.
      probe_l2, probe_steps: ridge and full-batch Adam steps of the stage-3 probe.
      n_test: labeled paired test samples (Hoeffding slack <= 0.0087 at delta 0.05 for 20000).
      n_pop: fresh pairs on which the stage-2 population loss is estimated.
      tuple_size: N, pairs per tuple in the stage-2 training and population losses (B4).
    """

    M: int = 4096
    m: int = 2048
    n: int = 512
    encoder: str = "linear"
    feature_dim: int | None = None
    hidden: tuple = (64,)
    ssl: TrainConfig = TrainConfig(steps=500, batch_size=256, lr=1e-2, tau=0.1)
    distill: TrainConfig = TrainConfig(steps=500, batch_size=256, lr=1e-2, tau=0.1)
    supervised: TrainConfig = TrainConfig(steps=500, batch_size=128, lr=1e-2)
    probe_l2: float = 1e-3
    probe_steps: int = 300
    n_test: int = 20000
    n_pop: int = 16384
    tuple_size: int = 128

    def __post_init__(self):
        for name in ("M", "m", "n", "n_test", "n_pop", "tuple_size", "probe_steps"):
            V.positive_int(name, getattr(self, name))
        V.choice("encoder", self.encoder, ("linear", "mlp"))
        if self.feature_dim is not None:
            V.positive_int("feature_dim", self.feature_dim)
        # at least one tuple of tuple_size pairs
        V.integer("m", self.m, lo=self.tuple_size)
        V.integer("n_pop", self.n_pop, lo=self.tuple_size)
        V.real("probe_l2", self.probe_l2, lo=0.0)
        for width in self.hidden:
            V.positive_int("hidden", width)
        for name in ("ssl", "distill", "supervised"):
            if not isinstance(getattr(self, name), TrainConfig):
                raise ValueError(
                    f"{name} must be a TrainConfig, got {type(getattr(self, name)).__name__}"
                )
        object.__setattr__(self, "hidden", tuple(self.hidden))

    def replace(self, **changes) -> PipelineConfig:
        return dataclasses.replace(self, **changes)

    def as_dict(self) -> dict:
        return dataclasses.asdict(self)


def encoders(world: worlds.World, cfg: PipelineConfig) -> tuple[Encoder, Encoder]:
    """Source and target encoders for a world (linear ones clip at the world's input radius)."""
    wc = world.config
    p = cfg.feature_dim or wc.latent_dim
    r = wc.input_radius()
    enc_a = make_encoder(cfg.encoder, wc.d_A, p, clip_radius=r, hidden=cfg.hidden)
    enc_b = make_encoder(cfg.encoder, wc.d_B, p, clip_radius=r, hidden=cfg.hidden)
    return enc_a, enc_b


def teacher_config(cfg: PipelineConfig) -> PipelineConfig:
    """The part of ``cfg`` stage 1 depends on (M, encoder, ssl), other fields at defaults.

    Equal teacher configs hash equally, so a sweep compiles and trains one teacher for every
    m, n and stage-2 setting.
    """
    return PipelineConfig(
        M=cfg.M, encoder=cfg.encoder, feature_dim=cfg.feature_dim, hidden=cfg.hidden, ssl=cfg.ssl
    )


def source_world_config(wc: worlds.WorldConfig) -> worlds.WorldConfig:
    """The world with the target channel at a fixed value: stage 1 never sees the target's
    channel. The source channel's fields (``source_t``, ``source_axes``, G8) are kept, so the
    teacher trains on the source latents ``s_A`` of the world."""
    return wc.replace(channel="attenuate", t=0.0)


def train_teacher(world: worlds.World, key: jax.Array, cfg: PipelineConfig):
    """Stage 1: InfoNCE (O1) on M source samples, two views each (G4). Returns params.

    Depends only on the source side of the world and on :func:`teacher_config` of ``cfg``.
    """
    enc_a, _ = encoders(world, cfg)
    k_data, k_train = jax.random.split(key)
    s = worlds.sample_source(world, k_data, cfg.M)
    return train_ssl(k_train, enc_a, s, lambda k, b: worlds.views(world, k, b, "A"), cfg.ssl)


#: ``fold_in`` tag of the stage-1 statistics' own key stream: they draw their views and fresh
#: samples from ``fold_in(teacher_key, STAGE1_STATS_TAG)``, never from the keys of
#: :func:`train_teacher`, so recording them changes no other number of a run.
STAGE1_STATS_TAG = 1_000_001


def _infonce_tuple_losses(enc, params, x1, x2, tau, N):
    """O1 (symmetric InfoNCE) of each disjoint tuple of N consecutive view pairs, shape (n_t,)."""
    from cmcd_theory.learn.objectives import infonce

    n_t = x1.shape[0] // N
    u = normalize(enc.apply(params, x1[: n_t * N])).reshape(n_t, N, -1)
    v = normalize(enc.apply(params, x2[: n_t * N])).reshape(n_t, N, -1)
    return jax.vmap(lambda a, b: infonce(a, b, tau))(u, v)


@functools.partial(jax.jit, static_argnames=("cfg", "n_pop", "n_view_draws"))
def stage1_statistics(
    world: worlds.World,
    key: jax.Array,
    teacher,
    cfg: PipelineConfig,
    n_pop: int = 65536,
    n_view_draws: int = 4,
) -> dict:
    """Stage-1 statistics of a trained teacher (B5, B5n): the O1 tuple loss on its M training
    samples and on ``n_pop`` fresh ones, in tuples of ``cfg.tuple_size`` samples.

    Args:
      world: the world the teacher was trained on (its source side; :func:`train_teacher`).
      key: the key :func:`train_teacher` was given (it redraws the M training latents with it).
      teacher: the trained encoder params.
      cfg: the run's :class:`PipelineConfig` (``M``, ``tuple_size``, ``ssl.tau``).
      n_pop: fresh source samples (two views each) for the population loss, >= tuple_size.
      n_view_draws: independent view draws of the M training latents averaged in the training
        loss (the training loss is a mean over the latents; views are redrawn every step).

    Returns:
      ``ssl_train_loss`` (mean tuple loss over the ``floor(M / N)`` tuples of training latents,
      averaged over the view draws), ``ssl_pop_loss`` (over ``floor(n_pop / N)`` fresh tuples),
      ``ssl_gap`` (their difference) and ``ssl_pop_loss_se`` (the standard error of the
      population estimate, the tuple losses' standard deviation over sqrt of their number).
      Every draw comes from ``fold_in(key, STAGE1_STATS_TAG)``.
    """
    N = cfg.tuple_size
    if cfg.M < N or n_pop < N:
        raise ValueError(
            f"M and n_pop must be >= tuple_size = {N}, got M = {cfg.M}, n_pop = {n_pop}"
        )
    enc_a, _ = encoders(world, cfg)
    k_data, _ = jax.random.split(key)
    s = worlds.sample_source(world, k_data, cfg.M)  # the teacher's M training latents
    k_views, k_pop, k_pop_views = jax.random.split(jax.random.fold_in(key, STAGE1_STATS_TAG), 3)
    tau = cfg.ssl.tau

    def on(latents, kv):
        x1, x2 = worlds.views(world, kv, latents, "A")
        return _infonce_tuple_losses(enc_a, teacher, x1, x2, tau, N)

    train = jnp.mean(
        jax.vmap(lambda kv: jnp.mean(on(s, kv)))(jax.random.split(k_views, n_view_draws))
    )
    pop_t = on(worlds.sample_source(world, k_pop, n_pop), k_pop_views)
    pop = jnp.mean(pop_t)
    return {
        "ssl_train_loss": train,
        "ssl_pop_loss": pop,
        "ssl_gap": pop - train,
        "ssl_pop_loss_se": jnp.std(pop_t, ddof=1) / jnp.sqrt(pop_t.shape[0]),
    }


@functools.partial(jax.jit, static_argnames=("cfg",))
def train_teacher_on(world: worlds.World, key: jax.Array, latents: jax.Array, cfg: PipelineConfig):
    """Stage 1 (O1) on given source latents with the run's encoder and ``cfg.ssl``, jitted:
    what :func:`train_teacher` does after drawing its M latents (B5n trains its prior encoder
    with it on a half of them)."""
    enc_a, _ = encoders(world, cfg)
    return train_ssl(key, enc_a, latents, lambda k, b: worlds.views(world, k, b, "A"), cfg.ssl)


def _sq_norm_tree(params):
    return sum(jnp.sum(leaf**2) for leaf in jax.tree_util.tree_leaves(params))


def _check_methods(methods) -> tuple:
    methods = (methods,) if isinstance(methods, str) else tuple(methods)
    if not methods:
        raise ValueError(f"methods must name at least one of {METHODS}, got none")
    for method in methods:
        if method not in METHODS:
            raise ValueError(f"method must be one of {METHODS}, got {method!r}")
    if len(set(methods)) != len(methods):
        raise ValueError(f"methods must not repeat, got {methods}")
    return methods


_SOURCE = "source probe"


def _fit_probes(inputs: dict, y: jax.Array, num_classes: int, cfg: PipelineConfig) -> dict:
    """Stage-3 probes on several feature sets with the same labels: ``{name: probe}``.

    Feature sets of one shape are fitted as one ``vmap`` of :func:`fit_probe` (one training
    loop for all of them); each probe is the one :func:`fit_probe` gives for its set alone, up
    to float32 rounding of the batched arithmetic.
    """
    by_shape: dict = {}
    for name, z in inputs.items():
        by_shape.setdefault(z.shape, []).append(name)
    probes = {}
    for names in by_shape.values():
        fitted = jax.vmap(
            lambda z: fit_probe(z, y, num_classes, l2=cfg.probe_l2, steps=cfg.probe_steps)
        )(jnp.stack([inputs[n] for n in names]))
        for i, name in enumerate(names):
            probes[name] = jax.tree_util.tree_map(lambda a, i=i: a[i], fitted)
    return probes


class _Data:
    """What the routes of one (key, t) share: samples, encoders, the label-free training of
    each route (done once, however many label counts use it) and, computed on first use, the
    frozen teacher's features and the stage-2 population sample. The labeled sample of a label
    count n is :meth:`labeled`, drawn from the one labeled-sample key, as a program with that
    single n draws it."""

    def __init__(self, world, key, teacher, cfg, t) -> None:
        self.world, self.teacher, self.cfg = world, teacher, cfg
        self.K = world.config.num_classes
        self.enc_a, self.enc_b = encoders(world, cfg)
        k_pairs, self.k_lab, k_test, self.k_pop, self.k_train = jax.random.split(key, 5)
        self.t = t
        self.pairs = worlds.sample(world, k_pairs, cfg.m, t)
        self.test = worlds.sample(world, k_test, cfg.n_test, t)
        self._once: dict = {}

    def labeled(self, n: int):
        """The n labeled samples of stage 3 (one key: the same draws for every program)."""
        return worlds.sample(self.world, self.k_lab, n, self.t)

    def once(self, name, fn: Callable):
        """``fn()`` computed on the first call for ``name`` and reused after: a label-free
        stage (distillation, target SSL) traced once per program, shared by every label count."""
        if name not in self._once:
            self._once[name] = fn()
        return self._once[name]

    def feats(self, enc, params, x):
        return normalize(enc.apply(params, x))

    def target_feats(self, params, lab) -> tuple[jax.Array, jax.Array]:
        """Normalised target features of the labeled sample ``lab`` and of the test samples."""
        return self.feats(self.enc_b, params, lab.x_B), self.feats(
            self.enc_b, params, self.test.x_B
        )

    @functools.cached_property
    def pop(self):
        return worlds.sample(self.world, self.k_pop, self.cfg.n_pop, self.t)

    @functools.cached_property
    def za_pairs(self):
        return self.feats(self.enc_a, self.teacher, self.pairs.x_A)

    @functools.cached_property
    def za_pop(self):
        return self.feats(self.enc_a, self.teacher, self.pop.x_A)

    @functools.cached_property
    def sum_sq_inputs(self):
        n_used = (self.cfg.m // self.cfg.tuple_size) * self.cfg.tuple_size
        xb = self.pairs.x_B[:n_used]
        if self.enc_b.name == "linear":
            xb = clip_to_ball(xb, self.world.config.input_radius())
        return jnp.sum(xb**2)


class RouteOutput(NamedTuple):
    """What a route's feature function returns: the target encoder params (or None), its own
    head (or None: then a stage-3 probe is fitted on ``z_lab``), the labeled and test features,
    and extra metrics (e.g. the stage-2 losses)."""

    student: object
    head: dict | None
    z_lab: jax.Array
    z_test: jax.Array
    metrics: dict


def _label_free(d: _Data, method: str, train: Callable, metrics: Callable = lambda s: {}):
    """A label-free route's encoder ``train()``, its test features and ``metrics(encoder)``,
    computed once per program (:meth:`_Data.once`) and shared by every label count."""

    def fit():
        student = train()
        return student, d.feats(d.enc_b, student, d.test.x_B), metrics(student)

    return d.once(method, fit)


def _from_label_free(d: _Data, lab, fitted) -> RouteOutput:
    student, z_test, metrics = fitted
    return RouteOutput(student, None, d.feats(d.enc_b, student, lab.x_B), z_test, metrics)


def _distill_metrics(d: _Data, loss: str, student) -> dict:
    """Stage-2 metrics of a student for the ``loss`` in {cmc, cmd, l2}: its tuple loss on the
    m training pairs and on the ``n_pop`` fresh pairs, their gap, its norm and B4's S."""
    dc, cfg = d.cfg.distill, d.cfg

    def loss_on(x_b, z_a):
        return tuple_loss(
            loss, student_features(d.enc_b, student, x_b, dc), z_a, dc, cfg.tuple_size
        )

    train_l, pop_l = loss_on(d.pairs.x_B, d.za_pairs), loss_on(d.pop.x_B, d.za_pop)
    return dict(
        distill_train_loss=train_l,
        distill_pop_loss=pop_l,
        distill_gap=pop_l - train_l,
        student_norm=jnp.sqrt(_sq_norm_tree(student)),
        sum_sq_inputs=d.sum_sq_inputs,
    )


def _route_distill(d: _Data, method: str, lab) -> RouteOutput:
    """CMCD stage 2 with the O2 / O3 / O4 loss on the m pairs, then the probe."""

    def train():
        return train_distill(d.k_train, d.enc_b, d.pairs.x_B, d.za_pairs, method, d.cfg.distill)

    return _from_label_free(
        d, lab, _label_free(d, method, train, lambda student: _distill_metrics(d, method, student))
    )


#: lambda of the combined route ``cmc_ssl`` (O5): its stage-2 loss is
#: ``L_O2 + CMC_SSL_WEIGHT * L_O1``. Fixed at 1 (the two losses weighted equally) before any
#: scored run and never tuned on one; it is not a field of :class:`PipelineConfig`, so every
#: sweep and the theory arena use this one value.
CMC_SSL_WEIGHT = 1.0


def _route_cmc_ssl(d: _Data, method: str, lab) -> RouteOutput:
    """The combined route (O5): one target encoder trained on the CMC loss (O2) on the m pairs
    plus :data:`CMC_SSL_WEIGHT` times the target's own InfoNCE (O1) on two views of the same
    batch's target inputs ``u_B`` (the views of ``target_ssl``, with its temperature
    ``cfg.ssl.tau``), with the optimiser and steps of distillation (``cfg.distill``); then the
    probe. Its key, initialisation and batches are those of the ``cmc`` route (the views use
    each step's own key), so at weight 0 it is that route. Its stage-2 metrics are the CMC
    part's (:func:`_distill_metrics`)."""

    def ssl_term(params, k, idx):
        return CMC_SSL_WEIGHT * ssl_batch_loss(
            d.enc_b,
            params,
            k,
            d.pairs.u_B[idx],
            lambda kv, b: worlds.views(d.world, kv, b, "B"),
            d.cfg.ssl.tau,
        )

    return _from_label_free(
        d,
        lab,
        _label_free(
            d,
            method,
            lambda: train_distill(
                d.k_train, d.enc_b, d.pairs.x_B, d.za_pairs, "cmc", d.cfg.distill, aux_loss=ssl_term
            ),
            lambda student: _distill_metrics(d, "cmc", student),
        ),
    )


def _route_target_ssl(d: _Data, method: str, lab) -> RouteOutput:
    """InfoNCE on views of the target side of the m pairs (their inputs ``u_B`` carry no label;
    on a nuisance world the views resample a fraction rho of the nuisance, G6), then the probe."""
    return _from_label_free(
        d,
        lab,
        _label_free(
            d,
            method,
            lambda: train_ssl(
                d.k_train,
                d.enc_b,
                d.pairs.u_B,
                lambda k, b: worlds.views(d.world, k, b, "B"),
                d.cfg.ssl,
            ),
        ),
    )


def _route_random(d: _Data, method: str, lab) -> RouteOutput:
    """A random frozen target encoder, then the probe."""
    return _from_label_free(d, lab, _label_free(d, method, lambda: d.enc_b.init(d.k_train)))


def _route_oracle(d: _Data, method: str, lab) -> RouteOutput:
    """The probe on the true target latent s_B (approaches eps*_B)."""
    return RouteOutput(None, None, lab.s_B, d.test.s_B, {})


def _route_supervised(d: _Data, method: str, lab) -> RouteOutput:
    """Encoder and head trained together on the n target labels (no separate probe)."""
    student, head = train_supervised(d.k_train, d.enc_b, lab.x_B, lab.y_B, d.K, d.cfg.supervised)
    return RouteOutput(student, head, *d.target_feats(student, lab), {})


class Route(NamedTuple):
    """A method of :func:`run_downstream_multi`: ``features(data, name, labeled) -> RouteOutput``
    (``labeled``: the stage-3 sample of one label count; a route whose encoder is trained
    without labels trains it once per program through :func:`_label_free`) and whether it
    needs the stage-1 teacher."""

    features: Callable
    uses_teacher: bool = False


ROUTES: dict = {
    **{m: Route(_route_distill, uses_teacher=True) for m in DISTILL_METHODS},
    "supervised": Route(_route_supervised),
    "target_ssl": Route(_route_target_ssl),
    "random": Route(_route_random),
    "oracle": Route(_route_oracle),
    "cmc_ssl": Route(_route_cmc_ssl, uses_teacher=True),
}
METHODS = tuple(ROUTES)
COMBINED_METHODS = ("cmc_ssl",)  # distillation plus the target's own SSL on one encoder (O5)
BASELINES = tuple(m for m, r in ROUTES.items() if not r.uses_teacher)  # target-only routes
TEACHER_METHODS = tuple(m for m, r in ROUTES.items() if r.uses_teacher)
#: metrics that only a route with a teacher measures (NaN on the others), after ``err_B``
TEACHER_METRICS = (
    "err_A_head",
    "err_A_probe",
    "distill_train_loss",
    "distill_pop_loss",
    "distill_gap",
    "student_norm",
    "sum_sq_inputs",
)


def _check_ns(ns) -> tuple:
    ns = tuple(ns) if isinstance(ns, (list, tuple)) else (ns,)
    if not ns:
        raise ValueError("ns must name at least one label count n >= 1, got none")
    ns = tuple(V.positive_int("ns", n) for n in ns)
    if len(set(ns)) != len(ns):
        raise ValueError(f"ns must not repeat, got {ns}")
    return ns


def _same_values(a, b) -> bool:
    """Whether two pytrees hold the very same (traced) arrays, leaf for leaf."""
    la, ta = jax.tree_util.tree_flatten(a)
    lb, tb = jax.tree_util.tree_flatten(b)
    # jaxlib ships no type stub for PyTreeDef (mypy sees an unresolved type); it has __eq__
    return cast(Any, ta) == tb and all(x is y for x, y in zip(la, lb))


def run_downstream_ns(
    world: worlds.World, key: jax.Array, teacher, methods, cfg: PipelineConfig, ns, t=None
) -> dict:
    """Stages 2 and 3 of several methods at several label counts on the same data:
    ``{n: {method: metrics}}``.

    ``run_downstream_ns(..., ns)[n]`` computes what :func:`run_downstream_multi` computes with
    ``cfg.n = n`` (the tests check agreement to float32 rounding): the labeled sample of each
    n is drawn from the same key as there, and what needs no labels -- the pairs, test and
    population samples, the teacher's features, and the encoder of every label-free route
    (distillation, target SSL, random) with its test features and stage-2 losses -- is
    computed once and shared by every n. Only the stage-3 probes and the supervised route run
    once per n. A sweep over n therefore trains stage 2 once per (t, seed), not once per n.

    Args:
      world, key, teacher, methods, t: as in :func:`run_downstream_multi`.
      cfg: the :class:`PipelineConfig` (its ``n`` is not used).
      ns: distinct label counts (integers >= 1; static under ``jit``).

    Returns:
      dict ``n -> method -> metrics`` (see :func:`run_downstream`). The ``"artifacts"`` of a
      method at every n after ``ns[0]`` leave out the entries that are the very values of
      ``ns[0]`` (a label-free route's encoder and test features, the test labels, the teacher,
      the stage-2 arrays): one copy of each, not one per n; take them from
      ``result[ns[0]][method]["artifacts"]`` (as :func:`cmcd_theory.sweeps.sweep.run_chunk` does).
    """
    methods = _check_methods(methods)
    ns = _check_ns(ns)
    uses_teacher = any(ROUTES[m].uses_teacher for m in methods)
    if uses_teacher and teacher is None:
        raise ValueError(f"methods {methods} need the stage-1 teacher params, got teacher=None")
    d = _Data(world, key, teacher, cfg, t)
    nan = jnp.float32(jnp.nan)
    za_test = d.feats(d.enc_a, teacher, d.test.x_A) if uses_teacher else None
    changes_labels = worlds.get_channel(world.config.channel).changes_labels
    results, first = {}, {}
    for n in ns:
        lab = d.labeled(n)
        probe_inputs = {}  # name -> labeled features of a stage-3 probe (fitted together below)
        if uses_teacher:
            probe_inputs[_SOURCE] = d.feats(d.enc_a, teacher, lab.x_A)
        outputs = {}
        for method in methods:
            outputs[method] = ROUTES[method].features(d, method, lab)
            if outputs[method].head is None:
                probe_inputs[method] = outputs[method].z_lab
        if uses_teacher and changes_labels:
            # the source probe learns the source's labels y, every other probe the target's y_B
            src = {_SOURCE: probe_inputs.pop(_SOURCE)}
            probes = {
                **_fit_probes(src, lab.y, d.K, cfg),
                **_fit_probes(probe_inputs, lab.y_B, d.K, cfg),
            }
        else:  # one label vector (y_B = y): every probe in one batched fit
            probes = _fit_probes(probe_inputs, lab.y_B, d.K, cfg)
        per_method = {}
        for method in methods:
            out = _method_metrics(d, method, outputs[method], probes, lab, za_test, nan)
            if n == ns[0]:
                first[method] = out["artifacts"]
            else:  # what is the very value of ns[0] is returned once
                out["artifacts"] = {
                    k: v
                    for k, v in out["artifacts"].items()
                    if not _same_values(v, first[method].get(k))
                }
            per_method[method] = out
        results[n] = per_method
    return results


def _method_metrics(d: _Data, method: str, o: RouteOutput, probes: dict, lab, za_test, nan) -> dict:
    """One method's metrics at one label count (:func:`run_downstream_ns`): NaN for what the
    route does not measure, the route's own metrics, the target test error of its head (or its
    stage-3 probe), on a route with a teacher the source test errors of that head and of the
    source probe, and the artifacts (with the stage-2 arrays on a distilling route)."""
    out = dict.fromkeys(TEACHER_METRICS, nan)
    out.update(o.metrics)
    probe = o.head if o.head is not None else probes[method]
    out["err_B"] = probe_error(probe, o.z_test, d.test.y_B)
    if ROUTES[method].uses_teacher:
        assert za_test is not None  # computed whenever a method uses the teacher
        out["err_A_head"] = probe_error(probe, za_test, d.test.y)
        out["err_A_probe"] = probe_error(probes[_SOURCE], za_test, d.test.y)
    out["artifacts"] = {
        "probe": probe,
        "z_train": o.z_lab,
        "y_train": lab.y_B,
        "z_test": o.z_test,
        "y_test": d.test.y_B,
        "student": o.student,
        "teacher": d.teacher if ROUTES[method].uses_teacher else None,
    }
    if "distill_pop_loss" in o.metrics:
        # the stage-2 pairs and population pairs (B4n needs the per-pair arrays)
        out["artifacts"]["stage2"] = {
            "x_B": d.pairs.x_B,
            "z_A": d.za_pairs,
            "x_B_pop": d.pop.x_B,
            "z_A_pop": d.za_pop,
        }
    return out


def run_downstream_multi(
    world: worlds.World, key: jax.Array, teacher, methods, cfg: PipelineConfig, t=None
) -> dict:
    """Stages 2 and 3 of several methods on the same data: ``{method: metrics}``.

    Every method of one key sees the same samples and the same training key (common random
    numbers), so ``run_downstream_multi(..., methods)[m]`` computes what :func:`run_downstream`
    computes for ``m`` alone (the tests check agreement to float32 rounding; the probes of all
    methods are fitted in one batched loop). What does not depend on the method is
    computed once: the four samples (pairs, labeled, test, population), the frozen teacher's
    features on them and the source probe (``err_A_probe``). A sweep over methods runs them
    as one program. Each method is one small feature function in :data:`ROUTES` (adding a
    route is adding a function). Target labels are ``y_B`` (the source's ``y`` unless the
    channel changes labels, G7); the source probe and ``err_A_head`` use the source's ``y``.
    It is :func:`run_downstream_ns` at the one label count ``cfg.n``.

    Args:
      world, key, cfg, t: as in :func:`run_downstream`.
      teacher: stage-1 teacher params (needed if any method is in :data:`TEACHER_METHODS`).
      methods: a tuple of distinct names from :data:`METHODS` (static under ``jit``).

    Returns:
      dict ``method -> metrics`` (see :func:`run_downstream`).
    """
    return run_downstream_ns(world, key, teacher, methods, cfg, (cfg.n,), t)[cfg.n]


def run_downstream(
    world: worlds.World, key: jax.Array, teacher, method: str, cfg: PipelineConfig, t=None
) -> dict:
    """Stages 2 and 3 (or a baseline) given stage-1 teacher params, and the evaluation.

    Returns:
      dict of scalar metrics (NaN where a metric does not apply to the method):
      ``err_B`` target test error; ``err_A_head`` the same head on source features;
      ``err_A_probe`` a probe fitted on source features of the n labeled samples;
      ``distill_train_loss`` / ``distill_pop_loss`` / ``distill_gap`` the stage-2 tuple loss on
      the m training pairs and on ``n_pop`` fresh pairs; ``student_norm`` the Frobenius norm of
      the student params; ``sum_sq_inputs`` the sum of squared clipped target inputs over the
      training tuples (B4's S); plus under ``"artifacts"`` the arrays the bounds need
      (probe, training features and labels, encoder params).
    """
    return run_downstream_multi(world, key, teacher, (method,), cfg, t)[method]


def run_pipeline(
    world: worlds.World, key: jax.Array, method: str, cfg: PipelineConfig = PipelineConfig(), t=None
) -> dict:
    """One CMCD run (stages 1-3) or one baseline, evaluated (see :func:`run_downstream`).

    Args:
      world: a :class:`~cmcd_theory.worlds.World`.
      key: PRNG key; its first half trains the teacher, its second draws the data of stages
        2-3 and trains them.
      method: one of :data:`METHODS`.
      cfg: :class:`PipelineConfig`.
      t: channel knob (may be traced); default ``world.config.t``.

    Returns:
      the metrics dict of :func:`run_downstream`.

    Example:
      >>> w = worlds.make_world(worlds.WorldConfig(channel="noise"))
      >>> tiny = PipelineConfig(M=256, m=256, n=64, n_test=1000, n_pop=256, tuple_size=64,
      ...                       probe_steps=50, ssl=TrainConfig(steps=50),
      ...                       distill=TrainConfig(steps=50))
      >>> out = run_pipeline_jit(w, jax.random.key(0), "cmc", tiny, 0.5)  # jitted run_pipeline
      >>> float(out["err_B"]) < 0.75
      True
    """
    k_teacher, k_down = jax.random.split(key)
    teacher = train_teacher(world, k_teacher, cfg) if method in TEACHER_METHODS else None
    return run_downstream(world, k_down, teacher, method, cfg, t)


run_pipeline_jit = jax.jit(run_pipeline, static_argnames=("method", "cfg"))


@functools.lru_cache(maxsize=4096)
def _truth(config: worlds.WorldConfig) -> tuple:
    bayes_b = divergences.bayes_error_exact(config, "B")
    return (
        divergences.tv_latent(config),
        # the source ignores t; its own channel (G8) is kept by replace
        divergences.bayes_error_exact(config.replace(t=0.0), "A"),
        float("nan") if bayes_b is None else bayes_b,
        divergences.pair_agreement(config),
    )


def ground_truth(config: worlds.WorldConfig, t: float | None = None) -> dict:
    """The world's exact ground truth at knob ``t`` (G5b, G7, G8), host floats:

    ``tv_latent`` (the channel's closed form, ``TV(law(s_A, y), law(s_B, y_B))`` with the
    source's own channel, G8: NaN where no closed form holds), ``bayes_A`` and ``bayes_B``
    (eps*_A of the source latent s_A, eps*_B, by the 1-D quadrature of G5b; ``bayes_B`` is
    NaN for a user channel that states no exact form) and ``pair_agreement``
    (``P(y_B = y)``). Deterministic in (config, t), so memoised per process
    (``ground_truth.cache_clear()`` empties the memo). The latent mutual informations of G8
    are Monte Carlo estimates, not memoised here: see
    :func:`cmcd_theory.worlds.latent_mutual_information`.
    """
    t = config.t if t is None else float(t)
    tv, a, b, agree = _truth(config.replace(t=t))
    return {"tv_latent": tv, "bayes_A": a, "bayes_B": b, "pair_agreement": agree}


ground_truth.cache_clear = _truth.cache_clear  # type: ignore[attr-defined]  # memo handle


def run_cell(
    world: worlds.World,
    key: jax.Array,
    method: str,
    cfg: PipelineConfig = PipelineConfig(),
    t: float | None = None,
) -> dict:
    """One pipeline call as one result row: host floats of every metric of
    :func:`run_pipeline` (jitted) plus the world's :func:`ground_truth` at ``t``.

    This is what a sweep writes per (cell, seed); :func:`cmcd_theory.sweeps.sweep.run_sweep`
    computes the same rows for a whole grid at once, sharing what the cells have in common.

    Example:
      >>> w = worlds.make_world(worlds.WorldConfig(channel="noise"))
      >>> tiny = PipelineConfig(M=256, m=256, n=64, n_test=1000, n_pop=256, tuple_size=64,
      ...                       probe_steps=50, ssl=TrainConfig(steps=50),
      ...                       distill=TrainConfig(steps=50))
      >>> row = run_cell(w, jax.random.key(0), "cmc", tiny, t=0.5)
      >>> sorted(k for k in row if k.startswith(("tv", "bayes", "pair")))
      ['bayes_A', 'bayes_B', 'pair_agreement', 'tv_latent']
    """
    t = world.config.t if t is None else float(t)
    out = run_pipeline_jit(world, key, method, cfg, t)
    out.pop("artifacts")
    row = {k: float(v) for k, v in jax.device_get(out).items()}
    row.update(ground_truth(world.config, t))
    return row


def seed_keys(seeds: Sequence[int]):
    """Per-seed ``(teacher_key, downstream_key)``, exactly as :func:`run_pipeline` splits them."""
    ks = jnp.stack([jax.random.key_data(jax.random.split(jax.random.key(s))) for s in seeds])
    return jax.random.wrap_key_data(ks[:, 0]), jax.random.wrap_key_data(ks[:, 1])
