"""repro: the package behind the blind-deconvolution companion book.

One module per concept:

- :mod:`repro.ops`       blur forward operators (direct and FFT), their adjoints
- :mod:`repro.kernels`   Gaussian, gallery and motion blur kernels
- :mod:`repro.metrics`   PSNR, SSIM, ISNR, MNC, error ratio, comparison up to shift
- :mod:`repro.data`      registry of the public test data (upstream URL + SHA-256)
- :mod:`repro.nonblind`  differentiable non-blind solvers (Wiener, Tikhonov)
- :mod:`repro.toy1d`     the 1D toy problem of Kernel-Diff §3.1
- :mod:`repro.selfdeblur` SelfDeblur (Ren et al. 2020) with Kotera et al.'s modifications
- :mod:`repro.chapters` papermill execution of the chapters, per profile
- :mod:`repro.interactive` live controls for the chapters' "Explore" sections
- :mod:`repro.dil`       D3 / NSD-DIL: linear CNN, Deep Identity Learning, DRK collapse
- :mod:`repro.evaluation` resumable per-case evaluation of methods on test cases
- :mod:`repro.store`     atomic writes, per-profile results and checkpoints
"""

__version__ = "0.1.0"
