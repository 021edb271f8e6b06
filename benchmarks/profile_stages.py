"""Where the toolkit's time goes on the headline grid (:mod:`benchmarks.bench_vs_torch`).

:func:`profile` runs the headline sweep once in this process on one thread (cold or warm as
the persistent cache is), recording JAX's compile events per program (trace, lowering, XLA
compilation) during that sweep, then times each stage's execution alone, compiled, on the shapes of
one chunk of that sweep (second call of each program, ``block_until_ready``):

* ``stage1``: the stage-1 teachers of all seeds (one vmapped program);
* ``stage2_<method>``: the distillation of each method alone (``train_distill`` vmapped over
  the chunk's cells, on data of the same shapes);
* ``probes``: the stage-3 probes of a chunk (one per method plus the source probe, vmapped);
* ``downstream``: the whole downstream program of a chunk (every method: samples, teacher
  features, stage 2, probes, metrics); ``rest`` = downstream - stage 2 - probes;
* ``ground_truth``: the exact ground truth at every t (float64 quadrature, memo emptied).

Totals for the sweep are ``stage1`` once and the chunk stages times the number of chunks.
"""

from __future__ import annotations

import time


def _timed(fn, *args) -> float:
    """Seconds of the second call of ``fn(*args)`` (the first compiles), results waited for."""
    import jax

    jax.block_until_ready(fn(*args))
    t0 = time.perf_counter()
    jax.block_until_ready(fn(*args))
    return time.perf_counter() - t0


def profile(quick: bool) -> dict:
    """The sweep's wall time (this process, one thread) and its per-stage execution times."""
    import jax
    import jax.numpy as jnp

    from benchmarks.headline_world import METHODS, headline
    from cmcd_theory.learn import pipeline as P
    from cmcd_theory.learn.models import normalize
    from cmcd_theory.learn.training import fit_probe, train_distill
    from cmcd_theory.sweeps import run_sweep
    from cmcd_theory.sweeps import sweep as S
    from cmcd_theory.sweeps.grid import _normalise_grid, plan_chunks
    from cmcd_theory.worlds import WorldConfig, make_world

    ts, n_seeds = headline(quick)
    cfg = S.quick_pipeline() if quick else P.PipelineConfig()
    grid = {"channel": ["attenuate"], "t": ts, "method": list(METHODS)}
    events: dict = {}

    def listen(event: str, duration: float, **kw: str | int) -> None:
        if event.startswith("/jax/core/compile") and not events.get("done"):
            fun_name = str(kw.get("fun_name", "?"))
            kind = event.rsplit("/", 1)[-1].replace("_duration", "")
            events.setdefault(fun_name, {}).setdefault(kind, 0.0)
            events[fun_name][kind] += duration

    jax.monitoring.register_event_duration_secs_listener(listen)  # type: ignore[arg-type]
    t0 = time.perf_counter()
    run_sweep(grid, pipeline=cfg, seeds=n_seeds, progress=False, threads=1)
    sweep_s = time.perf_counter() - t0
    events["done"] = True
    programs = sorted(
        (
            {"program": k, **{e: round(v, 3) for e, v in d.items()}}
            for k, d in events.items()
            if k != "done"
        ),
        key=lambda r: -sum(v for k, v in r.items() if k != "program"),
    )
    t0 = time.perf_counter()
    run_sweep(grid, pipeline=cfg, seeds=n_seeds, progress=False, threads=1)
    sweep_compiled_s = time.perf_counter() - t0

    wc = WorldConfig(channel="attenuate")
    chunks = plan_chunks(_normalise_grid(grid, wc, cfg, n_seeds), set(), 16)
    size = chunks[0].size
    stages: dict = {}
    kt, _ = P.seed_keys(list(range(n_seeds)))
    swc, tpc = P.source_world_config(wc), P.teacher_config(cfg)
    stages["stage1"] = _timed(S._TEACHER_JIT, make_world(swc), kt, tpc)

    w = make_world(wc)
    enc_a, enc_b = P.encoders(w, cfg)
    keys = jax.random.split(jax.random.key(0), size)
    x_b = jax.random.normal(jax.random.key(1), (size, cfg.m, wc.d_B))
    z_a = normalize(jax.random.normal(jax.random.key(2), (size, cfg.m, enc_b.d_out)))
    for m in METHODS:
        fn = jax.jit(jax.vmap(lambda k, x, z, m=m: train_distill(k, enc_b, x, z, m, cfg.distill)))
        stages[f"stage2_{m}"] = _timed(fn, keys, x_b, z_a)
    n_probes = size * (len(METHODS) + 1)  # one per method and the source probe
    z = normalize(jax.random.normal(jax.random.key(3), (n_probes, cfg.n, enc_b.d_out)))
    y = jax.random.randint(jax.random.key(4), (cfg.n,), 0, wc.num_classes)
    probe = jax.jit(
        jax.vmap(lambda z: fit_probe(z, y, wc.num_classes, l2=cfg.probe_l2, steps=cfg.probe_steps))
    )
    stages["probes"] = _timed(probe, z)
    chunk = chunks[0]
    tp = S._teachers_for(wc, cfg, [s for _, s in chunk.cells], chunk.n_teachers)
    _, kd = P.seed_keys([s for _, s in chunk.cells])
    tt = jnp.asarray([t for t, _ in chunk.cells], jnp.float32)
    stages["downstream"] = _timed(
        S._DOWNSTREAM_JIT, w, kd, tp, tt, chunk.methods, chunk.ns, cfg, False
    )
    stages["rest"] = stages["downstream"] - sum(
        stages[k] for k in stages if k.startswith("stage2_") or k == "probes"
    )
    P.ground_truth.cache_clear()  # type: ignore[attr-defined]
    t0 = time.perf_counter()
    for t in ts:
        P.ground_truth(wc, t)
    stages["ground_truth"] = time.perf_counter() - t0
    per_chunk = ("downstream", "probes", "rest", *(f"stage2_{m}" for m in METHODS))
    totals = {k: v * (len(chunks) if k in per_chunk else 1) for k, v in stages.items()}
    return {
        "sweep_one_thread_s": round(sweep_s, 2),
        "sweep_compiled_one_thread_s": round(sweep_compiled_s, 2),
        "chunks": len(chunks),
        "chunk_size": size,
        "stage_s_per_call": {k: round(v, 3) for k, v in stages.items()},
        "stage_s_sweep_total": {k: round(v, 3) for k, v in totals.items()},
        "sweep_compiles": programs,
    }
