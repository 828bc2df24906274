"""The one error the orbit package raises on purpose: an orbit it cannot build or propagate."""


class OrbitError(Exception):
    """A TLE or orbit request that cannot be used; the message says which field and why."""
