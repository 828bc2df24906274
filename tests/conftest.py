"""Test-wide settings: Hypothesis properties run without a per-example wall-clock deadline."""

from hypothesis import settings

# A test must not fail on timing: a busy CI machine or a slow fsync (the CFDP receiver's) can push
# one example past Hypothesis's default 200 ms deadline without anything being wrong.
settings.register_profile("penumbra", deadline=None)
settings.load_profile("penumbra")
