"""Spec checks shared by validation and job submission: dataset shape, service limits, lint."""
