"""The integration-test API: F Prime's vocabulary (send_and_assert_command, await_telemetry,
assert_event, predicates) over a ground station, asyncio-native; `plugin` is its pytest plugin."""

from hil.testapi.api import IntegrationApi
from hil.testapi.predicates import (
    all_of,
    any_of,
    anything,
    equal_to,
    greater_than,
    greater_than_or_equal_to,
    is_in,
    less_than,
    less_than_or_equal_to,
    not_,
    not_equal_to,
    within_range,
)
from hil.testapi.target import Target, TargetConnection

__all__ = [
    "IntegrationApi",
    "Target",
    "TargetConnection",
    "all_of",
    "any_of",
    "anything",
    "equal_to",
    "greater_than",
    "greater_than_or_equal_to",
    "is_in",
    "less_than",
    "less_than_or_equal_to",
    "not_",
    "not_equal_to",
    "within_range",
]
