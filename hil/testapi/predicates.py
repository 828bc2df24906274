"""Composable predicates with readable descriptions, for the test API's failure messages.

F Prime's test API vocabulary (`equal_to`, `greater_than`, `within_range`, ...): each predicate is a
callable object whose `str()` reads as the condition it checks, so that an assertion that fails can
say what it waited for ("health.CPU_PERCENT > 90") and what arrived instead.
"""

import math
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any, Protocol, runtime_checkable


@runtime_checkable
class Predicate(Protocol):
    """A test on one value; `str()` describes it as the condition it checks ("> 3")."""

    def __call__(self, value: Any) -> bool: ...


def _call(predicate: Callable[[Any], bool], value: Any) -> bool:
    # A value of the wrong type (a string where a number was expected) simply does not match: the
    # failure message then shows what arrived, which says more than a TypeError would.
    try:
        return bool(predicate(value))
    except (TypeError, ValueError, ArithmeticError):
        return False


def as_predicate(expected: Any) -> Callable[[Any], bool]:
    """`expected` if it is already a predicate (any callable), else `equal_to(expected)`."""
    if callable(expected) and not isinstance(expected, type):
        return expected
    return equal_to(expected)


def describe(predicate: Callable[[Any], bool]) -> str:
    """The predicate's description: its `str()` for ours, the function's name for a plain one."""
    if isinstance(predicate, _Described):
        return str(predicate)
    name = getattr(predicate, "__name__", None)
    return f"satisfies {name}" if name and name != "<lambda>" else "satisfies a custom predicate"


class _Described:
    """Base of the predicates here: `__str__` is the description, `__repr__` names the factory."""

    __slots__ = ()

    def __repr__(self) -> str:
        return f"<predicate {self}>"


@dataclass(frozen=True, slots=True, repr=False)
class _Compare(_Described):
    symbol: str
    operand: Any
    test: Callable[[Any, Any], bool]

    def __call__(self, value: Any) -> bool:
        return _call(lambda v: self.test(v, self.operand), value)

    def __str__(self) -> str:
        return f"{self.symbol} {self.operand!r}"


def _close(value: Any, operand: Any) -> bool:
    if isinstance(value, float) or isinstance(operand, float):
        # Telemetry often travels as f32: compare at single precision, not bit for bit.
        return math.isclose(value, operand, rel_tol=1e-6, abs_tol=1e-9)
    return value == operand


def equal_to(expected: Any) -> Callable[[Any], bool]:
    """value == expected (floats compared to within f32 precision)."""
    return _Compare("==", expected, _close)


def not_equal_to(expected: Any) -> Callable[[Any], bool]:
    """value != expected."""
    return _Compare("!=", expected, lambda value, operand: not _close(value, operand))


def greater_than(limit: Any) -> Callable[[Any], bool]:
    """value > limit."""
    return _Compare(">", limit, lambda value, operand: value > operand)


def greater_than_or_equal_to(limit: Any) -> Callable[[Any], bool]:
    """value >= limit."""
    return _Compare(">=", limit, lambda value, operand: value >= operand)


def less_than(limit: Any) -> Callable[[Any], bool]:
    """value < limit."""
    return _Compare("<", limit, lambda value, operand: value < operand)


def less_than_or_equal_to(limit: Any) -> Callable[[Any], bool]:
    """value <= limit."""
    return _Compare("<=", limit, lambda value, operand: value <= operand)


@dataclass(frozen=True, slots=True, repr=False)
class _WithinRange(_Described):
    lower: Any
    upper: Any

    def __call__(self, value: Any) -> bool:
        return _call(lambda v: self.lower <= v <= self.upper, value)

    def __str__(self) -> str:
        return f"within [{self.lower!r}, {self.upper!r}]"


def within_range(lower: Any, upper: Any) -> Callable[[Any], bool]:
    """lower <= value <= upper (both ends included)."""
    if _call(lambda _: lower > upper, None):
        raise ValueError(f"within_range({lower!r}, {upper!r}): the lower bound exceeds the upper")
    return _WithinRange(lower, upper)


@dataclass(frozen=True, slots=True, repr=False)
class _IsIn(_Described):
    options: tuple[Any, ...]

    def __call__(self, value: Any) -> bool:
        return _call(lambda v: v in self.options, value)

    def __str__(self) -> str:
        return f"in {list(self.options)!r}"


def is_in(options: Iterable[Any]) -> Callable[[Any], bool]:
    """value is one of `options`."""
    return _IsIn(tuple(options))


@dataclass(frozen=True, slots=True, repr=False)
class _AllOf(_Described):
    predicates: tuple[Callable[[Any], bool], ...]

    def __call__(self, value: Any) -> bool:
        return all(_call(predicate, value) for predicate in self.predicates)

    def __str__(self) -> str:
        return "(" + " and ".join(describe(p) for p in self.predicates) + ")"


@dataclass(frozen=True, slots=True, repr=False)
class _AnyOf(_Described):
    predicates: tuple[Callable[[Any], bool], ...]

    def __call__(self, value: Any) -> bool:
        return any(_call(predicate, value) for predicate in self.predicates)

    def __str__(self) -> str:
        return "(" + " or ".join(describe(p) for p in self.predicates) + ")"


def _predicates(what: str, predicates: tuple[Any, ...]) -> tuple[Callable[[Any], bool], ...]:
    if not predicates:
        raise ValueError(f"{what}() needs at least one predicate")
    return tuple(as_predicate(p) for p in predicates)


def all_of(*predicates: Any) -> Callable[[Any], bool]:
    """Every predicate holds (a plain value stands for `equal_to(value)`)."""
    return _AllOf(_predicates("all_of", predicates))


def any_of(*predicates: Any) -> Callable[[Any], bool]:
    """At least one predicate holds (a plain value stands for `equal_to(value)`)."""
    return _AnyOf(_predicates("any_of", predicates))


@dataclass(frozen=True, slots=True, repr=False)
class _Not(_Described):
    predicate: Callable[[Any], bool]

    def __call__(self, value: Any) -> bool:
        return not _call(self.predicate, value)

    def __str__(self) -> str:
        return f"not {describe(self.predicate)}"


def not_(predicate: Any) -> Callable[[Any], bool]:
    """The predicate does not hold."""
    return _Not(as_predicate(predicate))


@dataclass(frozen=True, slots=True, repr=False)
class _Anything(_Described):
    def __call__(self, value: Any) -> bool:
        return True

    def __str__(self) -> str:
        return "any value"


def anything() -> Callable[[Any], bool]:
    """Always holds: waits for any sample or event at all."""
    return _Anything()
