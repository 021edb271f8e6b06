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
counting on large runs; a small stream is kept for another count over the same draws.
:func:`_stochastic_errors` (B3's and B3p's entry) memoises the error rates of a plain seed.
"""

from __future__ import annotations

import collections
import contextlib
import hashlib
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


def _rows(ufunc, a: np.ndarray, *args) -> np.ndarray:
    """``ufunc(*args, a.T)`` laid out per class: K contiguous rows of n, ``a`` (n, K)."""
    return ufunc(*args, a.T, out=np.empty(a.shape[::-1]))


class _Points:
    """Per-point constants: base scores, norms, labels, and each point's class -- ``right``
    (every a_k > 0), ``wrong`` (some a_k < 0) or ``exact`` (a tie, a near-tie, or a rounding
    bound above TOL: counted by the reference arithmetic) -- with ``a`` (a_k = b_j - b_k)
    per class (K rows of n), from which :meth:`block` takes ``c_pos`` / ``c_neg`` = N / a_k
    where a_k > 0 / a_k < 0 (0 elsewhere and at the label)."""

    def __init__(self, z, y, w, smax: float):
        self.base = z @ w.T
        self.norms = np.linalg.norm(z, axis=1)
        self.y = y
        at = (y, np.arange(y.size))  # each point's label entry, per class
        a = _rows(np.subtract, self.base, self.base[at[::-1]])  # b_j - b_k (0 at the label)
        a_other = np.abs(a)
        a_other[at] = np.inf
        amin = np.minimum.reduce(a_other, axis=0)  # min over k != j of |a_k|
        # rounding of the reference scores: |fl(fl(N xi) s + b) - (N xi s + b)| <= eps
        eps = (
            4
            * np.finfo(np.float64).eps
            * (self.norms * XCAP * smax + np.maximum.reduce(_rows(np.abs, self.base), axis=0))
        )
        with np.errstate(divide="ignore", invalid="ignore"):
            ok = (amin > 0) & (8 * eps / amin + 1e-12 <= TOL)
        self.a = a
        self.neg = a < 0  # (never at the label, where a = 0)
        self.wrong = ok & np.logical_or.reduce(self.neg, axis=0)
        self.right = ok & ~self.wrong
        self.exact = ~ok
        self._blocks: dict = {}
        self._labels: dict = {}

    def block(self, i0: int, b: int) -> dict:
        """The constants of the points i0..i0+b laid out as the counting uses them, and kept
        (every draw visits the same blocks): ``c_right``, ``c_pos`` of the right points per
        class (K rows of b; 0 for the others: their max is 0, never an error); ``wrong``, the
        indices in the block of the wrong points, with their ``c_pos``, ``c_neg`` and
        ``not_neg`` (0 where a_k < 0, inf elsewhere; K rows each), and ``exact``, those of
        the exact points. Where wrong points are many (over a quarter), every right and
        wrong point is counted by the wrong points' two-sided rule instead (no gathers):
        ``wrong`` is None, the constants have all b points (a right point has no a_k < 0,
        an exact one neither, and 0 for ``c_pos``: it never counts there)."""
        if (i0, b) not in self._blocks:
            sl = slice(i0, i0 + b)
            a, neg = self.a[:, sl], self.neg[:, sl]
            with np.errstate(divide="ignore", invalid="ignore"):
                c = self.norms[sl] / a  # N / a_k (inf or nan where a_k = 0: never used there)
            wr = np.flatnonzero(self.wrong[sl])
            two_sided = 4 * wr.size > b  # many wrong points: every point two-sided, no gathers
            if two_sided:
                exact = self.exact[sl]
                pos, c_w, neg_w, c_right = a > 0, c, neg, None
                if exact.any():  # no a_k > 0 or < 0 for them here
                    pos, neg_w = pos & ~exact, neg & ~exact
            else:
                c_right = np.where((a > 0) & self.right[sl], c, 0.0)
                pos, c_w, neg_w = a[:, wr] > 0, c[:, wr], neg[:, wr]
            self._blocks[(i0, b)] = {
                "c_right": c_right,
                "wrong": None if two_sided else wr,
                "c_pos_w": np.where(pos, c_w, 0.0),
                "c_neg_w": np.where(neg_w, c_w, 0.0),
                "not_neg_w": np.where(neg_w, 0.0, np.inf),
                "exact": np.flatnonzero(self.exact[sl]),
            }
        return self._blocks[(i0, b)]

    def labels(self, i0: int, c: int, b: int) -> np.ndarray:
        """Flat indices, in a piece (c, b, K) of draws of the points i0..i0+b, of each
        (draw, point)'s draw at the point's label (kept, as the blocks)."""
        if (i0, c, b) not in self._labels:
            rows = np.arange(c * b).reshape(c, b)
            self._labels[(i0, c, b)] = rows * self.base.shape[1] + self.y[i0 : i0 + b]
        return self._labels[(i0, c, b)]


#: streams of draws kept for another count over the same draws (:func:`error_counts`'
#: ``draws_key``): the most normals one kept stream may hold, and all kept streams together
#: (64 MB; the least recently used streams are dropped first)
KEPT_DRAWS_MAX = 1 << 21
KEPT_DRAWS_TOTAL = 1 << 23
_KEPT: collections.OrderedDict = collections.OrderedDict()
_KEPT_LOCK = threading.Lock()


def error_counts(z, y, w, sigmas, rng, n_draws: int, chunk: int, draws_key=None) -> np.ndarray:
    """Error counts per sigma of ``n_draws`` draws per point from ``rng``, generated in pieces
    of about :data:`PIECE` normals in the order one ``rng.standard_normal((n_draws, n, K))``
    fills them (whole draws of every point, at most ``chunk`` at once, or a block of points
    of one draw). Positive scales are counted by :func:`_piece_counts`, others (0) by the
    reference arithmetic. ``draws_key`` (optional, hashable) names the generator's seed: a
    stream of at most :data:`KEPT_DRAWS_MAX` normals is then kept (up to
    :data:`KEPT_DRAWS_TOTAL` normals in all), and a later call with the same key and shapes
    counts the same draws again without generating them (another probe on the same points
    and seed: B3p's stochastic test error beside B3's, the runs of a sweep that share a
    seed and sizes)."""
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
    for (i0, c, b), xi in zip(shapes, _kept_pieces(rng, shapes, K, draws_key)):
        sl = slice(i0, i0 + b)
        if fast.any():
            counts[fast] += _piece_counts(xi, P, i0, sigmas[fast], lo, hi)
        if not fast.all():
            counts[~fast] += reference_counts(xi, P.norms[sl], P.base[sl], P.y[sl], sigmas[~fast])
        if report is not None:
            report(c * b)
    return counts


def _kept_pieces(rng, shapes: list, K: int, draws_key):
    """:func:`_pieces`, or, for a ``draws_key`` and a stream of at most
    :data:`KEPT_DRAWS_MAX` normals, the pieces kept from an earlier call with the same key
    and shapes (generated and kept now if there are none)."""
    size = sum(c * b for _, c, b in shapes) * K
    if draws_key is None or size > KEPT_DRAWS_MAX:
        return _pieces(rng, shapes, K)
    key = (draws_key, tuple(shapes), K)
    with _KEPT_LOCK:
        kept = _KEPT.get(key)
        if kept is not None:
            _KEPT.move_to_end(key)
            return kept
    kept = list(_pieces(rng, shapes, K))
    for xi in kept:
        xi.flags.writeable = False  # counted again later: nothing may change them
    with _KEPT_LOCK:
        _KEPT[key] = kept
        total = sum(x.size for pieces in _KEPT.values() for x in pieces)
        while total > KEPT_DRAWS_TOTAL:
            total -= sum(x.size for x in _KEPT.popitem(last=False)[1])
    return kept


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


def _piece_counts(xi, P: _Points, i0: int, sigmas, lo, hi) -> np.ndarray:
    """Error counts per (positive) sigma of the piece ``xi`` (c, b, K) of the points i0..:
    right points by :func:`_right_counts`, wrong ones by :func:`_wrong_counts`, exact ones
    (and a piece with a draw beyond XCAP) by :func:`reference_counts`."""
    c, b, K = xi.shape
    if xi.max() > XCAP or -xi.min() > XCAP:
        sl = slice(i0, i0 + b)
        return reference_counts(xi, P.norms[sl], P.base[sl], P.y[sl], sigmas)
    blk = P.block(i0, b)
    xj = np.take(xi, P.labels(i0, c, b))  # (c, b): each row's draw at its label
    if blk["wrong"] is None:  # every point by the two-sided rule
        out = _wrong_counts(xi, xj, blk, sigmas, lo, hi, i0, P)
    else:
        mp, tmp = np.empty((c, b)), np.empty((c, b))
        for k in range(K):  # max over k of (xi_k - xi_j) c_k
            np.subtract(xi[:, :, k], xj, out=tmp)
            np.multiply(tmp, blk["c_right"][k], out=mp if k == 0 else tmp)
            if k:
                np.maximum(mp, tmp, out=mp)
        out = _right_counts(mp.reshape(-1), sigmas, lo, hi, xi.reshape(c * b, K), i0, b, P)
        if blk["wrong"].size:
            out += _wrong_counts(xi, xj, blk, sigmas, lo, hi, i0, P)
    ex = blk["exact"]
    if ex.size:
        p = i0 + ex
        out += reference_counts(np.take(xi, ex, axis=1), P.norms[p], P.base[p], P.y[p], sigmas)
    return out


def _recount(rows, pts, xs, P: _Points, sigma) -> int:
    """The reference count at the one scale ``sigma`` (a 1-element array) of the draws
    ``xs[rows]`` (flat rows of K) of the points ``pts``."""
    return int(reference_counts(xs[rows][None], P.norms[pts], P.base[pts], P.y[pts], sigma)[0])


def _right_counts(mp, sigmas, lo, hi, flat, i0: int, b: int, P: _Points) -> np.ndarray:
    """Errors per sigma s of the flat (draw, point) rows with the number ``mp`` (max of q; 0
    for rows of other points): an error iff s mp >= 1. Sure where mp > ``hi`` =
    (1 + tol) / s, none where mp <= ``lo`` = (1 - tol) / s; in between, recounted by
    :func:`reference_counts`. Only the rows above the smallest ``lo`` can count at any s."""
    out = np.zeros(sigmas.size, np.int64)
    rows = np.flatnonzero(mp > lo.min()) if sigmas.size > 1 else None
    m = mp if rows is None else mp[rows]
    for g in range(sigmas.size):
        above = m > hi[g]
        out[g] = np.count_nonzero(above)
        near = np.flatnonzero((m > lo[g]) & ~above)
        if near.size:
            r = near if rows is None else rows[near]
            out[g] += _recount(r, i0 + r % b, flat, P, sigmas[g : g + 1])
    return out


def _wrong_counts(xi, xj, blk: dict, sigmas, lo, hi, i0: int, P: _Points) -> np.ndarray:
    """Errors per sigma s of the draws of the wrong points of the piece ``xi`` (label draws
    ``xj``; every point where ``blk["wrong"]`` is None): an error iff s mp >= 1 or s qn <= 1,
    mp the max of q over a_k > 0 and qn the min over a_k < 0. Sure where mp > ``hi`` or
    qn < ``lo``, none where mp <= ``lo`` and qn >= ``hi``; in between, recounted by
    :func:`reference_counts`. Rows sure (or none) at every s are counted once."""
    wr = blk["wrong"]
    if wr is None:
        xw, xjw, wr = xi, xj, np.arange(xi.shape[1])
    else:
        xw, xjw = np.take(xi, wr, axis=1), np.take(xj, wr, axis=1)  # (c, nw, K), (c, nw)
    K, nw = xw.shape[2], wr.size
    mp, qn, d, tmp = (np.empty(xjw.shape) for _ in range(4))
    for k in range(K):  # mp = max_k d_k c_pos_k, qn = min_k (d_k c_neg_k + not_neg_k)
        np.subtract(xw[:, :, k], xjw, out=d)
        np.multiply(d, blk["c_pos_w"][k], out=mp if k == 0 else tmp)
        if k:
            np.maximum(mp, tmp, out=mp)
        np.multiply(d, blk["c_neg_w"][k], out=tmp)
        np.add(tmp, blk["not_neg_w"][k], out=qn if k == 0 else tmp)
        if k:
            np.minimum(qn, tmp, out=qn)
    mp, qn = mp.reshape(-1), qn.reshape(-1)
    flat = xw.reshape(-1, K)
    out = np.zeros(sigmas.size, np.int64)
    rows = None
    if sigmas.size > 1:
        sure = (mp > hi.max()) | (qn < lo.min())  # an error at every s
        none = (mp <= lo.min()) & (qn >= hi.max())  # neither an error nor a border at any s
        out += np.count_nonzero(sure)
        rows = np.flatnonzero(~(sure | none))
        mp, qn = mp[rows], qn[rows]
    for g in range(sigmas.size):
        err = (mp > hi[g]) | (qn < lo[g])
        out[g] += np.count_nonzero(err)
        border = np.flatnonzero(~err & ((mp > lo[g]) | (qn < hi[g])))
        if border.size:
            r = border if rows is None else rows[border]
            out[g] += _recount(r, i0 + wr[r % nw], flat, P, sigmas[g : g + 1])
    return out


# ---- the memo: B3's forms at several shares of delta count the draws once -------------------


def _stochastic_errors(z, y, w, sigma_q, seed, n_draws, chunk, memo: bool = True):
    """Mean 0-1 loss (margin <= 0) of W = W_hat + sigma_q * eps over the sample, per sigma_q,
    with an independent weight draw for every (sample point, draw): the scores of point i
    under W are ``W_hat z_i + sigma_q eps z_i`` and ``eps z_i ~ N(0, ||z_i||^2 I_K)``, so each
    point's draw is ``||z_i|| xi`` with xi standard normal (no weight matrix is formed); the
    xi come from ``np.random.default_rng(seed)``, filled in (draw, point, class) order.

    The same standard normal draws serve every sigma_q (the union bound over sigma_q does
    not need independent draws). Returns (G_q,) floats. A deterministic function of its
    arguments (``chunk``, the most draws generated at once, changes neither the draws nor
    the result): for a plain seed (int or sequence of ints) the result is memoised, so the
    bound forms that certify the same probe at different shares of delta draw the weights
    once; and the draws themselves are kept (when few: :data:`KEPT_DRAWS_MAX`) for another
    probe with the same seed and shapes (B3p's stochastic test error beside B3's, the runs
    of a sweep that share a seed and sizes). ``memo=False``: not memoised (no digest of the
    arrays), for a count no later call repeats (a held-out error,
    :func:`~cmcd_theory.bounds.pac_bayes.stochastic_error_rate`). The errors are counted by
    :func:`error_counts`.
    """
    draws_key = _stream_key(seed, n_draws, chunk)  # the stream of draws
    if draws_key is None or not memo:
        return _mc_errors(z, y, w, sigma_q, seed, n_draws, chunk, draws_key)
    key = (_digest(z, y, w, sigma_q), *draws_key)
    while True:
        with _MC_LOCK:
            if key in _MC_MEMO:
                _MC_MEMO.move_to_end(key)
                return _MC_MEMO[key].copy()
            running = _MC_RUNNING.get(key)
            if running is None:  # nobody computes it: this call does
                running = _MC_RUNNING[key] = threading.Event()
                break
        running.wait()  # another thread computes the same draws: wait for its result
    try:
        errors = _mc_errors(z, y, w, sigma_q, seed, n_draws, chunk, draws_key)
        with _MC_LOCK:
            _MC_MEMO[key] = errors.copy()
            while len(_MC_MEMO) > _MC_MEMO_MAX:
                _MC_MEMO.popitem(last=False)
    finally:
        with _MC_LOCK:
            del _MC_RUNNING[key]
        running.set()
    return errors


def _mc_errors(z, y, w, sigma_q, seed, n_draws, chunk, draws_key=None) -> np.ndarray:
    """:func:`_stochastic_errors` without the memo
    (:func:`error_counts`; ``draws_key``: its key of kept draws, the seed's)."""
    sigmas = np.asarray(sigma_q, np.float64).reshape(-1)
    rng = np.random.default_rng(seed)
    counts = error_counts(z, np.asarray(y), w, sigmas, rng, int(n_draws), int(chunk), draws_key)
    return counts / (n_draws * z.shape[0])


# _stochastic_errors of this process: (arrays' digest, seed, draws, chunk) -> errors; the
# keys being computed by some thread now (a second caller waits for the first: certify runs
# B3 and B3p in threads while it does the rest), under one lock
_MC_MEMO: collections.OrderedDict = collections.OrderedDict()
_MC_MEMO_MAX = 64
_MC_RUNNING: dict = {}
_MC_LOCK = threading.Lock()


def _memo_key(z, y, w, sigma_q, seed, n_draws, chunk):
    """A digest of everything :func:`_stochastic_errors` depends on; None for a seed that is
    not a plain int or sequence of ints (a Generator carries state: never memoised)."""
    stream = _stream_key(seed, n_draws, chunk)
    return None if stream is None else (_digest(z, y, w, sigma_q), *stream)


def _stream_key(seed, n_draws, chunk):
    """``(seed, draws, chunk)`` of a plain seed (an int or a sequence of ints), which with
    the sizes fix the stream of draws; None for another seed (a Generator carries state)."""

    def plain(x):
        return isinstance(x, (int, np.integer)) and not isinstance(x, bool)

    if not (plain(seed) or (isinstance(seed, (list, tuple)) and all(plain(x) for x in seed))):
        return None
    seed = tuple(int(x) for x in seed) if isinstance(seed, (list, tuple)) else int(seed)
    return repr(seed), int(n_draws), int(chunk)


def _digest(*arrays) -> str:
    """SHA-1 of the arrays' dtypes, shapes and bytes."""
    h = hashlib.sha1()
    for a in arrays:
        a = np.ascontiguousarray(a)
        h.update(f"{a.dtype}{a.shape}".encode())
        h.update(a.view(np.uint8).reshape(-1).data)
    return h.hexdigest()
