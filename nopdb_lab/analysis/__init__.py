"""Analyses that need torch or numpy: attention, stacking, heatmaps, summaries, gradients."""
