import pytest

from synthmed.config import PhantomConfig, PrepareConfig, build_config
from synthmed.errors import SynthmedError


def test_defaults_are_valid():
    assert build_config(PrepareConfig).dims == 2
    assert build_config(PhantomConfig).shape == (155, 240, 240)


@pytest.mark.parametrize(
    ("values", "field"),
    [({"dims": 4}, "--dims"), ({"size": 2}, "--size"), ({"test_fraction": 1.0}, "--test-fraction"),
     ({"layout": "dicom"}, "--layout"), ({"workers": 0}, "--workers"), ({"bogus": 1}, "--bogus")],
)
def test_option_errors_use_the_option_spelling(values, field):
    with pytest.raises(SynthmedError, match=rf"^options: {field}: "):
        build_config(PrepareConfig, **values)


def test_other_sources_name_the_field_path():
    from synthmed.study import build_spec

    with pytest.raises(SynthmedError, match=r"^study.yaml: data.test_fraction: "):
        build_spec({"data": {"phantom": {}, "test_fraction": 1.0}}, "study.yaml")


def test_cli_option_error_names_the_option(store2d, tmp_path):
    import subprocess
    import sys

    proc = subprocess.run([sys.executable, "-m", "synthmed", "generator", "train", str(store2d.path),
                           str(tmp_path / "run"), "--checkpoint-every", "0", "--device", "cpu"],
                          capture_output=True, text=True)
    lines = [line for line in proc.stderr.splitlines() if line.strip()]
    assert proc.returncode == 2 and len(lines) == 1, proc.stderr
    assert "--checkpoint-every: Input should be greater than or equal to 1 (got 0)" in lines[0]
    assert "checkpoint_every" not in lines[0]


def test_phantom_shape_must_be_large_enough():
    with pytest.raises(SynthmedError, match="shape: .*at least 16"):
        build_config(PhantomConfig, shape=(8, 32, 32))
