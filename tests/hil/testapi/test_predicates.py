"""hil.testapi.predicates: each predicate tests what it says, and says it readably."""

import pytest

from hil.testapi.predicates import (
    all_of,
    any_of,
    anything,
    as_predicate,
    describe,
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


@pytest.mark.parametrize(
    ("predicate", "text", "holds", "fails"),
    [
        (equal_to(5), "== 5", 5, 6),
        (not_equal_to("SAFE"), "!= 'SAFE'", "NOMINAL", "SAFE"),
        (greater_than(3), "> 3", 4, 3),
        (greater_than_or_equal_to(3), ">= 3", 3, 2),
        (less_than(80.0), "< 80.0", 79.5, 80.0),
        (less_than_or_equal_to(80), "<= 80", 80, 81),
        (within_range(10, 20), "within [10, 20]", 20, 21),
        (is_in(["SAFE", "NOMINAL"]), "in ['SAFE', 'NOMINAL']", "SAFE", "BOOT"),
        (all_of(greater_than(1), less_than(5)), "(> 1 and < 5)", 3, 5),
        (any_of(less_than(0), greater_than(9)), "(< 0 or > 9)", 10, 5),
        (not_(within_range(1, 2)), "not within [1, 2]", 3, 1),
        (anything(), "any value", None, None),
    ],
)
def test_each_predicate_tests_and_describes_its_condition(predicate, text, holds, fails):
    assert str(predicate) == text
    assert predicate(holds) is True
    if fails is not None:
        assert predicate(fails) is False


def test_descriptions_compose_as_they_read():
    predicate = all_of(greater_than(0), not_(is_in([3, 4])), any_of(5, less_than(10)))
    assert str(predicate) == "(> 0 and not in [3, 4] and (== 5 or < 10))"
    assert predicate(6) and not predicate(3)


def test_a_value_of_the_wrong_type_does_not_match_instead_of_raising():
    assert greater_than(3)("many") is False
    assert within_range(1, 2)(None) is False
    assert not_(greater_than(3))("many") is True


def test_floats_compare_at_single_precision():
    # 0.1 sent as f32 comes back as 0.10000000149011612.
    assert equal_to(0.1)(0.10000000149011612)
    assert not equal_to(0.1)(0.1001)


def test_a_plain_value_stands_for_equal_to_and_a_function_for_itself():
    assert str(as_predicate(7)) == "== 7"

    def is_even(value: int) -> bool:
        return value % 2 == 0

    assert as_predicate(is_even) is is_even
    assert describe(is_even) == "satisfies is_even"
    assert describe(lambda v: v) == "satisfies a custom predicate"


def test_an_empty_range_or_combination_is_a_mistake_caught_early():
    with pytest.raises(ValueError, match="lower bound exceeds"):
        within_range(5, 1)
    with pytest.raises(ValueError, match="at least one predicate"):
        all_of()
