"""Real I/O for bitloot: store, provider clients, vaults, mailers, clock, logs, worker."""
