"""Benchmark of the batched sweep engine on the Fig 3 workload (prints a table; not run by the tests).

    python benchmarks/bench_sweep.py [--steps 1000] [--loop-steps 100] [--threads 1] [--reps 2]

Workload: m = 2565 rows × d = 128 (the synthetic gas-sensor stand-in), ℓ4 loss, depth 1/2/3 with
hidden width 1 × the paper's 10 learning rates {1e-5, 5e-5, …, 1e-1, 5e-1} = 30 configurations
(the large learning rates diverge; a frozen configuration costs the same as a live one, so the
throughput counts all 30). Measured side by side in one process, best of ``--reps``:

  (a) engine  run_sweep over all 30 configurations;
  (b) loop    one plain torch loop per configuration (LinearNetwork + autograd + torch.optim.SGD),
              run for ``--loop-steps`` steps and normalised;
  (c) floor   the bare batched data pass: R = W_all Xᵀ then R X per step, nothing else
              (the same products as X W_allᵀ and Xᵀ R, in the engine's row layout).

Throughput is configurations × steps per second. Then: per-step times of the Fig 3 sweeps at the
paper's m = 1316 (the 8-batch copy), d = 128, float64, and closed-form vs autograd factor gradients.
"""

from __future__ import annotations

import argparse
import os
import platform
import time

import torch

from overparam.losses import lp_loss
from overparam.models import LinearNetwork, chain_product
from overparam.sweep import RunSpec, _Group, run_sweep

LRS = [1e-5, 5e-5, 1e-4, 5e-4, 1e-3, 5e-3, 1e-2, 5e-2, 1e-1, 5e-1]
STABLE_LRS = [1e-5, 2e-5, 5e-5, 1e-4, 2e-4, 5e-4, 1e-3, 2e-3, 3e-3, 5e-3]  # nothing diverges: all 30 rows stay


def data(m: int, d: int, dtype=torch.float64):
    try:
        from overparam.data.synthetic import synthetic_gas_sensor
        ds = synthetic_gas_sensor(m=m, d=d, dtype=dtype)
        return ds.X, ds.y, "synthetic_gas_sensor"
    except ImportError:
        g = torch.Generator().manual_seed(0)
        X = torch.randn(m, d, generator=g, dtype=dtype)
        return X, X @ torch.randn(d, 1, generator=g, dtype=dtype) / d ** 0.5, "torch.randn"


def fig3_specs(depths=(1, 2, 3), lrs=LRS, method="gd"):
    return [RunSpec(f"{method}-d{N}-lr{lr:g}", depth=N, hidden=1, method=method, lr=lr) for N in depths for lr in lrs]


def time_engine(X, y, specs, steps, p, **kw):
    t = time.perf_counter()
    res = run_sweep(X, y, specs, steps=steps, p=p, record_every=max(1, steps // 10), progress=False, **kw)
    return time.perf_counter() - t, res


def time_loop(X, y, specs, steps, p):
    t = time.perf_counter()
    for s in specs:
        net = LinearNetwork(X.shape[1], y.shape[1], s.depth, s.hidden if s.depth > 1 else None, s.init,
                            std=s.init_std, generator=torch.Generator().manual_seed(s.seed), dtype=X.dtype)
        opt = torch.optim.SGD(net.parameters(), lr=s.lr, weight_decay=s.weight_decay)
        for _ in range(steps):
            opt.zero_grad()
            loss = lp_loss(net(X), y, p)
            loss.backward()
            opt.step()
    return time.perf_counter() - t


def time_floor(X, G, steps):
    W = torch.randn(G, X.shape[1], dtype=X.dtype) * 0.01
    Xt = X.T.contiguous()
    R = torch.empty(G, X.shape[0], dtype=X.dtype)  # the engine's layout, the faster one measured here
    Gr = torch.empty(G, X.shape[1], dtype=X.dtype)
    t = time.perf_counter()
    for _ in range(steps):
        torch.mm(W, Xt, out=R)  # (X W_allᵀ)ᵀ
        torch.mm(R, X, out=Gr)  # (Xᵀ R)ᵀ
    return time.perf_counter() - t


def time_factor_grads(B, depth, d, steps):
    """Per-call time of the closed-form factor gradients (engine) vs autograd over the small products."""
    specs = [RunSpec(f"s{i}", depth=depth, hidden=1, seed=i) for i in range(B)]
    g = _Group(specs, list(range(B)), d, 1, torch.float64, torch.device("cpu"))
    g.attach(torch.zeros(B, 1, d, dtype=torch.float64))
    G = torch.randn(B, 1, d, dtype=torch.float64)
    t = time.perf_counter()
    for _ in range(steps):
        g.end_to_end()
        g.factor_grads(G)
    closed = (time.perf_counter() - t) / steps
    fs = [W.clone().requires_grad_(True) for W in g.factors]
    t = time.perf_counter()
    for _ in range(steps):
        W_e = chain_product(fs)
        torch.autograd.grad(W_e, fs, grad_outputs=G)
    auto = (time.perf_counter() - t) / steps
    return closed, auto


def cpu_name() -> str:
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--steps", type=int, default=1000, help="engine and floor steps")
    ap.add_argument("--loop-steps", type=int, default=100, help="steps per configuration of the plain loop")
    ap.add_argument("--threads", type=int, default=1, help="torch.set_num_threads (1 is best on a loaded box)")
    ap.add_argument("--reps", type=int, default=2, help="repetitions (best time is reported)")
    ap.add_argument("--m", type=int, default=2565)
    ap.add_argument("--d", type=int, default=128)
    ap.add_argument("--p", type=float, default=4.0)
    args = ap.parse_args(argv)
    torch.set_num_threads(args.threads)
    load = os.getloadavg() if hasattr(os, "getloadavg") else ("?",) * 3
    print(f"# bench_sweep: torch {torch.__version__}, threads {torch.get_num_threads()}, CPU {cpu_name()} "
          f"({os.cpu_count()} logical), load average {load[0]:.1f} (shared machine: numbers are noisy)")
    X, y, src = data(args.m, args.d)
    specs = fig3_specs()
    G = len(specs)
    print(f"# data {src} m={args.m} d={args.d} float64, p={args.p:g}, {G} configs (depth 1/2/3, hidden 1, 10 lrs), "
          f"engine/floor {args.steps} steps, loop {args.loop_steps} steps/config, best of {args.reps}")

    stable = fig3_specs(lrs=STABLE_LRS)
    best = {"engine": float("inf"), "stable": float("inf"), "loop": float("inf"), "floor": float("inf")}
    diverged = diverged_stable = None
    for _ in range(args.reps):
        el, res = time_engine(X, y, specs, args.steps, args.p)
        best["engine"] = min(best["engine"], el)
        diverged = sum(d is not None for d in res.diverged_at)
        el, res = time_engine(X, y, stable, args.steps, args.p)
        best["stable"] = min(best["stable"], el)
        diverged_stable = sum(d is not None for d in res.diverged_at)
        best["loop"] = min(best["loop"], time_loop(X, y, specs, args.loop_steps, args.p))
        best["floor"] = min(best["floor"], time_floor(X, G, args.steps))
    rate = {"engine": G * args.steps / best["engine"], "stable": G * args.steps / best["stable"],
            "loop": G * args.loop_steps / best["loop"], "floor": G * args.steps / best["floor"]}
    per_step = {"engine": best["engine"] / args.steps, "stable": best["stable"] / args.steps,
                "loop": best["loop"] / args.loop_steps, "floor": best["floor"] / args.steps}
    print(f"\n| {'method':<28} | {'config·steps/s':>14} | {'ms per sweep step':>17} |")
    print(f"|{'-' * 30}|{'-' * 16}|{'-' * 19}|")
    labels = {"engine": "(a) engine, paper lr grid", "stable": "(a') engine, stable lr grid",
              "loop": "(b) per-config torch loop", "floor": "(c) floor: 2 bare matmuls"}
    for k in ("engine", "stable", "loop", "floor"):
        print(f"| {labels[k]:<28} | {rate[k]:>14,.0f} | {per_step[k] * 1e3:>17.3f} |")
    print(f"\nengine / loop  = {rate['engine'] / rate['loop']:.1f}x paper grid, "
          f"{rate['stable'] / rate['loop']:.1f}x stable grid   (target >= 20x)")
    print(f"floor / engine = {rate['floor'] / rate['engine']:.2f}x paper grid, "
          f"{rate['floor'] / rate['stable']:.2f}x stable grid   (target <= 2x)")
    print(f"diverged: {diverged}/{G} on the paper grid (dropped from the batch when detected, so later "
          f"steps are cheaper), {diverged_stable}/{G} on the stable grid")

    # Fig 3 at the paper's m = 1316: per-step times for the lead's 1M-step estimate.
    X2, y2, _ = data(1316, args.d)
    n = max(200, args.steps // 4)
    rows = [("l4, 30 configs", specs, 4.0, {}),
            ("l4, 60 configs (2 seeds)",
             specs + [RunSpec(s.name + "-s1", depth=s.depth, lr=s.lr, seed=1) for s in specs], 4.0, {}),
            ("l2, 30 configs, suff. stats", specs, 2.0, {}),
            ("l2, 30 configs, direct", specs, 2.0, {"sufficient_stats": False})]
    print(f"\n# Fig 3 sweeps at m=1316, d={args.d}, float64, {n} steps each (best of {args.reps})")
    print(f"| {'sweep':<28} | {'ms/step':>8} | {'1M steps (h)':>12} |")
    print(f"|{'-' * 30}|{'-' * 10}|{'-' * 14}|")
    for label, sp, p, kw in rows:
        el = min(time_engine(X2, y2, sp, n, p, **kw)[0] for _ in range(args.reps)) / n
        print(f"| {label:<28} | {el * 1e3:>8.3f} | {el * 1e6 / 3600:>12.2f} |")

    closed, auto = time_factor_grads(10, 3, args.d, 2000)
    print(f"\nfactor gradients, 10 configs, depth 3, hidden 1: closed form {closed * 1e6:.0f} us, "
          f"autograd {auto * 1e6:.0f} us per step ({auto / closed:.1f}x)")


if __name__ == "__main__":
    main()
