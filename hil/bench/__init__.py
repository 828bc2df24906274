"""The HIL test bench: targets, the simulated environment around them, fault injection, records."""
