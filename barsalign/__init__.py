"""barsalign: label, preprocess, train, evaluate and monitor bar-alignment classifiers."""

from barsalign.errors import BarsalignError

__all__ = ["BarsalignError", "__version__"]
__version__ = "0.1.0"
