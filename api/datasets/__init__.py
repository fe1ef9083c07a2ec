"""Uploaded datasets: CSV or NPZ, size-checked, parsed without pickle, stored under generated names."""
