"""The classifier and its training: `backbones` (a timm backbone by name, its pretrained weights
found offline, its early stages frozen), `model` (`AlignmentClassifier`: the backbone and a
one-logit head, a Lightning module), `train_config` (`FinetuneConfig`, the YAML profiles),
`recipe` (the steps, region and data sized to the frames given), `train` (`run_training`, the
`train` command) and `baseline` (the classical edge baseline).

Import from the modules: this `__init__` imports nothing, so `modeling.baseline` and
`modeling.train_config` stay free of torch until a model is built.
"""
