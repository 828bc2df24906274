"""Penumbra onboard software: runtime, protocol, links, power, payload and inference."""
