"""Penumbra ground segment: the operator's station and tools."""
