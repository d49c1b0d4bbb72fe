"""Analyses that need torch or numpy (attention, attribution, ...); never the Jupyter layer."""
