"""Reduction L0 → L1: the native P2VM reducer, the container backends and their runners."""
