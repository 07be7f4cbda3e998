"""Training-free baselines (no Lightning): the word-prototype baseline's fitting and scoring.

The LightningModules that wrap them for `python -m fsan_lightning.train model=prototype|random` are in
`fsan_lightning.lit.baselines`; the Random row's arithmetic is `fsan_lightning.metrics.random_baseline`.
"""
