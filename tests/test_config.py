import pytest

from synthmed.config import PhantomConfig, PrepareConfig, build_config
from synthmed.errors import SynthmedError


def test_defaults_are_valid():
    assert build_config(PrepareConfig).dims == 2
    assert build_config(PhantomConfig).shape == (155, 240, 240)


@pytest.mark.parametrize(
    ("values", "field"),
    [({"dims": 4}, "dims"), ({"size": 2}, "size"), ({"test_fraction": 1.0}, "test_fraction"),
     ({"layout": "dicom"}, "layout"), ({"workers": 0}, "workers"), ({"bogus": 1}, "bogus")],
)
def test_errors_name_the_field(values, field):
    with pytest.raises(SynthmedError, match=rf"options: .*{field}"):
        build_config(PrepareConfig, **values)


def test_phantom_shape_must_be_large_enough():
    with pytest.raises(SynthmedError, match="shape: .*at least 16"):
        build_config(PhantomConfig, shape=(8, 32, 32))
