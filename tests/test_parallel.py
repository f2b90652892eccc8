import pytest

from synthmed.parallel import ordered_map


def _square(x: int) -> int:
    if x < 0:
        raise ValueError(f"negative {x}")
    return x * x


@pytest.mark.parametrize("workers", [1, 2])
def test_results_come_back_in_order(workers):
    assert list(ordered_map(_square, range(7), workers=workers, window=3)) == [x * x for x in range(7)]


@pytest.mark.parametrize("workers", [1, 2])
def test_errors_propagate_at_their_item(workers):
    seen = []
    with pytest.raises(ValueError, match="negative -1"):
        for value in ordered_map(_square, [1, 2, -1, 3], workers=workers):
            seen.append(value)
    assert seen == [1, 4]
