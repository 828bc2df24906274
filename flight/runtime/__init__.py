"""The onboard executive: clock, software bus, rate groups, persistence, health and components."""
