"""PNG pictures: overlaid learning curves of compared jobs, and a job's per-layer diagnostics."""
