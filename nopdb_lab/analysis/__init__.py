"""Analyses that need torch or numpy (attention, stacking, heatmap slices, flows).

Never imports the Jupyter layer.
"""
