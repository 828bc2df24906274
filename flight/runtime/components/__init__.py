"""The components every node has: mode, parameters, health, time, bus and rate-group monitors."""
