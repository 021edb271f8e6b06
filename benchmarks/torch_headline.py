"""The headline grid in plain eager PyTorch: a reference loop for the toolkit's speed benchmark.

The headline grid is the attenuate world (``WorldConfig(channel="attenuate")`` at its defaults),
8 values of t in ``linspace(0, 1, 8)``, seeds 0..4 and the stage-2 losses CMD / CMC / L2 at the
default ``PipelineConfig()`` sizes; in the toolkit it is

    run_sweep({"channel": ["attenuate"], "t": ts, "method": ["cmd", "cmc", "l2"]},
              pipeline=PipelineConfig(), seeds=5)

This script computes the same thing as a careful PyTorch user would write it: eager PyTorch (no
``torch.compile``), float32, ``torch.set_num_threads(<cores>)``, ``torch.optim.Adam``, one model
trained at a time in a plain Python loop (seeds, then t, then methods; nothing is batched
across methods, t or seeds), gradients off wherever nothing is trained. It does not import JAX
or cmcd_theory (the process is timed whole): the world's maps, means and constants come from an
``.npz`` written beforehand by :func:`benchmarks.headline_world.export_world`.

The algorithm is the toolkit's (``cmcd_theory.learn.pipeline``, ``training``, ``objectives``,
``probe``, ``models`` and ``cmcd_theory.worlds``), step for step:

* world: ``y`` uniform over K, ``s = mu_y + sigma xi``; the attenuate channel
  ``s_B = (1 - t) s + sqrt(1 - (1 - t)^2) sigma xi'`` on the coordinates of J; ``x_A = Q_A s``,
  ``x_B = Q_B s_B``; self-supervised views ``Q_A (s + sigma_v xi)``, two per latent;
* encoders: linear, ``u = W clip(x)`` with ``clip`` the projection onto the ball of the world's
  input radius, ``W`` (k, d) initialised ``N(0, 1 / d)``; features ``z = u / max(|u|, 1e-12)``;
* stage 1 (once per seed, shared by every t and method): symmetric InfoNCE (O1, tau) on two
  fresh views of a minibatch of the M source latents, Adam, ``ssl`` steps;
* stage 2 (per t and method): on the m pairs, the student's normalised features against the
  frozen teacher's, CMC (O2, symmetric, tau), CMD (O3, ``p_A = softmax(z_A z_A^T / tau_a)``
  over the in-batch candidates, cross-entropy with ``log softmax(z_B z_A^T / tau_b)``) or L2
  (O4, mean squared distance), Adam, ``distill`` steps; minibatches drawn with replacement;
* stage 3: multinomial logistic regression ``W z + b`` from zero, mean cross-entropy plus
  ``probe_l2 |W|_F^2``, full-batch Adam (lr 0.05), on the n labeled target features; ``err_B``
  is its 0-1 error on ``n_test`` fresh paired samples.

Besides ``err_B``, each row has the other metrics the toolkit computes for a distillation route
(``pipeline._distill_metrics`` and ``run_downstream``): ``err_A_head`` (the route's probe on the
teacher's features of the test set's source inputs), ``err_A_probe`` (a probe fitted on the
teacher's features of the n labeled source inputs), ``distill_train_loss`` and
``distill_pop_loss`` (the per-anchor stage-2 loss -- CMC in its B->A direction -- averaged over
disjoint tuples of ``tuple_size`` pairs: the m training pairs, and ``n_pop`` fresh pairs),
``distill_gap``, ``student_norm`` (``|W_B|_F``) and ``sum_sq_inputs`` (squared clipped target
inputs of the training tuples). The toolkit's ground-truth columns (``tv_latent``,
``bayes_A``, ``bayes_B``, ``pair_agreement``: closed forms and 1-D quadrature in float64, from
the world's config alone) are not computed here.

Random numbers are PyTorch's, not JAX's, so rows agree with the toolkit's in distribution, not
value for value. The toolkit's common random numbers are kept: one seed's data (samples and
channel noise) are the same draws at every t, and its three students start from the same
initialisation and see the same minibatches.

``--threads`` overrides the thread count: on cores shared with other work, one thread avoids
the intra-op thread pool waiting on a descheduled thread (the same rows up to float32 rounding).

    python -m benchmarks.headline_world world.npz
    python -m benchmarks.torch_headline --world world.npz --out rows.csv [--quick]
"""

from __future__ import annotations

import argparse
import csv
import dataclasses
import math
import os
import time
from typing import NamedTuple

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor

METHODS = ("cmd", "cmc", "l2")
COLUMNS = (
    "method",
    "t",
    "seed",
    "err_B",
    "err_A_head",
    "err_A_probe",
    "distill_train_loss",
    "distill_pop_loss",
    "distill_gap",
    "student_norm",
    "sum_sq_inputs",
)


@dataclasses.dataclass(frozen=True)
class Sizes:
    """Sizes and hyper-parameters: the toolkit's ``PipelineConfig()`` defaults."""

    M: int = 4096  # source samples of stage 1
    m: int = 2048  # unlabeled pairs of stage 2
    n: int = 512  # labeled target samples of stage 3
    n_test: int = 20000
    n_pop: int = 16384  # fresh pairs of the stage-2 population loss
    tuple_size: int = 128
    ssl_steps: int = 500
    distill_steps: int = 500
    batch_size: int = 256
    lr: float = 1e-2
    tau: float = 0.1  # InfoNCE (stage 1) and CMC
    tau_a: float = 0.05  # CMD teacher
    tau_b: float = 0.1  # CMD student
    probe_steps: int = 300
    probe_l2: float = 1e-3
    probe_lr: float = 0.05


FULL = Sizes()
#: the toolkit's ``quick_pipeline()``
QUICK = dataclasses.replace(
    FULL, M=2048, m=1024, n=256, n_pop=4096, ssl_steps=200, distill_steps=200, probe_steps=200
)


class World:
    """The headline world, read from the ``.npz`` of ``benchmarks.headline_world``."""

    def __init__(self, path: str) -> None:
        with np.load(path) as f:
            if str(f["channel"]) != "attenuate":
                raise ValueError(f"only the attenuate channel is implemented, got {f['channel']}")
            self.means = torch.from_numpy(f["means"]).float()  # (K, k)
            self.QA_T = torch.from_numpy(f["QA"]).float().T.contiguous()  # (k, d_A)
            self.QB_T = torch.from_numpy(f["QB"]).float().T.contiguous()  # (k, d_B)
            self.mask = torch.from_numpy(f["attenuated_mask"]).float() > 0  # (k,)
            self.sigma = float(f["sigma"])
            self.view_noise = float(f["view_noise"])
            self.radius = float(f["input_radius"])
        self.K, self.k = self.means.shape
        self.d_A, self.d_B = self.QA_T.shape[1], self.QB_T.shape[1]


class Sample(NamedTuple):
    y: Tensor  # (n,) the label (y_B = y: the attenuate channel keeps it)
    x_A: Tensor  # (n, d_A)
    x_B: Tensor  # (n, d_B)


def latents(world: World, n: int, g: torch.Generator) -> tuple[Tensor, Tensor]:
    y = torch.randint(world.K, (n,), generator=g)
    s = world.means[y] + world.sigma * torch.randn(n, world.k, generator=g)
    return y, s


def sample(world: World, n: int, t: float, g: torch.Generator) -> Sample:
    """n labeled pairs: the attenuate channel at knob t on the coordinates of J."""
    y, s = latents(world, n, g)
    xi = torch.randn(n, world.k, generator=g)
    a = 1.0 - t
    mixed = a * s + math.sqrt(max(1.0 - a * a, 0.0)) * world.sigma * xi
    s_b = torch.where(world.mask, mixed, s)
    return Sample(y, s @ world.QA_T, s_b @ world.QB_T)


def clip_to_ball(x: Tensor, radius: float) -> Tensor:
    """Each row of x projected onto the ball of that radius: ``x min(1, r / |x|)``."""
    norm = torch.linalg.vector_norm(x, dim=-1, keepdim=True)
    return x * torch.clamp(radius / norm.clamp_min(1e-30), max=1.0)


def normalize(u: Tensor) -> Tensor:
    return u * torch.rsqrt(torch.clamp((u * u).sum(-1, keepdim=True), min=1e-24))


def init_encoder(d_in: int, d_out: int, g: torch.Generator) -> Tensor:
    return (torch.randn(d_out, d_in, generator=g) * math.sqrt(1.0 / d_in)).requires_grad_()


def features(W: Tensor, x_clipped: Tensor) -> Tensor:
    """Normalised features of a linear encoder on inputs already clipped to the ball."""
    return normalize(x_clipped @ W.T)


# ---- objectives (O1-O4) -------------------------------------------------------------------------


def clip_loss(u: Tensor, v: Tensor, tau: float) -> Tensor:
    """Symmetric (CLIP-form) InfoNCE: O1 between two views, CMC (O2) between modalities."""
    logits = u @ v.T / tau
    target = torch.arange(len(u))
    return 0.5 * (F.cross_entropy(logits, target) + F.cross_entropy(logits.T, target))


def distill_loss(method: str, zb: Tensor, za: Tensor, sz: Sizes) -> Tensor:
    if method == "cmc":
        return clip_loss(zb, za, sz.tau)
    if method == "cmd":
        p_a = torch.softmax(za @ za.T / sz.tau_a, dim=1)  # za is frozen: no gradient
        return -(p_a * torch.log_softmax(zb @ za.T / sz.tau_b, dim=1)).sum(1).mean()
    if method == "l2":
        return ((zb - za) ** 2).sum(1).mean()
    raise ValueError(f"method must be one of {METHODS}, got {method!r}")


def tuple_loss(method: str, zb: Tensor, za: Tensor, sz: Sizes) -> float:
    """Mean per-anchor stage-2 loss over disjoint tuples of ``tuple_size`` consecutive pairs
    (CMC in its B->A direction; CMD with in-batch candidates)."""
    N = sz.tuple_size
    n_t = len(zb) // N
    zb = zb[: n_t * N].reshape(n_t, N, -1)
    za = za[: n_t * N].reshape(n_t, N, -1)
    if method == "l2":
        per_anchor = ((zb - za) ** 2).sum(-1)
    elif method == "cmc":
        logp = torch.log_softmax(zb @ za.transpose(1, 2) / sz.tau, dim=-1)
        per_anchor = -logp.diagonal(dim1=1, dim2=2)
    elif method == "cmd":
        p_a = torch.softmax(za @ za.transpose(1, 2) / sz.tau_a, dim=-1)
        logp_b = torch.log_softmax(zb @ za.transpose(1, 2) / sz.tau_b, dim=-1)
        per_anchor = -(p_a * logp_b).sum(-1)
    else:
        raise ValueError(f"method must be one of {METHODS}, got {method!r}")
    return float(per_anchor.mean())


# ---- the three stages ---------------------------------------------------------------------------


def train_teacher(world: World, sz: Sizes, g: torch.Generator) -> Tensor:
    """Stage 1: InfoNCE on two fresh views of minibatches of M source latents."""
    _, s = latents(world, sz.M, g)
    W = init_encoder(world.d_A, world.k, g)
    opt = torch.optim.Adam([W], lr=sz.lr)
    for _ in range(sz.ssl_steps):
        idx = torch.randint(sz.M, (sz.batch_size,), generator=g)
        u = s[idx] + world.view_noise * torch.randn(2, sz.batch_size, world.k, generator=g)
        z = features(W, clip_to_ball(u @ world.QA_T, world.radius))
        loss = clip_loss(z[0], z[1], sz.tau)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
    return W.detach()


def train_student(
    method: str, xb: Tensor, za: Tensor, world: World, sz: Sizes, g: torch.Generator
) -> Tensor:
    """Stage 2: the student on the m pairs (``xb`` clipped target inputs, ``za`` the frozen
    teacher's normalised features)."""
    W = init_encoder(world.d_B, world.k, g)
    opt = torch.optim.Adam([W], lr=sz.lr)
    for _ in range(sz.distill_steps):
        idx = torch.randint(len(xb), (sz.batch_size,), generator=g)
        loss = distill_loss(method, features(W, xb[idx]), za[idx], sz)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
    return W.detach()


def fit_probe(z: Tensor, y: Tensor, num_classes: int, sz: Sizes) -> tuple[Tensor, Tensor]:
    """Stage 3: L2-regularised multinomial logistic regression by full-batch Adam from zero."""
    W = torch.zeros(num_classes, z.shape[1], requires_grad=True)
    b = torch.zeros(num_classes, requires_grad=True)
    opt = torch.optim.Adam([W, b], lr=sz.probe_lr)
    for _ in range(sz.probe_steps):
        loss = F.cross_entropy(z @ W.T + b, y) + sz.probe_l2 * (W * W).sum()
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
    return W.detach(), b.detach()


def probe_error(probe: tuple[Tensor, Tensor], z: Tensor, y: Tensor) -> float:
    W, b = probe
    return float(((z @ W.T + b).argmax(1) != y).float().mean())


# ---- the grid -----------------------------------------------------------------------------------

TEACHER, DATA, TRAIN = range(3)  # the random streams of a seed


def generator(seed: int, stream: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed * 16 + stream)


def run_cell(
    world: World, teacher: Tensor, t: float, seed: int, sz: Sizes, methods: tuple[str, ...]
) -> list[dict]:
    """Stages 2 and 3 of every method at one (t, seed), and their metrics: one row each."""
    g = generator(seed, DATA)  # the same draws at every t (the toolkit's common random numbers)
    pairs = sample(world, sz.m, t, g)
    lab = sample(world, sz.n, t, g)
    test = sample(world, sz.n_test, t, g)
    pop = sample(world, sz.n_pop, t, g)
    r = world.radius
    with torch.no_grad():
        xb_pairs, xb_pop = clip_to_ball(pairs.x_B, r), clip_to_ball(pop.x_B, r)
        xb_lab, xb_test = clip_to_ball(lab.x_B, r), clip_to_ball(test.x_B, r)
        za_pairs = features(teacher, clip_to_ball(pairs.x_A, r))
        za_pop = features(teacher, clip_to_ball(pop.x_A, r))
        za_lab = features(teacher, clip_to_ball(lab.x_A, r))
        za_test = features(teacher, clip_to_ball(test.x_A, r))
        n_used = (sz.m // sz.tuple_size) * sz.tuple_size
        sum_sq_inputs = float((xb_pairs[:n_used] ** 2).sum())
    err_a_probe = probe_error(fit_probe(za_lab, lab.y, world.K, sz), za_test, test.y)
    rows = []
    for method in methods:
        # every method from the same initialisation and minibatches (common random numbers)
        student = train_student(method, xb_pairs, za_pairs, world, sz, generator(seed, TRAIN))
        with torch.no_grad():
            train_l = tuple_loss(method, features(student, xb_pairs), za_pairs, sz)
            pop_l = tuple_loss(method, features(student, xb_pop), za_pop, sz)
            z_lab, z_test = features(student, xb_lab), features(student, xb_test)
        probe = fit_probe(z_lab, lab.y, world.K, sz)
        rows.append(
            {
                "method": method,
                "t": t,
                "seed": seed,
                "err_B": probe_error(probe, z_test, test.y),
                "err_A_head": probe_error(probe, za_test, test.y),
                "err_A_probe": err_a_probe,
                "distill_train_loss": train_l,
                "distill_pop_loss": pop_l,
                "distill_gap": pop_l - train_l,
                "student_norm": float(torch.linalg.matrix_norm(student)),
                "sum_sq_inputs": sum_sq_inputs,
            }
        )
    return rows


def run_grid(
    world: World, ts: list[float], seeds: list[int], sz: Sizes, methods: tuple[str, ...] = METHODS
) -> list[dict]:
    rows = []
    for seed in seeds:
        teacher = train_teacher(world, sz, generator(seed, TEACHER))  # shared by every t, method
        for t in ts:
            rows += run_cell(world, teacher, t, seed, sz, methods)
    return rows


def cores() -> int:
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(
        prog="python -m benchmarks.torch_headline", description=__doc__.split("\n")[0]
    )
    p.add_argument("--world", required=True, help=".npz of benchmarks.headline_world")
    p.add_argument("--out", required=True, help="CSV of the rows")
    p.add_argument("--seeds", type=int, default=None, help="seeds 0..S-1 (default 5; quick 2)")
    p.add_argument("--ts", type=int, default=None, help="t values in [0, 1] (default 8; quick 4)")
    p.add_argument("--quick", action="store_true", help="quick_pipeline() sizes, 4 t, 2 seeds")
    p.add_argument("--threads", type=int, default=None, help="torch threads (default: cores)")
    args = p.parse_args(argv)
    t0 = time.perf_counter()
    torch.set_num_threads(args.threads or cores())
    sz = QUICK if args.quick else FULL
    n_t = args.ts if args.ts is not None else (4 if args.quick else 8)
    n_s = args.seeds if args.seeds is not None else (2 if args.quick else 5)
    ts = [float(t) for t in np.linspace(0, 1, n_t)]
    rows = run_grid(World(args.world), ts, list(range(n_s)), sz)
    with open(args.out, "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=COLUMNS)
        writer.writeheader()
        writer.writerows(rows)
    print(f"{len(rows)} rows -> {args.out} in {time.perf_counter() - t0:.1f} s")


if __name__ == "__main__":
    main()
