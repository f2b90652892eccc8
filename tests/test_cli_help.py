"""Help at 80 columns shows every option name whole (only the help text wraps)."""

from __future__ import annotations

import typer
from typer.testing import CliRunner

from synthmed.cli import app


def commands(group, path: tuple[str, ...] = ()):
    yield path, group
    if hasattr(group, "commands"):  # typer groups are not click.Group subclasses
        for name, sub in group.commands.items():
            yield from commands(sub, (*path, name))


def test_every_option_name_is_whole_at_80_columns():
    runner = CliRunner()
    root = typer.main.get_command(app)
    checked = 0
    for path, command in commands(root):
        result = runner.invoke(app, [*path, "--help"], env={"COLUMNS": "80", "TERMINAL_WIDTH": "80"})
        assert result.exit_code == 0, (path, result.output)
        lines = result.output.splitlines()
        assert max(len(line) for line in lines) <= 80, path
        text = " ".join(result.output.split())
        for param in command.params:
            for opt in (*param.opts, *param.secondary_opts):
                if opt.startswith("--"):
                    assert opt in text, (path, opt)
                    checked += 1
        assert "…" not in result.output, (path, [line for line in lines if "…" in line])
    assert checked > 100
