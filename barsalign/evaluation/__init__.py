"""How good a model is: `metrics` (F0.5, thresholds, calibration; scikit-learn underneath),
`evaluate` (a model and the baseline on a labelled folder, the held-out set, the error
galleries), `gradcam` (where the model looked, on the square it saw) and `predict` (the
`evaluate` and `predict` commands).

Import from the modules: this `__init__` imports nothing, so `evaluation.metrics` stays free
of torch.
"""
