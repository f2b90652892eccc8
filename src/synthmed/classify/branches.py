"""``classify cka``: how far a dual-BN classifier's two batch norms have grown apart, layer by layer.

Han et al. (2020) compare the representations of a dual-BN network through its two batch
norms with linear CKA (their ``cka/`` scripts: the activations of one batch of test images at
every convolution, through BN0 and through BN1, debiased CKA between layers). Here, for a
``dual-bn`` run and the same test images:

**Activations.** Every :class:`~synthmed.classify.dual_bn.DualBatchNorm`'s output (after
normalisation and affine, before the activation), flattened per sample to ``[n, C·∏spatial]``,
is recorded for four forward passes, all in eval mode (batch norm on its running statistics,
the deployed network): the clean images and their adversarial examples, each routed through the
clean BN (BN0) and through the adversarial BN (BN1). The adversarial examples are the run's own
training attack (ε, α, steps, norm, random start from ``run.json``), crafted as in training: in
eval mode through BN1, the random start from a CPU generator seeded by ``seed``. Per layer, in
forward order (the order the layers first run, which for MONAI's networks is their depth order;
a ResNet's downsampling batch norm sits beside its block's second), linear CKA
(:mod:`synthmed.metrics.cka`; biased by default, ``debiased`` as Han et al.) compares:

* ``routes_on_clean``: clean images through BN0 vs through BN1 — the headline;
* ``routes_on_adversarial``: adversarial images through BN0 vs through BN1;
* ``inputs_on_clean_bn`` / ``inputs_on_adversarial_bn``: clean vs adversarial images, through BN0
  / through BN1 (how much the attack moves each branch's representation).

``matrix`` is the layer × layer CKA of ``routes_on_clean`` (row ``i``: BN0 at layer ``i``;
column ``j``: BN1 at layer ``j``), Han et al.'s cross-branch form; its diagonal is
``routes_on_clean``. Before the first dual BN the branches share everything, so what the first
layer shows is the branches' own statistics and affine maps alone: a per-channel affine map is
a non-isotropic scaling, to which CKA is not invariant. A value CKA leaves undefined (a layer
constant over the samples) is ``null``.

**Running statistics.** In eval mode the branches differ only by their running statistics and
affine parameters. Per layer, over its C channels, with μ₀, σ₀² the clean branch's running mean
and variance, μ₁, σ₁² the adversarial one's and ε the batch norm's: ``mean_correlation``, the
Pearson correlation of μ₀ and μ₁ (``null`` when either is constant, e.g. never trained);
``mean_shift``, the mean of ``|μ₁ − μ₀| / √(σ₀² + ε)`` (how many clean standard deviations the
adversarial mean has moved); ``std_ratio``, the geometric mean of ``√((σ₁² + ε) / (σ₀² + ε))``
(> 1: the layer's input spreads wider on adversarial examples). Branches that are exact copies (a freshly converted
network) give CKA 1 at every layer, a correlation of 1 (or ``null``), shift 0 and ratio 1.

**Cost.** One attack of the ``n`` samples, then four forward passes per group of layers whose
recorded features (float32, one pass) fit ``feature_bytes`` (a layer larger than that is a
group alone); after each pass every layer's features become an ``[n, n]`` float64 kernel and
are dropped, so memory is about ``feature_bytes`` plus 4·L kernels of ``n²`` values.
``max_samples`` (default 256; Han et al. used one batch of 196) caps ``n``, drawn from the
test split with ``seed``.

Files (with ``write``): ``RUN/eval/<store>_cka.json`` (the result) and ``<store>_cka.png`` (CKA
against layer depth, one line per comparison).
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Literal, cast

import numpy as np
import torch
from torch import nn

from synthmed.atomic import atomic_file
from synthmed.classify.api import load_classifier
from synthmed.classify.attacks import AttackSpec, craft
from synthmed.classify.dual_bn import DualBatchNorm, Route, bn_route
from synthmed.classify.modes import eval_mode
from synthmed.classify.samples import eval_samples
from synthmed.errors import SynthmedError
from synthmed.figures import pyplot, save_png
from synthmed.metrics.cka import UndefinedCKAError, centred_gram, gram_cka
from synthmed.outputs import JSON_FILE, PNG_FILE, OutputKind, guard_output
from synthmed.progress import progress_bar

Images = Literal["clean", "adversarial"]
#: One forward pass: which images, through which batch norm.
Pass = tuple[Images, Route]
#: The layer-wise comparisons: key → (description, one side's pass, the other's).
COMPARISONS: dict[str, tuple[str, Pass, Pass]] = {
    "routes_on_clean": ("clean images: BN0 vs BN1", ("clean", "clean"), ("clean", "adversarial")),
    "routes_on_adversarial": ("adversarial images: BN0 vs BN1", ("adversarial", "clean"),
                              ("adversarial", "adversarial")),
    "inputs_on_clean_bn": ("BN0: clean vs adversarial images", ("clean", "clean"), ("adversarial", "clean")),
    "inputs_on_adversarial_bn": ("BN1: clean vs adversarial images", ("clean", "adversarial"),
                                 ("adversarial", "adversarial")),
}
#: Default cap on the features recorded at once: one pass over one group of layers (bytes, float32).
FEATURE_BYTES = 1 << 30


def cka_files(run_dir: str | Path, test_store: str | Path) -> dict[Path, OutputKind]:
    """The files :func:`compare_branches` writes: ``RUN/eval/<store>_cka.json`` and ``_cka.png``."""
    base = Path(run_dir) / "eval" / Path(test_store).name
    return {base.with_name(base.name + "_cka.json"): JSON_FILE, base.with_name(base.name + "_cka.png"): PNG_FILE}


def dual_bn_layers(net: nn.Module, probe: torch.Tensor) -> list[tuple[str, DualBatchNorm, int, int]]:
    """``(name, module, channels, features per sample)`` of each dual BN of ``net``, in the order they run on ``probe``.

    ``probe`` is one small batch ``[b, C, *spatial]`` on the network's device, forwarded once in
    eval mode through the clean BN.

    Raises:
        SynthmedError: ``net`` holds no dual BN, or one runs more than once in a forward pass
            (shared: its activation per layer is not one thing).
    """
    names = {id(m): name for name, m in net.named_modules() if isinstance(m, DualBatchNorm)}
    if not names:
        raise SynthmedError("the network holds no dual batch norm: CKA compares the two batch norms of a dual-bn run")
    order: list[tuple[str, DualBatchNorm, int, int]] = []
    seen: set[int] = set()

    def hook(module: nn.Module, _inputs: Any, output: torch.Tensor) -> None:
        if id(module) in seen:
            raise SynthmedError(f"batch norm {names[id(module)]} runs more than once in a forward pass; its "
                                "activations are not one layer's")
        seen.add(id(module))
        order.append((names[id(module)], cast(DualBatchNorm, module), int(output.shape[1]), int(output[0].numel())))

    with _hooks(net, {m: hook for m in net.modules() if id(m) in names}), eval_mode(net), torch.no_grad(), \
            bn_route("clean"):
        net(probe)
    return order


@contextmanager
def _hooks(net: nn.Module, hooks: Mapping[nn.Module, Any]) -> Iterator[None]:
    handles = [module.register_forward_hook(fn) for module, fn in hooks.items()]
    try:
        yield
    finally:
        for handle in handles:
            handle.remove()


def _groups(sizes: Sequence[int], budget: int) -> list[list[int]]:
    """Consecutive layer indices whose ``sizes`` (bytes) sum to at most ``budget`` (an oversized layer alone)."""
    groups: list[list[int]] = []
    total = 0
    for i, size in enumerate(sizes):
        if groups and total + size <= budget:
            groups[-1].append(i)
            total += size
        else:
            groups.append([i])
            total = size
    return groups


def _record(net: nn.Module, layers: Mapping[int, tuple[str, DualBatchNorm, int, int]], images: torch.Tensor,
            route: Route, *, batch: int, advance: Callable[[], Any]) -> dict[int, np.ndarray]:
    """float32 ``[n, features]`` outputs of ``layers`` (index → :func:`dual_bn_layers` entry) for ``images``
    forwarded in eval mode through ``route``, ``batch`` at a time (``advance`` called after each)."""
    device = next(net.parameters()).device
    n = len(images)
    out = {i: np.empty((n, layer[3]), np.float32) for i, layer in layers.items()}
    start = 0

    def recorder(i: int) -> Callable[[nn.Module, Any, torch.Tensor], None]:
        def hook(_module: nn.Module, _inputs: Any, output: torch.Tensor) -> None:
            block = output.detach().flatten(1).float().cpu().numpy()
            out[i][start : start + len(block)] = block
        return hook

    with _hooks(net, {layer[1]: recorder(i) for i, layer in layers.items()}), eval_mode(net), torch.no_grad(), \
            bn_route(route):
        for start in range(0, n, batch):
            net(images[start : start + batch].to(device))
            advance()
    return out


def _safe_cka(k: np.ndarray | None, l: np.ndarray | None) -> float | None:  # noqa: E741
    if k is None or l is None:
        return None
    try:
        return gram_cka(k, l)
    except UndefinedCKAError:
        return None


def _statistics(module: DualBatchNorm) -> dict[str, float | None] | None:
    """``mean_correlation``, ``mean_shift`` and ``std_ratio`` of the branches' running statistics (module docstring)."""
    clean, adversarial = module.branch("clean"), module.branch("adversarial")
    if clean.running_mean is None or adversarial.running_mean is None:
        return None  # track_running_stats=False: batch statistics only
    mu0, mu1 = (b.running_mean.double().cpu().numpy() for b in (clean, adversarial))  # type: ignore[union-attr]
    var0, var1 = (b.running_var.double().cpu().numpy() + b.eps  # type: ignore[union-attr]
                  for b in (clean, adversarial))
    c0, c1 = mu0 - mu0.mean(), mu1 - mu1.mean()
    varies = all(np.linalg.norm(c) > 1e-12 * np.linalg.norm(m) for c, m in ((c0, mu0), (c1, mu1)))
    correlation = float(np.clip(c0 @ c1 / (np.linalg.norm(c0) * np.linalg.norm(c1)), -1, 1)) if varies else None
    return {"mean_correlation": correlation,
            "mean_shift": float(np.mean(np.abs(mu1 - mu0) / np.sqrt(var0))),
            "std_ratio": float(np.exp(np.mean(0.5 * np.log(var1 / var0))))}


def adversarial_images(net: nn.Module, images: torch.Tensor, targets: torch.Tensor, attack: AttackSpec, *,
                       seed: int, batch: int) -> torch.Tensor:
    """PGD examples ``[n, C, *sp]`` (CPU) of ``images``, crafted in eval mode through the adversarial BN.

    The random starts come from one CPU ``torch.Generator`` seeded by ``seed``, drawn batch by batch.
    """
    device = next(net.parameters()).device
    generator = torch.Generator().manual_seed(int(seed))
    out = []
    for i in range(0, len(images), batch):
        x, t = images[i : i + batch].to(device), targets[i : i + batch].to(device)
        out.append(craft(net, x, t, attack, route="adversarial", generator=generator).cpu())
    return torch.cat(out)


def branch_similarity(
    net: nn.Module,
    images: torch.Tensor,
    targets: torch.Tensor | None = None,
    *,
    attack: AttackSpec | None = None,
    seed: int = 0,
    debiased: bool = False,
    batch: int = 64,
    feature_bytes: int = FEATURE_BYTES,
    progress: bool = False,
) -> dict[str, Any]:
    """Per-layer CKA of ``net``'s activations through its two batch norms, and their running statistics.

    Args:
        net: a network holding :class:`~synthmed.classify.dual_bn.DualBatchNorm` layers (on its device).
        images: float ``[n, C, *spatial]`` in [0, 1] (CPU), ``n ≥ 2`` (``≥ 4`` debiased).
        targets: ``[n, K]`` labels the attack is untargeted against; needed with ``attack``.
        attack: the adversarial examples' attack, ``None`` or an identity attack (ε = 0) for
            clean images only (then only ``routes_on_clean`` is computed; the others are ``null``).
        seed: the attack's random start.
        debiased: the debiased CKA (:func:`synthmed.metrics.cka.centred_gram`).
        batch: samples forwarded (and attacked) at once.
        feature_bytes: memory for the features recorded at once (one pass over a group of layers).
        progress: show a progress bar.

    Returns:
        ``{"estimator", "n", "adversarial": bool, "layers": [{"name", "depth", "channels",
        "features", "statistics": {…} | None}], "comparisons": {key: {"description", "a", "b",
        "cka": [per layer]}}, "matrix": [[…]]}`` (see the module docstring).

    Raises:
        SynthmedError: no dual BN in ``net``; too few samples for the estimator.
    """
    n = len(images)
    least = 4 if debiased else 2
    if n < least:
        raise SynthmedError(f"CKA{' (debiased)' if debiased else ''} needs at least {least} test samples, got {n}")
    device = next(net.parameters()).device
    layers = dual_bn_layers(net, images[:1].to(device))
    use_attack = attack is not None and not attack.is_identity
    if use_attack and targets is None:
        raise ValueError("branch_similarity with an attack needs the targets")
    inputs: dict[Images, torch.Tensor] = {"clean": images}
    if use_attack:
        assert attack is not None and targets is not None
        inputs["adversarial"] = adversarial_images(net, images, targets, attack, seed=seed, batch=batch)
    routes: tuple[Route, ...] = ("clean", "adversarial")
    passes: list[Pass] = [(source, route) for source in inputs for route in routes]
    grams: list[dict[Pass, np.ndarray | None]] = [{} for _ in layers]
    groups = _groups([n * features * 4 for _, _, _, features in layers], feature_bytes)  # float32, one pass
    steps = -(-n // batch)
    with progress_bar(enabled=progress) as bar:
        job = bar.add_task("CKA of the batch norms' activations", total=len(groups) * len(passes) * steps)
        for group in groups:
            for source, route in passes:
                features = _record(net, {i: layers[i] for i in group}, inputs[source], route, batch=batch,
                                   advance=lambda: bar.advance(job))
                for i in group:
                    try:
                        grams[i][(source, route)] = centred_gram(features.pop(i), debiased=debiased)
                    except UndefinedCKAError:
                        grams[i][(source, route)] = None
    comparisons = {}
    for key, (description, a, b) in COMPARISONS.items():
        values = [_safe_cka(g.get(a), g.get(b)) if a in g and b in g else None for g in grams]
        comparisons[key] = {"description": description, "a": {"images": a[0], "bn": a[1]},
                            "b": {"images": b[0], "bn": b[1]}, "cka": values}
    matrix = [[_safe_cka(gi[("clean", "clean")], gj[("clean", "adversarial")]) for gj in grams] for gi in grams]
    return {"estimator": "debiased" if debiased else "biased", "n": int(n), "adversarial": bool(use_attack),
            "layers": [{"name": name, "depth": depth, "channels": channels, "features": features,
                        "statistics": _statistics(module)}
                       for depth, (name, module, channels, features) in enumerate(layers, start=1)],
            "comparisons": comparisons, "matrix": matrix}


def compare_branches(
    run_dir: str | Path,
    test_store: str | Path,
    *,
    checkpoint: str = "auto",
    max_samples: int | None = 256,
    adversarial: bool = True,
    debiased: bool = False,
    seed: int = 0,
    device: str = "auto",
    batch: int = 64,
    feature_bytes: int = FEATURE_BYTES,
    write: bool = True,
    overwrite: bool = False,
    progress: bool = True,
) -> dict[str, Any]:
    """:func:`branch_similarity` of a ``dual-bn`` classifier run on the test split of ``test_store``.

    Returns (and with ``write`` saves, see :func:`cka_files`) :func:`branch_similarity`'s result
    with ``"run", "test_store", "checkpoint": {"name", "step"}, "task", "network", "mode",
    "subjects", "seed"`` (the run's), ``"cka_seed"`` (the sample draw's and the attack's),
    ``"attack"`` (the training attack used, or ``None``) and ``"figure"``.

    Raises:
        SynthmedError: a run that is not ``dual-bn`` (it has one batch norm), a missing run or
            checkpoint, a store that does not fit it, ``max_samples`` < 1; with ``write``, see
            :func:`~synthmed.outputs.guard_output` (checked first). Nothing is written then.
    """
    run_dir = Path(run_dir)
    if max_samples is not None and max_samples < 1:
        raise SynthmedError(f"--max-samples must be >= 1, got {max_samples}")
    if batch < 1:
        raise SynthmedError(f"--batch must be >= 1, got {batch}")
    files = cka_files(run_dir, test_store)
    if write:
        for name, kind in files.items():
            guard_output(name, [test_store], kind=kind, overwrite=overwrite)
    net, config, info, ckpt = load_classifier(run_dir, checkpoint=checkpoint, device=device)
    if not config.dual_bn:
        raise SynthmedError(f"{run_dir}: a {config.mode} run has one batch norm; CKA compares the clean and the "
                            "adversarial batch norm of a dual-bn run (classify train --mode dual-bn)")
    test = eval_samples(test_store, config, max_samples=max_samples, seed=seed)
    training = info["training"]
    attack = AttackSpec(eps=training["eps"], alpha=training["alpha"], steps=training["attack_steps"],
                        norm=training["norm"], random_start=training["random_start"]) if adversarial else None
    result = branch_similarity(net, test.images, test.targets, attack=attack, seed=seed, debiased=debiased,
                               batch=batch, feature_bytes=feature_bytes, progress=progress)
    json_file, png_file = files
    result = {"run": str(run_dir.resolve()), "test_store": str(test.store.path.resolve()), "checkpoint": ckpt,
              "task": config.task, "network": config.network, "mode": config.mode,
              "subjects": test.n_subjects, "seed": int(info["seed"]), "cka_seed": int(seed),
              "attack": None if not result["adversarial"] or attack is None else
              {"eps": attack.eps, "alpha": attack.alpha, "steps": attack.steps, "norm": attack.norm,
               "random_start": attack.random_start, "crafted": "eval mode, adversarial BN (the run's training attack)"},
              **result, "figure": str(png_file) if write else None}
    if write:
        with atomic_file(json_file) as tmp:
            tmp.write_text(json.dumps(result, indent=2) + "\n")
        cka_figure(result, png_file)
    return result


def cka_figure(result: Mapping[str, Any], path: str | Path) -> Path:
    """CKA against layer depth, one line per computed comparison; layer names on the axis when they fit."""
    plt = pyplot()
    layers = result["layers"]
    depth = [layer["depth"] for layer in layers]
    fig, ax = plt.subplots(figsize=(max(5.5, 0.22 * len(layers) + 2), 3.8))
    styles = {"routes_on_clean": ("C0", "-"), "routes_on_adversarial": ("C3", "-"),
              "inputs_on_clean_bn": ("C0", ":"), "inputs_on_adversarial_bn": ("C3", ":")}
    for key, comparison in result["comparisons"].items():
        values = [np.nan if v is None else v for v in comparison["cka"]]
        if all(np.isnan(values)):
            continue
        color, line = styles.get(key, (None, "-"))
        ax.plot(depth, values, marker="o", ms=3, color=color, ls=line, label=comparison["description"])
    ax.axhline(1.0, color="grey", lw=0.8, ls="--")
    low = min([0.0] + [v for c in result["comparisons"].values() for v in c["cka"] if v is not None])
    ax.set_ylim(min(low, 0.0) - 0.02, 1.05)
    ax.set_xlabel("dual batch norm layer (forward order)")
    ax.set_ylabel(f"linear CKA ({result['estimator']})")
    if len(layers) <= 30:
        ax.set_xticks(depth)
        ax.set_xticklabels([layer["name"] for layer in layers], rotation=90, fontsize=6)
    ax.set_title(f"{result['network']} {result['mode']}, {result['task']}: {result['n']} test samples", fontsize=9)
    ax.legend(fontsize=7)
    return save_png(fig, path)
