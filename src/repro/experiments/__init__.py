"""The book's experiments: each chapter's profiles, test sets, cached runs and tables.

They sit on top of the science modules (:mod:`repro.dil`, :mod:`repro.selfdeblur`,
:mod:`repro.kerneldiff`, ...), which take plain values and never import this package or the
result store. Each chapter's entry point takes a ``repro.profiles.Profile`` and a
``repro.store.Store`` (``store=None``: :meth:`repro.store.Store.default`, ``$REPRO_RESULTS`` or
``results/``), keeps its heavy results in ``<store>/<profile>/<chapter>/``, cached with
:func:`repro._io.cached` and :class:`repro._io.Entries`, and returns a typed result that the
chapter's notebook shows.

- :mod:`repro.experiments.evaluation`       test cases, resumable per-case scoring, summary tables
- :mod:`repro.experiments.d3`               the D3 / NSD-DIL chapters
- :mod:`repro.experiments.selfdeblur`       the SelfDeblur chapters (failure modes, Kodak and Levin)
- :mod:`repro.experiments.kerneldiff_data`  the Kernel-Diff data sizes of each profile
- :mod:`repro.experiments.solver`           the learned non-blind solver F, trained per profile
- :mod:`repro.experiments.kerneldiff`       the Kernel-Diff chapters (ε_θ, sampling, evaluation)
- :mod:`repro.experiments.benchmark`        every method on the same test sets
"""
