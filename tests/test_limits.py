"""Limits before work: YAML alias bombs, echoed values, and memory / disk estimates refused up front."""

from __future__ import annotations

import subprocess
import sys
import time

import pytest

from synthmed.config import PhantomConfig, build_config, load_yaml
from synthmed.errors import SynthmedError
from synthmed.study import load_spec


def alias_bomb(levels: int = 9, width: int = 9) -> str:
    """A billion-laughs study file: level k repeats level k-1 ``width`` times (9**9 strings)."""
    lines = ["name: s", "data: {phantom: {cases: 2}}", "a0: &a0 [x,x,x,x,x,x,x,x,x]"]
    for i in range(1, levels):
        lines.append(f"a{i}: &a{i} [" + ",".join([f"*a{i - 1}"] * width) + "]")
    return "\n".join(lines) + f"\nsamples: *a{levels - 1}\n"


def test_alias_bomb_is_refused_fast_with_a_short_message(tmp_path):
    path = tmp_path / "bomb.yaml"
    path.write_text(alias_bomb())
    assert path.stat().st_size < 500
    start = time.perf_counter()
    with pytest.raises(SynthmedError) as info:
        load_spec(path)
    assert time.perf_counter() - start < 1.0
    message = str(info.value)
    assert len(message.encode()) < 1024 and "\n" not in message
    assert "bomb.yaml" in message and "expands to more than" in message


def test_alias_bomb_through_the_cli_is_one_red_line(tmp_path):
    path = tmp_path / "bomb.yaml"
    path.write_text(alias_bomb())
    start = time.perf_counter()
    proc = subprocess.run([sys.executable, "-m", "synthmed", "study", "plan", str(path)], capture_output=True,
                          text=True, timeout=60)
    lines = [line for line in proc.stderr.splitlines() if line.strip()]
    assert proc.returncode == 2 and len(lines) == 1 and len(proc.stderr) < 1024, proc.stderr[:2000]
    assert time.perf_counter() - start < 30  # start-up included; the refusal itself is milliseconds


def test_recursive_alias_and_ordinary_aliases(tmp_path):
    (tmp_path / "loop.yaml").write_text("a: &a [1, *a]\n")
    with pytest.raises(SynthmedError, match="recursive alias"):
        load_yaml(tmp_path / "loop.yaml")
    (tmp_path / "ok.yaml").write_text("base: &b {preset: tiny, steps: 3}\ngens: [*b, *b]\n")
    assert load_yaml(tmp_path / "ok.yaml") == {"base": {"preset": "tiny", "steps": 3},
                                               "gens": [{"preset": "tiny", "steps": 3}] * 2}
    (tmp_path / "bad.yaml").write_text("a: [1, 2\n")
    with pytest.raises(SynthmedError, match="bad.yaml: not valid YAML"):
        load_yaml(tmp_path / "bad.yaml")


def test_echoed_values_and_problem_counts_are_capped(tmp_path):
    (tmp_path / "long.yaml").write_text("name: s\ndata: {phantom: {cases: 2}}\nsamples: " + "9" * 200 + "x\n")
    with pytest.raises(SynthmedError) as info:
        load_spec(tmp_path / "long.yaml")
    assert len(str(info.value)) < 300 and "samples:" in str(info.value) and "..." in str(info.value)
    many = "[" + ",".join(["bad"] * 5000) + "]"
    (tmp_path / "many.yaml").write_text(f"name: s\ndata: {{phantom: {{cases: 2}}}}\nseeds: {many}\n")
    with pytest.raises(SynthmedError) as info:
        load_spec(tmp_path / "many.yaml")
    assert len(str(info.value)) < 1500 and "and 4990 more" in str(info.value)
    with pytest.raises(SynthmedError) as info:
        build_config(PhantomConfig, "options", cases=["x" * 10**6])
    assert len(str(info.value)) < 300


def run_cli(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "synthmed", *args], capture_output=True, text=True, timeout=120)


def one_red_line(proc: subprocess.CompletedProcess) -> str:
    lines = [line for line in proc.stderr.splitlines() if line.strip()]
    assert proc.returncode == 2 and len(lines) == 1 and "Traceback" not in proc.stderr, proc.stderr[-2000:]
    return lines[0]


def test_phantom_too_big_for_this_machine_is_refused_before_any_work(tmp_path):
    start = time.perf_counter()
    line = one_red_line(run_cli("data", "phantom", str(tmp_path / "ph"), "--shape", "100000", "100000", "100000"))
    assert "needs about 40.0 PB of memory" in line and "100000×100000×100000" in line and "--force" in line
    line = one_red_line(run_cli("data", "phantom", str(tmp_path / "ph"), "--cases", str(10**9)))
    assert "of disk" in line and "1000000000 cases" in line and "--force" in line
    assert time.perf_counter() - start < 60 and not (tmp_path / "ph").exists()


def test_force_goes_ahead_and_prepare_and_sample_are_checked(tmp_path, monkeypatch):
    from synthmed import limits
    from synthmed.config import PrepareConfig
    from synthmed.data.phantom import write_phantom
    from synthmed.data.prepare import prepare
    from synthmed.limits import ResourceError

    monkeypatch.setattr(limits, "available_memory", lambda: 1000)  # a machine with 1 kB free
    with pytest.raises(ResourceError, match=r"data phantom: needs about .* of memory .* but 1.0 kB is available"):
        write_phantom(tmp_path / "ph", cases=2, seed=0, shape=(16, 24, 24), progress=False)
    assert not (tmp_path / "ph").exists()
    write_phantom(tmp_path / "ph", cases=2, seed=0, shape=(16, 24, 24), progress=False, force=True)
    config = PrepareConfig(size=16, test_fraction=0.5)
    with pytest.raises(ResourceError, match=r"data prepare: needs about .* of memory \(2 case\(s\) of 16×24×24"):
        prepare(tmp_path / "ph", tmp_path / "store", config, progress=False)
    assert not (tmp_path / "store").exists()
    monkeypatch.setattr(limits, "available_memory", lambda: 2**40)
    monkeypatch.setattr(limits, "free_disk", lambda path: 1000)  # and 1 kB of disk
    with pytest.raises(ResourceError, match=r"data prepare: needs about .* of disk .* has 1.0 kB free"):
        prepare(tmp_path / "ph", tmp_path / "store", config, progress=False)
    store = prepare(tmp_path / "ph", tmp_path / "store", config, progress=False, force=True).store
    assert len(store) > 0
    # sampling checks before any network runs: a generator that was never trained is not reached
    from synthmed.generators.diffusion.model import DiffusionGenerator
    from synthmed.generators.sampling import sample_to_store

    gen = DiffusionGenerator.from_options("tiny")
    gen.data = {"sample_shape": [4, 16, 16]}
    with pytest.raises(ResourceError, match=r"generator sample: needs about .* of disk \(1000000000 samples of \[4, 16, 16\]"):
        sample_to_store(gen, tmp_path / "syn", 10**9, progress=False)
    assert not (tmp_path / "syn").exists()
