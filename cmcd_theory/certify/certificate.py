"""The certificate of one run: its rows, its wide columns, and the confidence each column spent.

A :class:`Certificate` holds one row per bound and form (the fixed keys :data:`ROW_KEYS`,
then each bound's own named terms) and ``wide``, the :data:`WIDE_KEYS` columns a sweep row
carries (NaN where a bound does not apply). :data:`SPENDING` names the rows whose ``delta``
each bound column spends; :func:`_spent` sums them (the union bound of docs/theory.md, B6).
"""

from __future__ import annotations

import dataclasses
import math

from cmcd_theory.certify.rows import NAN

#: Fixed keys of every row of a :class:`Certificate` (a bound's own named terms follow them).
ROW_KEYS = (
    "bound",
    "form",
    "bounds",
    "statement",
    "kind",
    "measured",
    "value",
    "empirical",
    "complexity",
    "confidence",
    "delta",
    "slack",
    "applicable",
    "reason",
    "vacuous",
    "holds",
    "holds_strict",
    "n",
    "K",
)
#: The ``wide`` columns of B3 and its forms (the probe rows fill them, NaN where B3 is not run).
B3_FORM_KEYS = (
    "b3_total",
    "b3_total_deterministic",
    "b3_form",
    "b3_zero_prior_total",
    "b3p_total",
    "b3_measured_stochastic",
    "b3p_measured_stochastic",
)
#: The ``wide`` columns of B4n (normalised student features, per-pair PAC-Bayes-kl).
B4N_KEYS = (
    "b4n_total",
    "b4n_empirical",
    "b4n_empirical_exact_mgf",
    "b4n_kl_over_n",
    "b4n_pop_loss_stochastic",
    "b4n_nu",
)
#: Fixed keys of :attr:`Certificate.wide` (a sweep row's columns); NaN where not applicable.
WIDE_KEYS = (
    "tv_features",
    "tv_features_upper",
    "tv_features_lower",
    "b2_sample_total",
    "b2_data_free_total",
    "b2_total",
    "b3_total",
    "b3_total_deterministic",
    "b4_data_free_total",
    "b4_sample_total",
    "b4_total",
    "b5_data_free_total",
    "b5_sample_total",
    "b5_total",
    "bounds_hold",
    # named terms of the bounds that figures stack
    "b2_sample_empirical",
    "b2_sample_complexity",
    "b2_sample_confidence",
    "b2_data_free_empirical",
    "b2_data_free_complexity",
    "b2_data_free_confidence",
    "b3_empirical",
    "b3_empirical_upper",
    "b3_kl_over_n",
    "b3_confidence",
    "b4_data_free_gap",
    "b4_sample_gap",
    "b4_gap",
    "b4_pop_slack",
    # B4n: normalised student features (stochastic student, per-pair PAC-Bayes-kl)
    *B4N_KEYS,
    # the probe certificate: min(B2 forms, 2 L(Q) of B3 and B3p), delta split over the four
    "probe_total",
    "probe_form",
    # B3's two forms (zero-mean and split prior) and the stochastic probes' test errors
    "b3_form",
    "b3_zero_prior_total",
    "b3p_total",
    "b3_measured_stochastic",
    "b3p_measured_stochastic",
    # stage 1: measured O1 losses and B5n (normalised features, per-sample PAC-Bayes-kl)
    "ssl_train_loss",
    "ssl_pop_loss",
    "ssl_gap",
    "ssl_pop_loss_se",
    "b5n_total",
    "b5n_empirical",
    "b5n_empirical_mean_encoder",
    "b5n_kl_over_n",
    "b5n_pop_loss_stochastic",
    "b5n_nu",
)
#: The :attr:`Certificate.wide` columns of each part of :func:`certify` (experiments' sweeps).
PART_KEYS = {
    "B1b": ("tv_features", "tv_features_upper"),
    "B2": tuple(
        f"b2_{form}_{term}"
        for form in ("sample", "data_free")
        for term in ("total", "empirical", "complexity", "confidence")
    )
    + ("b2_total",),
    "B3": (
        *B3_FORM_KEYS,
        "b3_empirical",
        "b3_empirical_upper",
        "b3_kl_over_n",
        "b3_confidence",
    ),
    "B4": (
        "b4_data_free_total",
        "b4_data_free_gap",
        "b4_sample_total",
        "b4_sample_gap",
        "b4_total",
        "b4_gap",
        "b4_pop_slack",
        *B4N_KEYS,
    ),
    "probe": ("probe_total", "probe_form"),
    "B5": (
        "ssl_train_loss",
        "ssl_pop_loss",
        "ssl_gap",
        "ssl_pop_loss_se",
        "b5n_total",
        "b5n_empirical",
        "b5n_empirical_mean_encoder",
        "b5n_kl_over_n",
        "b5n_pop_loss_stochastic",
        "b5n_nu",
    ),
}
#: Bound columns of ``wide`` and the rows whose ``delta`` each one's value spends (union bound:
#: a minimum over forms spends the sum of the forms' deltas).
SPENDING = {
    "tv_features_upper": ("B1b",),
    "tv_features_lower": ("TV_lower",),
    "b2_sample_total": ("B2_sample",),
    "b2_data_free_total": ("B2_data_free",),
    "b2_total": ("B2_sample", "B2_data_free"),
    "b3_total": ("B3", "B3p"),
    "b3_total_deterministic": ("B3", "B3p"),
    "b3_empirical_upper": ("B3", "B3p"),
    "b3_zero_prior_total": ("B3",),
    "b3p_total": ("B3p",),
    "b4_data_free_total": ("B4_data_free",),
    "b4_sample_total": ("B4_sample",),
    "b4_total": ("B4_data_free", "B4_sample"),
    "b4_data_free_gap": ("B4_data_free",),
    "b4_sample_gap": ("B4_sample",),
    "b4_gap": ("B4_data_free", "B4_sample"),
    "b5_data_free_total": ("B5_data_free",),
    "b5_sample_total": ("B5_sample",),
    "b5_total": ("B5_data_free", "B5_sample"),
    "b4n_total": ("B4n",),
    "b5n_total": ("B5n",),
    "probe_total": ("probe",),
}


@dataclasses.dataclass(frozen=True)
class Certificate:
    """Every bound of one run: ``rows`` (dicts with :data:`ROW_KEYS` first) and ``wide``
    (:data:`WIDE_KEYS`, the columns a sweep row carries)."""

    rows: tuple
    wide: dict
    #: bound column of ``wide`` -> the total confidence its value spent (:data:`SPENDING`)
    spent: dict = dataclasses.field(default_factory=dict)

    def applicable(self) -> list:
        """The rows of the bounds that apply."""
        return [r for r in self.rows if r["applicable"]]

    def frame(self):
        """The rows as a pandas DataFrame (fixed keys first)."""
        import pandas as pd

        df = pd.DataFrame(list(self.rows))
        return df[list(ROW_KEYS) + [c for c in df.columns if c not in ROW_KEYS]]

    def format(self) -> str:
        """A readable fixed-width table, one line per row: the bound, what it bounds, the
        measured value, the bound's value and how it is computed from its terms
        (:func:`value_text`: a sum that adds up to the value, or the kl inversion with its
        inputs), the delta it spent, vacuous, holds -- or why the bound does not apply. A
        legend of the notation follows the table."""
        head = ("bound", "bounds", "measured", "value", "value = ...", "delta", "vacuous", "holds")
        lines = []
        for r in self.rows:
            what = r["bounds"].split(":")[0]
            if not r["applicable"]:
                lines.append(
                    (r["bound"], what, "", "", "not applicable: " + r["reason"], "", "", "")
                )
                continue
            lines.append(
                (
                    r["bound"],
                    what,
                    _fmt(r["measured"]),
                    _fmt(r["value"]),
                    value_text(r),
                    f"{r['delta']:.4g}",
                    _yn(r["vacuous"]),
                    _yn(r["holds"]),
                )
            )
        shown = [x for x in lines if x[3]] or lines[:1]  # applicable rows set the widths
        widths = [
            max(len(h), *(len(x[i]) for x in (lines if i < 2 else shown)))
            for i, h in enumerate(head)
        ]
        out = [
            "  ".join(h.ljust(w) for h, w in zip(head, widths)).rstrip(),
            "  ".join("-" * w for w in widths),
        ]
        for x in lines:
            if x[2] == "" and x[4].startswith("not applicable"):
                out.append(
                    (
                        "  ".join(c.ljust(w) for c, w in zip(x[:2], widths[:2])) + "  " + x[4]
                    ).rstrip()
                )
            else:
                out.append("  ".join(c.ljust(w) for c, w in zip(x, widths)).rstrip())
        return "\n".join(out + ["", LEGEND])

    def __str__(self) -> str:
        return self.format()


def _fmt(x) -> str:
    return "" if x is None or not math.isfinite(x) else f"{x:.4g}"


#: What the ``value = ...`` column of :meth:`Certificate.format` writes.
LEGEND = """\
value = ...: how each value is computed from its terms.
  a + b + c            empirical + complexity + confidence (a - c: a lower bound)
  2 kl^-1(q, k + c)    B3, B3p: 2 L(Q), L(Q) the largest p with kl(q || p) <= k + c; q the
                       stochastic probe's training loss raised by its Monte Carlo correction,
                       k = KL(Q || P) / n, c the confidence term
  b kl^-1(q/b, k + c)  B4n, B5n: the same for a loss in [0, b]
  min(...)             the probe certificate: the smallest form, each at its share of delta
  max(0, x)            a lower bound below 0, reported as 0 (value_raw holds x)"""


def value_text(r: dict) -> str:
    """How the value of the applicable row ``r`` is computed from its terms (one line of
    :meth:`Certificate.format`): the sum ``empirical + complexity + confidence`` for an
    additive bound, ``2 kl^-1(q, k + c)`` for B3 / B3p and ``b kl^-1(q/b, k + c)`` for B4n /
    B5n (kl-inverted bounds: the inputs and the inversion), ``min(form value, ...)`` for the
    probe certificate, ``estimate - slack`` for ``TV_lower`` (``max(0, ...)`` where below 0).

    Example:
      >>> value_text({"bound": "B2_sample", "kind": "upper", "empirical": 0.4, "complexity": 0.3,
      ...             "confidence": 0.05})
      '0.4 + 0.3 + 0.05'
    """
    g = r.get
    if r["bound"] in ("B3", "B3p"):
        return f"2 kl^-1({g('empirical_upper'):.4g}, {g('complexity'):.4g} + {g('confidence'):.4g})"
    if r["bound"] in ("B4n", "B5n"):
        b = g("loss_range")
        return (
            f"{b:.4g} kl^-1({g('empirical_upper'):.4g}/{b:.4g}, {g('complexity'):.4g} + "
            f"{g('confidence'):.4g})"
        )
    if r["bound"] == "probe":
        forms = [(k[: -len("_at_share")], v) for k, v in r.items() if k.endswith("_at_share")]
        return "min(" + ", ".join(f"{k} {v:.4g}" for k, v in forms) + ")"
    sign = " + " if r["kind"] == "upper" else " - "
    text = sign.join(
        f"{r[k]:.4g}"
        for k in ("empirical", "complexity", "confidence")
        if math.isfinite(r.get(k, NAN))
    )
    raw = g("value_raw")
    if raw is not None and math.isfinite(raw) and raw != r["value"]:
        return f"max(0, {text} = {raw:.4g})"
    return text or "exact (no sample term)"


def _yn(x) -> str:
    return "" if x is None else ("yes" if x else "no")


def _spent(rows, wide) -> dict:
    """Total delta spent by each finite bound column of ``wide`` (sum over the rows behind it)."""
    delta_of = {r["bound"]: r["delta"] for r in rows if r["applicable"]}
    out = {}
    for col, names in SPENDING.items():
        if math.isfinite(wide.get(col, NAN)):
            out[col] = float(sum(delta_of[nm] for nm in names if nm in delta_of))
    return out
