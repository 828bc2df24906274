"""Penumbra's environment around the flight software: emulator, fault models and the HIL bench."""
