"""Sweeps: one base spec over a grid of values × seeds, created and cancelled as a batch."""
