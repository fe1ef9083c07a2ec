"""Health: is the database up, is the broker reachable, which workers were seen recently."""
