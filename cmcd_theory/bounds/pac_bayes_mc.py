r"""B3 / B3p's Monte Carlo over weight draws: how many (point, draw) pairs the perturbed probe
gets wrong, at every posterior scale at once (docs/theory.md, B3).

Point i (label j, base scores :math:`b_k = (\hat W \tilde z_i)_k`, norm N) under the draw
:math:`\xi` (K standard normals) at scale s has the scores
:math:`\mathrm{fl}(\mathrm{fl}(N\xi_k)s + b_k)` and errs iff a k != j scores at least as
high as j (ties count) -- the *reference arithmetic*, :func:`reference_counts`. In exact
arithmetic, with :math:`a_k = b_j - b_k` and :math:`q_k = N(\xi_k - \xi_j)/a_k`, that is
:math:`s q_k \ge 1` for a k with :math:`a_k > 0` or :math:`s q_k \le 1` for a k with
:math:`a_k < 0`: one or two numbers per (point, draw) decide every s, so the work does not
grow with the number of scales. Where :math:`s q` lies within a relative ``TOL`` of 1, the
rounding of the reference arithmetic could decide otherwise, so those few (point, draw, s)
are recounted by the reference arithmetic itself, as are the points whose rounding bound
:math:`8\varepsilon/\min_k |a_k|` exceeds ``TOL`` (ties and near-ties of base scores) and any
piece of draws with :math:`|\xi| >` ``XCAP``. The counts are therefore those of the reference
arithmetic, draw for draw.

The draws are ``np.random.default_rng(seed)``'s standard normals in (draw, point, class)
order, generated in pieces of about ``PIECE`` normals (the order a single fill gives, so the
numbers do not depend on the piece size), by a second thread a few pieces ahead of the
counting on large runs.
"""

from __future__ import annotations

import contextlib
import queue
import threading

import numpy as np

#: relative margin around s q = 1 inside which a (point, draw, s) is recounted by the reference
TOL = 1e-6
#: a piece of draws with a |xi| above this is counted by the reference arithmetic alone
XCAP = 12.0
#: standard normals generated and counted at once (cache-sized pieces)
PIECE = 1 << 18
#: pieces generated ahead by a second thread while the counting runs (large runs only)
PREFETCH = 3
#: progress callbacks (:func:`monte_carlo_progress`); the innermost gets the pairs counted
_PROGRESS: list = []


@contextlib.contextmanager
def monte_carlo_progress(callback):
    """While the block runs, :func:`error_counts` reports its progress to ``callback(k)``: k
    more (point, draw) pairs counted. For a progress bar above this pure module
    (``cmcd-certify``)."""
    _PROGRESS.append(callback)
    try:
        yield
    finally:
        _PROGRESS.remove(callback)


def reference_counts(xi, norms, base, y, sigmas) -> np.ndarray:
    """Error counts per sigma over the draws ``xi`` (..., b, K) of b points (norms (b,), base
    scores (b, K), labels (b,)) by the reference arithmetic: ``noise = N xi``,
    ``scores = noise s + base``, an error where ``correct - max(other scores) <= 0``."""
    noise = norms[:, None] * xi
    is_label = np.zeros(base.shape, bool)
    np.put_along_axis(is_label, y[:, None], True, axis=-1)
    is_label = np.broadcast_to(is_label, noise.shape)
    idx = np.broadcast_to(y[:, None], noise.shape[:-1] + (1,))
    out = np.zeros(sigmas.size, np.int64)
    scores = np.empty_like(noise)
    for g, s in enumerate(sigmas):
        np.multiply(noise, s, out=scores)
        scores += base
        correct = np.take_along_axis(scores, idx, axis=-1)[..., 0]
        np.copyto(scores, -np.inf, where=is_label)
        out[g] = np.count_nonzero(correct - scores.max(axis=-1) <= 0)
    return out


class _Points:
    """Per-point constants: base scores, norms, labels, and each point's class -- ``right``
    (every a_k > 0), ``wrong`` (some a_k < 0) or ``exact`` (a tie, a near-tie, or a rounding
    bound above TOL: counted by the reference arithmetic) -- with ``c_pos`` / ``c_neg`` =
    N / a_k where a_k > 0 / a_k < 0 (0 elsewhere and at the label)."""

    def __init__(self, z, y, w, smax: float):
        self.base = z @ w.T
        self.norms = np.linalg.norm(z, axis=1)
        self.y = y
        n, K = self.base.shape
        a = np.take_along_axis(self.base, y[:, None], axis=1) - self.base
        other = np.ones((n, K), bool)
        np.put_along_axis(other, y[:, None], False, axis=1)
        amin = np.where(other, np.abs(a), np.inf).min(axis=1)
        # rounding of the reference scores: |fl(fl(N xi) s + b) - (N xi s + b)| <= eps
        eps = (
            4
            * np.finfo(np.float64).eps
            * (self.norms * XCAP * smax + np.abs(self.base).max(axis=1))
        )
        with np.errstate(divide="ignore", invalid="ignore"):
            ok = (amin > 0) & (8 * eps / amin + 1e-12 <= TOL)
            c = np.where(other & (a != 0), self.norms[:, None] / np.where(a != 0, a, 1.0), 0.0)
        self.neg = other & (a < 0)
        self.wrong = ok & self.neg.any(axis=1)
        self.right = ok & ~self.wrong
        self.exact = ~ok
        self.c_pos = np.where(a > 0, c, 0.0)
        self.c_neg = np.where(self.neg, c, 0.0)
        self._blocks: dict = {}

    def block(self, i0: int, c: int, b: int) -> dict:
        """The constants of a piece of c draws of the points i0..i0+b, laid out per class
        (K rows of c * b) as the counting uses them, and kept (every draw visits the same
        blocks): the flat index of each row's label draw, ``c_pos`` of the right points (0 for
        the others: their max is 0, never an error), and the rows, points and constants of
        the wrong and exact points."""
        if (i0, c, b) not in self._blocks:
            sl = slice(i0, i0 + b)
            K = self.base.shape[1]
            rows = np.arange(c * b)
            pts = np.tile(np.arange(i0, i0 + b), c)
            wr = rows[np.tile(self.wrong[sl], c)]
            self._blocks[(i0, c, b)] = {
                "label": rows * K + self.y[pts],
                "pts": pts,
                "c_right": np.ascontiguousarray((self.c_pos[pts] * self.right[pts][:, None]).T),
                "wrong_rows": wr,
                "c_pos_w": np.ascontiguousarray(self.c_pos[pts[wr]].T),
                "c_neg_w": np.ascontiguousarray(self.c_neg[pts[wr]].T),
                "not_neg_w": np.ascontiguousarray(np.where(self.neg[pts[wr]], 0.0, np.inf).T),
                "exact_rows": rows[np.tile(self.exact[sl], c)],
            }
        return self._blocks[(i0, c, b)]


def error_counts(z, y, w, sigmas, rng, n_draws: int, chunk: int) -> np.ndarray:
    """Error counts per sigma of ``n_draws`` draws per point from ``rng``, generated in pieces
    of about :data:`PIECE` normals in the order one ``rng.standard_normal((n_draws, n, K))``
    fills them (whole draws of every point, at most ``chunk`` at once, or a block of points
    of one draw). Positive scales are counted by :func:`_piece_counts`, others (0) by the
    reference arithmetic."""
    n, K = z.shape[0], w.shape[0]
    fast = np.isfinite(sigmas) & (sigmas > 0)
    P = _Points(z, y, w, float(sigmas[fast].max()) if fast.any() else 0.0)
    with np.errstate(divide="ignore"):
        lo, hi = (1 - TOL) / sigmas[fast], (1 + TOL) / sigmas[fast]
    rows = max(1, PIECE // K)
    if n <= rows:
        per = max(1, min(chunk, rows // n))
        shapes = [(0, min(per, n_draws - d), n) for d in range(0, n_draws, per)]
    else:
        shapes = [(i0, 1, min(rows, n - i0)) for _ in range(n_draws) for i0 in range(0, n, rows)]
    report = _PROGRESS[-1] if _PROGRESS else None
    counts = np.zeros(sigmas.size, np.int64)
    work: dict = {}
    for (i0, c, b), xi in zip(shapes, _pieces(rng, shapes, K)):
        sl = slice(i0, i0 + b)
        if fast.any():
            counts[fast] += _piece_counts(xi, P, i0, sigmas[fast], lo, hi, work)
        if not fast.all():
            counts[~fast] += reference_counts(xi, P.norms[sl], P.base[sl], P.y[sl], sigmas[~fast])
        if report is not None:
            report(c * b)
    return counts


def _pieces(rng, shapes: list, K: int):
    """The pieces ``rng.standard_normal((c, b, K))`` for ``(i0, c, b)`` in ``shapes``, in
    order (so the draws are the ones a single fill gives); for many pieces, generated by a
    second thread :data:`PREFETCH` pieces ahead while the caller counts."""
    if len(shapes) < 4 * PREFETCH:
        for _, c, b in shapes:
            yield rng.standard_normal((c, b, K))
        return
    q: queue.Queue = queue.Queue(maxsize=PREFETCH)
    stop = threading.Event()

    def produce():
        try:
            for _, c, b in shapes:
                if stop.is_set():
                    return
                q.put(rng.standard_normal((c, b, K)))
        except BaseException as e:  # noqa: BLE001 - handed to the consumer
            q.put(e)

    t = threading.Thread(target=produce, name="b3-draws", daemon=True)
    t.start()
    try:
        for _ in shapes:
            xi = q.get()
            if isinstance(xi, BaseException):
                raise xi
            yield xi
    finally:
        stop.set()
        while t.is_alive():  # unblock a producer waiting on a full queue
            try:
                q.get(timeout=0.01)
            except queue.Empty:
                pass


def _piece_counts(xi, P: _Points, i0: int, sigmas, lo, hi, work: dict) -> np.ndarray:
    """Error counts per (positive) sigma of the piece ``xi`` (c, b, K) of the points i0..:
    right points by :func:`_right_counts`, wrong ones by :func:`_wrong_counts`, exact ones
    (and a piece with a draw beyond XCAP) by :func:`reference_counts`."""
    c, b, K = xi.shape
    if xi.max() > XCAP or -xi.min() > XCAP:
        sl = slice(i0, i0 + b)
        return reference_counts(xi, P.norms[sl], P.base[sl], P.y[sl], sigmas)
    blk = P.block(i0, c, b)
    flat = xi.reshape(c * b, K)
    xj = np.take(xi.reshape(-1), blk["label"])  # each row's draw at its label
    if (c * b) not in work:
        work[c * b] = (np.empty(c * b), np.empty(c * b), np.empty(c * b, bool))
    mp, tmp, mask = work[c * b]
    for k in range(K):  # max over k of (xi_k - xi_j) c_k
        np.subtract(flat[:, k], xj, out=tmp)
        np.multiply(tmp, blk["c_right"][k], out=mp if k == 0 else tmp)
        if k:
            np.maximum(mp, tmp, out=mp)
    out = _right_counts(mp, mask, sigmas, lo, hi, flat, blk["pts"], P)
    wr = blk["wrong_rows"]
    if wr.size:
        out += _wrong_counts(flat[wr], xj[wr], blk, sigmas, lo, hi, blk["pts"][wr], P)
    er = blk["exact_rows"]
    if er.size:
        p = blk["pts"][er]
        out += reference_counts(flat[er][None], P.norms[p], P.base[p], P.y[p], sigmas)
    return out


def _right_counts(mp, mask, sigmas, lo, hi, flat, pts, P: _Points) -> np.ndarray:
    """Errors per sigma s of rows with the number ``mp`` (max of q; 0 for rows of other
    points): an error iff s mp >= 1. Sure where mp > ``hi`` = (1 + tol) / s, none where
    mp <= ``lo`` = (1 - tol) / s; in between, recounted by :func:`reference_counts`."""
    out = np.zeros(sigmas.size, np.int64)
    for g in range(sigmas.size):
        out[g] = np.count_nonzero(np.greater(mp, hi[g], out=mask))
        near = np.count_nonzero(np.greater(mp, lo[g], out=mask)) - out[g]
        if near:
            r = np.flatnonzero(mask & (mp <= hi[g]))
            out[g] += reference_counts(
                flat[r][None], P.norms[pts[r]], P.base[pts[r]], P.y[pts[r]], sigmas[g : g + 1]
            )[0]
    return out


def _wrong_counts(xw, xj, blk: dict, sigmas, lo, hi, pts, P: _Points) -> np.ndarray:
    """Errors per sigma s of the rows ``xw`` (draws of wrong points ``pts``, label draws
    ``xj``): an error iff s mp >= 1 or s qn <= 1, mp the max of q over a_k > 0 and qn the min
    over a_k < 0. Sure where mp > ``hi`` or qn < ``lo``, none where mp <= ``lo`` and
    qn >= ``hi``; in between, recounted by :func:`reference_counts`."""
    K = xw.shape[1]
    d = [xw[:, k] - xj for k in range(K)]
    mp = np.max([d[k] * blk["c_pos_w"][k] for k in range(K)], axis=0)
    qn = np.min([d[k] * blk["c_neg_w"][k] + blk["not_neg_w"][k] for k in range(K)], axis=0)
    out = np.zeros(sigmas.size, np.int64)
    for g in range(sigmas.size):
        err = (mp > hi[g]) | (qn < lo[g])
        out[g] = np.count_nonzero(err)
        border = ~err & ((mp > lo[g]) | (qn < hi[g]))
        if border.any():
            r = np.flatnonzero(border)
            out[g] += reference_counts(
                xw[r][None], P.norms[pts[r]], P.base[pts[r]], P.y[pts[r]], sigmas[g : g + 1]
            )[0]
    return out
