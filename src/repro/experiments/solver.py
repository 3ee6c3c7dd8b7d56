"""The learned non-blind solver F of Kernel-Diff, trained and cached per profile.

The model (:class:`repro.nonblind.LearnedWiener`) and its loss are science; this module holds
each profile's training schedule (:class:`SolverProfile`), trains it on the profile's synthetic
pairs (:mod:`repro.experiments.kerneldiff_data`), resumably, and caches the weights at
``<store>/<profile>/kerneldiff/`` :data:`SOLVER_FILE`. Train them with
``repro train solver --profile quick``.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from pathlib import Path

import torch
from tqdm.auto import tqdm

from .. import synth
from .._checks import check_positive, check_positive_int, is_int, resolve_device
from .._io import TrainingCheckpoint, jsonable, load_checkpoint
from .._schedule import half_cosine_lr
from .._threads import fixed_cpu_threads
from ..nonblind import LearnedWiener, multiscale_l1
from ..profiles import Profile, check
from ..store import Store

# --------------------------------------------------------------------------------------------
# Training, profiles, cache
# --------------------------------------------------------------------------------------------

#: Name of the trained solver's weights in ``<store>/<profile>/kerneldiff/``.
SOLVER_FILE = "solver.pt"
#: Name of the resumable training checkpoint beside it (deleted once training is done).
SOLVER_CHECKPOINT = "solver_training.pt"
#: Name of the loss curves beside it (JSON).
SOLVER_HISTORY = "solver_history.json"
#: Chapter folder shared with repro.experiments.kerneldiff.
CHAPTER = "kerneldiff"


@dataclass(frozen=True)
class SolverProfile:
    """How one profile trains :class:`LearnedWiener` (data sizes: ``Profile.kerneldiff_data``).

    ``model``: the constructor arguments; Adam (β = 0.9, 0.999) with a half-cosine decay of the
    learning rate from ``lr`` to ``lr · lr_final_ratio`` over ``steps`` steps of ``batch_size``
    pairs from :class:`repro.synth.BlurPairs` (training kernels and images of the profile);
    ``n_val`` fixed pairs (another seed) to log the validation loss and PSNR every ``log_every``
    steps; a checkpoint every ``checkpoint_every`` steps. DWDN itself trains ≈7 M parameters
    for 3,000 epochs at lr 1e-4; our schedules are far shorter (stated in the book).
    """

    name: str
    model: dict = field(default_factory=dict)
    steps: int = 1000
    batch_size: int = 8
    lr: float = 1e-3
    lr_final_ratio: float = 0.05
    n_val: int = 16
    log_every: int = 50
    checkpoint_every: int = 200

    def __post_init__(self):
        for name in ("steps", "batch_size", "n_val", "log_every", "checkpoint_every"):
            check_positive_int(getattr(self, name), f"SolverProfile.{name}")
        check_positive(self.lr, "SolverProfile.lr")
        check_positive(self.lr_final_ratio, "SolverProfile.lr_final_ratio")

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

    def learning_rate(self, step: int) -> float:
        """Half-cosine decay from ``lr`` at step 0 to ``lr · lr_final_ratio`` at ``steps``."""
        return half_cosine_lr(self.lr, self.lr_final_ratio, step, self.steps)


CPU_THREADS = 2
"""Intra-op CPU threads of :func:`train_learned_wiener` (``repro._threads.fixed_cpu_threads``):
fixed, so that the weights do not depend on the core count; two, the cores of the machine the
quick profile is sized for (``scripts/step_times.py`` times a step on yours)."""


SOLVER_PROFILES = {
    # CI: a tiny model, a few dozen steps on 32x32 crops; seconds.
    "smoke": SolverProfile("smoke", model={"features": 8, "blocks": 1, "widths": (8, 16, 32)},
                           steps=40, batch_size=4, n_val=8, log_every=10, checkpoint_every=20),
    # a 2-core CPU: 16 features, 16/32/64 encoder-decoder, 64x64 crops; minutes on two threads.
    "quick": SolverProfile("quick", model={"features": 16, "blocks": 2, "widths": (16, 32, 64)},
                           steps=1500, batch_size=8, lr=1e-3, n_val=32, log_every=50, checkpoint_every=250),
    # a GPU: DWDN's widths (16 features, 3 blocks, 32/64/128 with 2 blocks per level), 256x256
    # crops (DWDN itself has about 7 M parameters).
    "paper": SolverProfile("paper", model={"features": 16, "blocks": 3, "widths": (32, 64, 128), "level_blocks": 2},
                           steps=100_000, batch_size=16, lr=4e-4, n_val=64, log_every=500,
                           checkpoint_every=2000),
}


def solver_path(profile: Profile, store: Store | None = None) -> Path:
    """``<store>/<profile>/kerneldiff/solver.pt``: the cached weights of the profile's solver."""
    return Store.resolve(store).folder(check(profile), CHAPTER) / SOLVER_FILE


class SolverNotTrainedError(FileNotFoundError):
    """No trained :class:`LearnedWiener` is cached for a profile."""


def _psnr(x_hat: torch.Tensor, x: torch.Tensor) -> float:
    mse = (x_hat.clamp(0, 1) - x).square().flatten(1).mean(dim=1)
    return float((10 * torch.log10(1 / mse)).mean())


def train_learned_wiener(profile: Profile, device=None, progress: bool = True, seed: int = 0,
                         stop_at: int | None = None, images=None, config: SolverProfile | None = None,
                         store: Store | None = None) -> LearnedWiener:
    """Train the :class:`LearnedWiener` of ``profile`` and cache it at :func:`solver_path`.

    Data: :class:`repro.synth.BlurPairs` with the profile's training kernels and crops
    (``profile.kerneldiff_data``) and ``images`` (default :func:`repro.synth.training_images`
    of the profile: BSDS500 train + test, never val); the pairs of step t are a pure function of
    ``(seed, t)``. Loss: :func:`multiscale_l1`; Adam with :meth:`SolverProfile.learning_rate`.
    On the CPU training uses :data:`CPU_THREADS` threads whatever the core count, so a run is
    bit-identical on machines of one instruction set.

    If :func:`solver_path` exists for the same run it is loaded instead of retraining. While
    training, a checkpoint (model, optimiser, step, history) is written atomically to
    :data:`SOLVER_CHECKPOINT` every ``checkpoint_every`` steps and the loss curves to
    :data:`SOLVER_HISTORY`; an interrupted run resumes from it and computes exactly what an
    uninterrupted one would. ``stop_at``: stop after that step (checkpoint kept, returns the
    partial model) — a long run can be split. ``config`` overrides the profile's
    :class:`SolverProfile` (``profile.solver``; tests); ``device`` defaults to CUDA when available;
    ``store`` to :meth:`repro.store.Store.default`.
    """
    config = check(profile).solver if config is None else config
    if not isinstance(config, SolverProfile):
        raise ValueError(f"config must be a SolverProfile, got {type(config).__name__}")
    if not is_int(seed, 0):
        raise ValueError(f"seed must be an int >= 0, got {seed!r}")
    if stop_at is not None and not is_int(stop_at, 0):
        raise ValueError(f"stop_at must be None or an int >= 0, got {stop_at!r}")
    device = resolve_device(device)
    spec = profile.kerneldiff_data
    identity = jsonable({"profile": profile.name, "config": config.to_dict(), "seed": seed,
                         "data": dataclasses.asdict(spec)})
    final = solver_path(profile, store)
    history_path = final.parent / SOLVER_HISTORY
    partial = TrainingCheckpoint(final.parent / SOLVER_CHECKPOINT, identity, history_path)
    finished = TrainingCheckpoint(final, identity, history_path)
    # weights trained with other settings of the profile are set aside and trained anew
    state = finished.load(needs=("model", "config"), other_run="aside")
    if state is not None:
        return _model_from_state(state, device)

    if images is None:
        images = synth.training_images(spec.max_train_images)
    kernels = spec.train_kernels()
    pairs = synth.BlurPairs(kernels, images, spec.crop, spec.noise_sigma, seed=seed)
    val_y, val_x, val_k = synth.BlurPairs(kernels, images, spec.crop, spec.noise_sigma,
                                          seed=seed + 1_000_003).batch(0, config.n_val, device)
    model = LearnedWiener(**config.model, seed=seed).to(device)
    optimizer = torch.optim.Adam(model.parameters(), lr=config.lr)
    step, history = 0, []
    state = partial.load(device, other_run="aside")  # another run's checkpoint is retrained, not refused
    if state is not None:
        model.load_state_dict(state["model"])
        optimizer.load_state_dict(state["optimizer"])
        step, history = state["step"], state["history"]

    def save(checkpoint: TrainingCheckpoint):
        checkpoint.save(step, history, model=model.state_dict(), config=model.config,
                        optimizer=optimizer.state_dict())

    last = config.steps if stop_at is None else min(stop_at, config.steps)
    bar = tqdm(total=last, initial=min(step, last), desc=f"LearnedWiener ({profile.name})", disable=not progress,
               leave=False)
    with fixed_cpu_threads(device, CPU_THREADS):
        model.train()
        while step < last:
            for group in optimizer.param_groups:
                group["lr"] = config.learning_rate(step)
            y, x, k = pairs.batch(step, config.batch_size, device)
            loss = multiscale_l1(model.forward_multiscale(y, k), x)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            step += 1
            if step % config.log_every == 0 or step == config.steps:
                history.append({"step": step, "train_loss": loss.item(), **_validate(model, val_y, val_x, val_k)})
                bar.set_postfix(loss=f"{loss.item():.4f}", val_psnr=f"{history[-1]['val_psnr']:.2f}")
            if step % config.checkpoint_every == 0 and step < config.steps:
                save(partial)
            bar.update(1)
    bar.close()
    model.eval()
    if step < config.steps:
        save(partial)
    else:
        save(finished)
        partial.path.unlink(missing_ok=True)
    return model


def _validate(model: LearnedWiener, y: torch.Tensor, x: torch.Tensor, k: torch.Tensor) -> dict[str, float]:
    """L1 and PSNR of the model (in eval mode, then back to training) on the validation pairs."""
    with torch.no_grad():
        model.eval()
        out = model(y, k)
        model.train()
    return {"val_l1": (out - x).abs().mean().item(), "val_psnr": _psnr(out, x)}


def _model_from_state(state: dict, device) -> LearnedWiener:
    model = LearnedWiener(**state["config"])
    model.load_state_dict(state["model"])
    return model.to(resolve_device(device)).eval()


def load_learned_wiener(profile: Profile, device=None, store: Store | None = None) -> LearnedWiener:
    """The trained :class:`LearnedWiener` of ``profile`` from :func:`solver_path`, in eval mode.

    Raises :class:`SolverNotTrainedError` (a ``FileNotFoundError``) naming the command that
    trains it if nothing is cached; a partial (interrupted) run counts as missing.
    """
    path = solver_path(profile, store)
    if not path.exists():
        raise SolverNotTrainedError(
            f"no trained LearnedWiener for profile {profile.name!r} at {path}; train it with "
            f"`repro train solver --profile {profile.name}` or "
            f"repro.experiments.solver.train_learned_wiener(repro.profiles.get({profile.name!r})) "
            f"(resumes an interrupted run)")
    state = load_checkpoint(path, map_location="cpu")
    if not isinstance(state, dict) or "model" not in state or "config" not in state:
        raise ValueError(f"{path} is not a LearnedWiener checkpoint; delete it and retrain")
    return _model_from_state(state, device)
