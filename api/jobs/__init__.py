"""Jobs: submission, listing, cancellation and outputs (API side); lifecycle and sweep (worker side)."""
