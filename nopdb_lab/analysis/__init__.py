"""Analyses of captured values that need torch or numpy (imported lazily, inside functions).

Attention capture and rollout, stacking captures, heatmap slicing and value summaries.
This layer never imports the Jupyter layer (``tests/test_architecture.py`` checks it).
"""
