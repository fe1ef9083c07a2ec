"""The `trainctl` command: run the service (serve, api, worker), manage keys and migrations."""
