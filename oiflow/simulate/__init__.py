"""Simulation: array geometry, sky models, synthetic raw frames and OIFITS with known truth."""
