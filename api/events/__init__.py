"""Live job events (Server-Sent Events) fed by one shared database poller per process."""
