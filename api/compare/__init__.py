"""Compare jobs side by side: spec diff, seed groups with mean ± std, learning curves, CSV and plots."""
