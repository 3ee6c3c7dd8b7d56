"""Are seeded runs on a GPU bit-identical from one run to the next?

The Reproduce page says that on a GPU the book's trainers and samplers are seeded but not
bit-identical (cuDNN may use non-deterministic algorithms; several backward passes accumulate in
a non-deterministic order). This measures it: each of them runs twice with one
seed on CUDA, at a small size, and the two results are compared bit for bit:

- D3's DIL training (40 gallery kernels, 8 steps): the DRK;
- SelfDeblur, original method (64² grey image, kernel 9, 100 iterations, or ``--iterations``): x̂ and k̂;
- Kernel-Diff's ε_θ training (the smoke profile's U-Net, 20 steps): the EMA weights;
- Kernel-Diff's guided sampler (that model, 50 steps, Wiener solver): the kernels.

Without CUDA it says so and exits 0. ``--device cpu`` runs the same comparison on the CPU, where
the runs must be bit-identical (the test suite's check of this script). ``--out`` writes the
rows as JSON, and ``--iterations`` shortens the SelfDeblur runs (the test suite's check runs 10).

    python scripts/gpu_determinism.py --out build/determinism.json
"""

from __future__ import annotations

import argparse

import torch

from repro import profiles
from repro import dil, kerneldiff, selfdeblur, synth
from repro.kernels import random_kernel_gallery
from repro._io import save_json
from repro.experiments import kerneldiff as kdx


def compare(name: str, a: torch.Tensor, b: torch.Tensor) -> dict:
    same = torch.equal(a, b)
    difference = (a.double() - b.double()).abs().max().item()
    print(f"  {name:46s} bit-identical: {str(same):5s}  max |difference| {difference:.3g}", flush=True)
    return {"name": name, "bit_identical": same, "max_abs_difference": difference}


def twice(run) -> tuple:
    return run(), run()


def main(argv=None) -> list[dict]:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cuda", choices=["cuda", "cpu"])
    parser.add_argument("--out", help="write the results as JSON here")
    parser.add_argument("--iterations", type=int, default=100, help="SelfDeblur iterations (default 100)")
    args = parser.parse_args(argv)
    if args.iterations < 2:
        parser.error(f"--iterations must be at least 2, got {args.iterations}")
    device = args.device
    if device == "cuda" and not torch.cuda.is_available():
        print("no CUDA device: nothing to measure")
        return []
    name = torch.cuda.get_device_name() if device == "cuda" else "the CPU"
    print(f"two seeded runs each on {name} (torch {torch.__version__}):")
    rows = []

    gallery = random_kernel_gallery(40, 11, seed=3)
    config = dil.DILConfig(gallery_size=40, steps=8, batch_size=8, log_every=4, checkpoint_every=8)
    a, b = twice(lambda: dil.train_dil(config, seed=0, gallery=gallery, device=device, progress=False).drk)
    rows.append(compare("DIL training: DRK", a, b))

    y = torch.rand(1, 1, 64, 64, generator=torch.Generator().manual_seed(0)).to(device)
    sd = selfdeblur.SelfDeblurConfig(iterations=args.iterations, ssim_switch=args.iterations // 2)
    a, b = twice(lambda: selfdeblur.run_selfdeblur(y, 9, sd, seed=0, device=device, progress=False))
    rows.append(compare("SelfDeblur: x̂", a.x_hat, b.x_hat))
    rows.append(compare("SelfDeblur: k̂", a.k_hat, b.k_hat))

    unet = kdx.unet_config(profiles.get("smoke"))
    data = synth.BlurPairs(synth.motion_kernels(16, unet.kernel_size, synth.TRAIN_KERNEL_SEED),
                           [torch.rand(3, 2 * unet.image_size, 2 * unet.image_size,
                                       generator=torch.Generator().manual_seed(i)) for i in range(4)],
                           crop=unet.image_size, seed=0)
    train = kerneldiff.TrainConfig(steps=20, batch_size=4, lr=1e-3, log_every=10, checkpoint_every=20)
    a, b = twice(lambda: kerneldiff.train(unet, train, data, seed=0, device=device, progress=False))
    rows.append(compare("Kernel-Diff training: EMA weights", torch.cat([p.flatten() for p in a.ema.parameters()]),
                        torch.cat([p.flatten() for p in b.ema.parameters()])))

    y, _, _ = data.batch(0, 1, "cpu")

    solver = kerneldiff.wiener_solver(1e-3)
    kernels = twice(lambda: kerneldiff.sample(a.ema, y, solver, steps=50, seed=0).kernels)
    rows.append(compare("Kernel-Diff guided sampling: kernels", *kernels))
    if args.out:
        save_json({"device": name, "torch": torch.__version__, "rows": rows}, args.out)
    return rows


if __name__ == "__main__":
    main()
