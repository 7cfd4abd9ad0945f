"""The batched sweep engine: many (model, optimizer, lr) configurations as one tensor program.

INTERFACE CONTRACT (written by the lead; the engine's author fills in the implementation and may
extend, but not break, these names — the experiments code depends on them).

    @dataclass(frozen=True)
    class RunSpec:
        name: str                 # unique within a sweep, e.g. "depth3-lr1e-3"
        depth: int = 1            # N; 1 = linear model
        hidden: int | tuple = 1   # hidden width(s) of the factored network (ignored for depth 1)
        method: str = "gd"        # "gd" (full-batch GD on the factors W_1..W_N, Eq 4),
                                  # "emulation" (Eq 10/12 applied to W_e directly, single output),
                                  # "adagrad", "adadelta", "adam" (torch.optim semantics, applied
                                  #   to the factors; depth 1 = the linear model)
        lr: float = 1e-3
        weight_decay: float = 0.0
        init: str = "normal"      # "normal" (N(0, init_std²) i.i.d., App C.1) or "identity"
        init_std: float = 0.01
        seed: int = 0             # the init of this configuration depends on (seed, name-independent
                                  # fields) only — same seed → same numbers, whatever else is in the sweep
        options: tuple = ()       # extra optimizer hyperparameters as (key, value) pairs, e.g.
                                  # (("betas", (0.9, 0.999)), ("eps", 1e-8)), (("rho", 0.9),)

    @dataclass
    class SweepResult:
        specs: list[RunSpec]
        steps: torch.Tensor       # (T,) int64, the iterations at which losses were recorded (0 included)
        losses: torch.Tensor      # (G, T) float64: L¹(W_e) (the plain ℓp loss of lp_loss) per config
        diverged_at: list[int | None]   # first step with a non-finite / exploding loss, else None
        final_W: torch.Tensor     # (G, k, d) end-to-end matrices at the end (frozen value if diverged)
        seconds: float

    def run_sweep(X, y, specs, *, steps, p, record_every=..., dtype=torch.float64, device=None,
                  progress=True, checkpoint=None, checkpoint_every_s=60.0,
                  divergence_factor=1e6) -> SweepResult

    X: (m, d), y: (m, k) (k = 1 in the paper). All specs run as one batched computation: each step
    reads X once for all configurations. Diverging configurations are frozen and recorded, never
    crash the sweep. `checkpoint` is a file path: the full batched state (parameters, optimizer
    state, recorded losses, step) is written there atomically every `checkpoint_every_s` seconds
    and on KeyboardInterrupt (then re-raised); a later call with the same arguments resumes from
    it; a checkpoint that does not match the arguments is an error (or ignored with a warning) —
    never silently mixed.
"""
