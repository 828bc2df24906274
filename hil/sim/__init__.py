"""The emulator: satellites running the real flight software in virtual time, and scenarios."""
