"""A new generator family is one module and one registration: no other file changes.

The family here lives in a module written to a temporary folder (standing in for a plugin or a
new ``synthmed.generators`` module) and is registered with
:func:`synthmed.generators.registry.register`; the CLI trains and samples it, the study spec
accepts its name, and ``--help`` lists every registered family from the registry itself.
"""

from __future__ import annotations

import textwrap

import pytest

from cli_inprocess import invoke_joined as cli
from synthmed.generators import registry
from synthmed.study.spec import GeneratorSpec

PLUGIN = '''
from synthmed.generators.diffusion.model import DiffusionGenerator


class PluginDiffusion(DiffusionGenerator):
    """A family defined outside synthmed: the ddpm networks under another name."""

    name = "plugin"
'''


@pytest.fixture
def plugin(tmp_path, monkeypatch):
    (tmp_path / "plugin_family.py").write_text(textwrap.dedent(PLUGIN))
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.setattr(registry, "_REGISTRY", dict(registry._REGISTRY))  # undone after the test
    registry.register("plugin", "plugin_family:PluginDiffusion", "a test family")
    return "plugin"


def test_registered_family_trains_and_samples_from_the_cli(plugin, store2d, tmp_path, monkeypatch, capsys):
    run, out = str(tmp_path / "run"), str(tmp_path / "syn")
    code, stdout, err = cli(monkeypatch, capsys, "generator", "train", str(store2d.path), run, "--model", plugin,
                            "--steps", "2", "--batch", "2", "--train-timesteps", "100", "--device", "cpu",
                            "--no-progress")
    assert code == 0, err
    code, stdout, err = cli(monkeypatch, capsys, "generator", "sample", run, out, "--n", "2", "--steps", "2",
                            "--batch", "2", "--device", "cpu", "--no-progress")
    assert code == 0 and "2 synthetic samples" in stdout, err
    assert GeneratorSpec(name=plugin).name == plugin


def test_unregistered_family_is_refused_with_the_known_names(store2d, tmp_path, monkeypatch, capsys):
    code, _, err = cli(monkeypatch, capsys, "generator", "train", str(store2d.path), str(tmp_path / "run"),
                       "--model", "plugin", "--steps", "2", "--device", "cpu", "--no-progress")
    assert code != 0 and "unknown generator 'plugin'" in err and "stylegan2" in err
    assert not (tmp_path / "run").exists()
    with pytest.raises(ValueError, match="must be one of"):
        GeneratorSpec(name="plugin")


def test_help_lists_every_registered_family(monkeypatch, capsys):
    _, out, _ = cli(monkeypatch, capsys, "generator", "train", "--help")
    for name in registry.names():
        assert name in out
    assert registry.summaries().startswith("ddpm (diffusion")
