"""Figures for the notebooks: `eda` (01's tables and pictures of a frame folder), `cluster_map`
(01's map of frame embeddings, clickable), `preview` (03's preprocessing steps), `plots` (05's
curves and galleries) and `efficiency_report` (the index's label-efficiency curves).

Import from the modules: this `__init__` imports nothing.
"""
