"""Statistical ablation reports, rebuilt from MLflow alone.

:func:`hpcbench.report.build.build_report` reads a study's complete runs from MLflow
(:mod:`hpcbench.report.aggregate`), summarises every ablation axis with bootstrap
confidence intervals and rank tests (:mod:`hpcbench.report.statistics`), fits the dose
and training-set-size curves, draws the figures (:mod:`hpcbench.report.figures`) and
writes ``report.md`` and a self-contained ``report.html``
(:mod:`hpcbench.report.render`). Submodules import pandas, scipy and matplotlib; this
package module imports nothing heavy.
"""
