"""Reproduction tooling for the paper's tables and figures (docs: experiments/README.md).

- ``paper``: the published numbers (Tables 2, 3, 4) and the table layouts.
- ``tables``: pure table logic (mean and std over seeds, Markdown and CSV); no file access.
- ``runs``: reading run directories (results.json, .hydra/*.yaml, failed.json) into job records.
- ``aggregate``: ``python -m fsan_lightning.reproduce.aggregate SWEEP_DIR --table table4 ...``.
- ``sweep``: ``python -m fsan_lightning.reproduce.sweep --table table4 ...`` runs the jobs one process
  each (a failing job does not stop the others), then aggregates (what ``make ablations`` calls).
- ``figures``: ``python -m fsan_lightning.reproduce.figures RUN_DIR`` (Figures 3 and 4).
"""
