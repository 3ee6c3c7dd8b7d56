"""repro: the package behind the blind-deconvolution companion book.

Two layers. The science modules take plain values (tensors, config dataclasses) and know nothing
of profiles, result files or chapters:

- :mod:`repro.ops`       blur forward operators (direct and FFT), their adjoints
- :mod:`repro.kernels`   Gaussian, gallery and motion blur kernels
- :mod:`repro.metrics`   PSNR, SSIM, ISNR, MNC, error ratio, comparison up to shift
- :mod:`repro.data`      registry of the public test data (upstream URL + SHA-256), image files
- :mod:`repro.nonblind`  non-blind solvers: Wiener, Tikhonov, Levin's sparse prior, the learned DWDN-style solver
- :mod:`repro.toy1d`     the 1D toy problem of Kernel-Diff §3.1
- :mod:`repro.dil`       D3 / NSD-DIL: linear CNN, Deep Identity Learning, DRK collapse
- :mod:`repro.selfdeblur` SelfDeblur (Ren et al. 2020) with Kotera et al.'s modifications
- :mod:`repro.synth`     Kernel-Diff's training pairs: motion kernels, BSDS500 crops
- :mod:`repro.kerneldiff` Kernel-Diff: conditional kernel diffusion, guided sampling
- :mod:`repro.alternating` the alternating MAP_{x,k} baseline

The experiments (:mod:`repro.experiments`) hold each chapter's profiles, test sets, cached runs and
tables; the application modules use both:

- :mod:`repro.methods`, :mod:`repro.cli` the ``repro`` command for users' own images
- :mod:`repro.store`     where results live, per profile and chapter
- :mod:`repro.chapters`  papermill execution of the chapters, per profile; the Performance page
- :mod:`repro.timing`    wall-clock timing and benchmark records
- :mod:`repro.interactive` live controls for the chapters' "Explore" sections

Helpers shared by all: :mod:`repro._checks` (validation), :mod:`repro._io` (atomic files,
checked caches), :mod:`repro._threads`, :mod:`repro._schedule`.
"""

__version__ = "0.1.0"
