"""Launch: start one process per party (and the dealer), watch them, fail fast."""
