"""Compare jobs side by side: spec diff, seed groups with CIs, tests, effects, curve bands, CSV and plots."""
