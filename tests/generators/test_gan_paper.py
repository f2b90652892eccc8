"""The GANs against their papers and NVlabs' training conventions.

* StyleGAN 3 (Karras et al. 2021, appendix F): the layer schedule (cutoffs, stop-bands,
  sampling rates, sizes, channels, critically sampled layers) recomputed here from the
  paper's formulas; the first layer L0 (``spec0 → spec0``); the input gain
  ``1/sqrt(magnitude EMA)`` applied after demodulation, ``to_rgb`` included.
* Training (NVlabs ``training_loop.py`` / ``loss.py``): the generator EMA as a half-life in
  images with a ramp-up; R1 taken w.r.t. the *non-augmented* reals (through the
  differentiable augmentation); ``w_avg`` and the magnitude EMAs updated once per
  iteration; the lazy-regularisation lr/β scaling only where a separate regularisation
  step is taken.
"""

from __future__ import annotations

import copy
import math

import numpy as np
import pytest
import torch

from synthmed.generators.gan import FAMILIES, PRESETS, GANTask
from synthmed.generators.gan.ada import AugmentPipe
from synthmed.generators.gan.config import GANTrainConfig
from synthmed.generators.gan.networks_stylegan3 import Synthesis3
from synthmed.parallel import torch_threads
from synthmed.training import FabricOptions, StepContext, StepRandom, make_fabric
from synthmed.training.seeding import Draws, GeneratorDraws


@pytest.fixture(autouse=True, scope="module")
def _one_thread():
    """Tiny networks on a shared 2-core machine: one intra-op thread avoids OpenMP oversubscription."""
    with torch_threads(1):
        yield


@pytest.fixture(scope="module")
def fabric():
    return make_fabric(FabricOptions(device="cpu"))


# -- StyleGAN 3: the paper's layer schedule


def paper_schedule(resolution: int, num_layers: int, margin: int, channel_base: int, channel_max: int,
                   img_channels: int) -> dict[str, np.ndarray]:
    """Appendix F of the StyleGAN 3 paper, in log2 space: ``N`` layers plus ``to_rgb`` (indices
    ``0 … N``), the last two critically sampled. The cutoff ``f_c`` and the minimum stop-band
    ``f_t`` grow geometrically from ``2`` and ``2^2.1`` (index 0) to ``R/2`` and ``R/2·2^0.3``
    (index ``N - 2``) and stay there; the sampling rate ``s`` is the smallest power of two
    ``≥ 2 f_t``, at most ``R``; the transition half-width ``f_h = max(f_t, s/2) - f_c``; the
    side is ``s`` plus a margin on each side except at the last two indices (``R``);
    ``channel_base / 2 / f_c`` channels (capped), ``img_channels`` at ``to_rgb``."""
    e = np.minimum(np.arange(num_layers + 1) / (num_layers - 2), 1.0)
    log_fc = 1 + e * (math.log2(resolution / 2) - 1)
    log_ft = 2.1 + e * (math.log2(resolution / 2) + 0.3 - 2.1)
    rate = 2.0 ** np.ceil(np.minimum(log_ft + 1, math.log2(resolution)) - 1e-9)  # 1e-9: 2 f_t = 2^k exactly
    fc, ft = 2.0**log_fc, 2.0**log_ft
    size = rate + 2 * margin
    size[-2:] = resolution
    channels = np.rint(np.minimum(channel_base / 2 / fc, channel_max))
    channels[-1] = img_channels
    critical = np.arange(num_layers + 1) >= num_layers - 2
    return dict(cutoff=fc, stop=ft, rate=rate, half_width=np.maximum(ft, rate / 2) - fc, size=size.astype(int),
                channels=channels.astype(int), critical=critical)


@pytest.mark.parametrize("config", ["t", "r"])
def test_stylegan3_paper_preset_has_the_papers_layers_cutoffs_sampling_rates_and_channels(config):
    signal = pytest.importorskip("scipy.signal")
    model = PRESETS["stylegan3"]["paper"].model.model_copy(update={"image_channels": 4, "sg3_config": config})
    torch.manual_seed(0)
    synthesis = Synthesis3(model.w_dim, model.img_channels, model.resolution, model.num_layers, model.margin,
                           model.sg3_channel_base, model.channel_max, config=config)
    mult = 2 if config == "r" else 1  # config R: twice the feature maps (channel_base 65,536, max 1,024)
    ref = paper_schedule(256, 14, 10, 32768 * mult, 512 * mult, 5)
    n = 14
    # N = 14 layers L0 … L13 plus to_rgb (L14): 15 layers, one w each plus the input's: 16
    assert model.num_layers == n and len(synthesis.layers) == n + 1 and synthesis.num_ws == n + 2
    if config == "t":  # NVlabs' layer names L{i}_{side}_{channels} at 256², with 5 output channels
        names = [f"L{i}_{int(ref['size'][i])}_{int(ref['channels'][i])}" for i in range(n + 1)]
        assert names == ["L0_36_512", "L1_36_512", "L2_36_512", "L3_52_512", "L4_52_512", "L5_84_512", "L6_84_512",
                         "L7_148_512", "L8_148_512", "L9_148_362", "L10_276_256", "L11_276_181", "L12_276_128",
                         "L13_256_128", "L14_256_5"]
    for key in ("cutoff", "stop", "rate", "half_width"):
        np.testing.assert_allclose([s[key] for s in synthesis.specs], ref[key], rtol=1e-12, err_msg=key)
    for key in ("size", "channels", "critical"):
        assert [s[key] for s in synthesis.specs] == ref[key].tolist(), key
    fourier = synthesis.input
    assert fourier.weight.shape == (ref["channels"][0],) * 2 and fourier.size == ref["size"][0]
    assert fourier.rate == ref["rate"][0] and fourier.bandwidth == ref["cutoff"][0] == 2
    kernel = 1 if config == "r" else 3
    for i, layer in enumerate(synthesis.layers):
        a, to_rgb = max(i - 1, 0), i == n  # L0 maps index 0 to index 0
        k = 1 if to_rgb else kernel
        assert layer.to_rgb == to_rgb and layer.weight.shape == (ref["channels"][i], ref["channels"][a], k, k)
        tmp = max(ref["rate"][a], ref["rate"][i]) * (1 if to_rgb else 2)  # the leaky ReLU runs at twice the rate
        assert (layer.up, layer.down) == (tmp / ref["rate"][a], tmp / ref["rate"][i]), i
        up_taps = 6 * layer.up if layer.up > 1 and not to_rgb else 1
        down_taps = 6 * layer.down if layer.down > 1 and not to_rgb else 1
        if up_taps > 1:  # Kaiser-windowed sinc designed from the input's cutoff and transition band
            np.testing.assert_allclose(layer.fu.double().numpy(), signal.firwin(
                up_taps, ref["cutoff"][a], width=2 * ref["half_width"][a], fs=tmp), atol=1e-6, err_msg=f"fu {i}")
        else:
            assert layer.fu.numel() == 1
        if down_taps > 1 and layer.fd.ndim == 1:
            np.testing.assert_allclose(layer.fd.double().numpy(), signal.firwin(
                down_taps, ref["cutoff"][i], width=2 * ref["half_width"][i], fs=tmp), atol=1e-6, err_msg=f"fd {i}")
        assert layer.fd.ndim == (2 if config == "r" and down_taps > 1 and not ref["critical"][i] else 1)
        # upfirdn sizes: conv (padding k-1) → ×up, pad, fu → fd, ÷down gives the output side
        n_up = (ref["size"][a] + k - 1) * layer.up + sum(layer.padding) - up_taps + 1
        assert math.ceil((n_up - down_taps + 1) / layer.down) == ref["size"][i], i


def test_stylegan3_layers_run_at_the_scheduled_sizes_and_l0_keeps_the_input_spec():
    torch.manual_seed(0)
    g = Synthesis3(32, 5, 32, 6, 4, 256, 32).eval()
    ref = paper_schedule(32, 6, 4, 256, 32, 5)
    assert len(g.layers) == 7 and g.num_ws == 8
    shapes = []
    hooks = [layer.register_forward_hook(lambda m, i, o: shapes.append(tuple(o.shape))) for layer in g.layers]
    out = g(torch.randn(2, g.num_ws, 32))
    for h in hooks:
        h.remove()
    assert out.shape == (2, 5, 32, 32)
    assert shapes == [(2, int(c), int(s), int(s)) for c, s in zip(ref["channels"], ref["size"])]
    assert shapes[0][1:] == (g.input.weight.shape[0], g.input.size, g.input.size)  # L0: spec0 → spec0


# -- StyleGAN 3: the input gain


def test_stylegan3_input_gain_acts_after_demodulation_in_every_layer_to_rgb_included():
    """``magnitude_ema = m`` divides the layer's (linear) convolution by ``sqrt(m)``: the same
    as feeding it ``x / sqrt(m)`` with ``m = 1``. Folded into the styles before the
    demodulation it would cancel (and ``to_rgb`` ignored it)."""
    torch.manual_seed(0)
    g = Synthesis3(32, 5, 32, 6, 4, 256, 32).eval()
    ws = torch.randn(2, g.num_ws, 32)
    with torch.no_grad():
        for layer in g.layers:
            layer.bias.normal_()  # a non-zero bias: a scaled input is not a scaled output
        x = g.input(ws[:, 0])
        for i, layer in enumerate(g.layers):
            ref = layer(x / 2, ws[:, i + 1])
            layer.magnitude_ema.fill_(4.0)
            out = layer(x, ws[:, i + 1])
            torch.testing.assert_close(out, ref, rtol=1e-4, atol=1e-5, msg=f"layer {i}")
            assert not torch.allclose(out, layer(x * 3, ws[:, i + 1]), atol=1e-3)
            layer.magnitude_ema.fill_(1.0)
            x = layer(x, ws[:, i + 1])
        rgb = g.layers[-1]
        rgb.bias.zero_()
        before = g(ws)
        rgb.magnitude_ema.fill_(4.0)  # to_rgb is linear: its output halves
        torch.testing.assert_close(g(ws), before / 2)


def test_stylegan3_magnitude_ema_tracks_the_input_rms_and_changes_the_output_when_updated():
    torch.manual_seed(0)
    g = Synthesis3(32, 5, 32, 6, 4, 256, 32)
    frozen = copy.deepcopy(g).eval()
    ws = torch.randn(3, g.num_ws, 32)
    inputs = []
    hooks = [layer.register_forward_pre_hook(lambda m, a: inputs.append(a[0].detach().clone())) for layer in g.layers]
    with torch.no_grad():
        tracked = g.train()(ws, update_emas=True)
        ref = frozen(ws)
    for h in hooks:
        h.remove()
    for layer, x in zip(g.layers, inputs):  # ema ← lerp(mean(x²), ema, β), before it is used
        expected = x.square().mean().lerp(torch.ones(()), layer.ema_beta)
        torch.testing.assert_close(layer.magnitude_ema, expected)
        assert abs(float(layer.magnitude_ema) - 1) > 1e-5
    assert not torch.allclose(tracked, ref, atol=1e-6)
    with torch.no_grad():  # a training-mode forward without update_emas uses the buffers but moves none
        state = {k: v.clone() for k, v in g.state_dict().items()}
        g(ws)
    assert all(torch.equal(state[k], v) for k, v in g.state_dict().items())


# -- training conventions (tasks stepped directly, as the loop does)


class FixedAugment(AugmentPipe):
    """A deterministic differentiable 'augmentation' ``x ↦ 2·flip_W(x)``: the gradient w.r.t.
    the non-augmented input is twice the (flipped) one w.r.t. the augmented input."""

    def forward(self, x: torch.Tensor, draws: Draws | None = None, *, real: bool = True) -> torch.Tensor:
        return 2 * x.flip(-1)


class RecordingAugment(AugmentPipe):
    """The real pipe, recording for each call whether its input was a generator output."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.calls: list[tuple[bool, bool]] = []  # (input is a fake, called as real)
        self.fakes: list[torch.Tensor] = []

    def forward(self, x: torch.Tensor, draws: Draws | None = None, *, real: bool = True) -> torch.Tensor:
        self.calls.append((any(x is f or x.data_ptr() == f.data_ptr() for f in self.fakes), real))
        return super().forward(x, draws, real=real)


def make_task(fabric, family: str = "stylegan2", **train) -> GANTask:
    preset = PRESETS[family]["tiny"]
    model = preset.model.model_copy(update={"image_channels": 4, "resolution": 16})
    task = GANTask(model, GANTrainConfig(**{**preset.train.model_dump(), **train}), seed=0)
    task.setup(fabric)
    return task


def batch(task: GANTask, step: int) -> tuple[torch.Tensor, torch.Tensor]:
    gen = torch.Generator().manual_seed(100 + step)
    b = task.train.batch
    return torch.rand((b, 4, 16, 16), generator=gen), torch.randint(0, 4, (b, 16, 16), generator=gen).to(torch.uint8)


def run_step(task: GANTask, step: int) -> dict:
    fabric = task.fabric
    return task.training_step(batch(task, step), StepContext(step, StepRandom(0, step, device=fabric.device), fabric))


def test_ema_beta_is_nvlabs_half_life_in_images_with_ramp_up():
    from synthmed.training.ema import half_life_decay

    # beta = 0.5 ** (batch / h), h = the half-life in images (ramp-up: at most rampup × images seen)
    assert half_life_decay(32, 10**6, 10.0) == pytest.approx(0.5 ** (32 / 10_000), rel=1e-12)
    assert half_life_decay(32, 32_000, 10.0, rampup=0.05) == pytest.approx(0.5 ** (32 / 1600), rel=1e-12)
    assert half_life_decay(32, 10**6, 10.0, rampup=0.05) == pytest.approx(0.5 ** (32 / 10_000), rel=1e-12)
    assert half_life_decay(4, 0, 1.25, rampup=0.05) == 0.0  # the first step copies the weights
    # the old 0.9999 per step at batch 32 is a 222-kimg half-life
    assert 32 * math.log(0.5) / math.log(0.9999) / 1000 == pytest.approx(221.8, abs=0.1)
    for family in FAMILIES:  # NVlabs' 10 kimg at batch 32, scaled with the batch; ramp-up 0.05
        for name in ("tiny", "laptop", "small", "paper"):
            tc = PRESETS[family][name].train
            assert tc.ema_kimg == pytest.approx(tc.batch * 10 / 32) and tc.ema_rampup == 0.05, (family, name)
    assert PRESETS["stylegan3"]["paper"].train.ema_kimg == 10


@pytest.mark.parametrize(("kimg", "rampup"), [(0.01, None), (1.25, 0.05)])
def test_generator_ema_follows_the_half_life_in_a_tiny_run(fabric, kimg, rampup):
    task = make_task(fabric, ema_kimg=kimg, ema_rampup=rampup)
    initial = [p.detach().clone() for p in task.g_raw.parameters()]
    expected = [p.clone() for p in initial]
    b = task.train.batch
    for step in range(3):
        run_step(task, step)
        h = kimg * 1000 if rampup is None else min(kimg * 1000, rampup * step * b)  # images seen before the step
        beta = 0.5 ** (b / max(h, 1e-8))
        expected = [p.detach().lerp(e, beta) for p, e in zip(task.g_raw.parameters(), expected)]
    ema = list(task.ema.module.parameters())
    for e, p in zip(expected, ema):
        torch.testing.assert_close(p, e, rtol=1e-5, atol=1e-6)
    moved = sum(float((p - i).abs().sum()) for p, i in zip(ema, initial))
    trained = sum(float((p.detach() - i).abs().sum()) for p, i in zip(task.g_raw.parameters(), initial))
    assert moved > 0.5 * trained > 0  # the EMA generator follows the training one in a short run


@pytest.mark.parametrize("interval", [1, 2])
def test_r1_is_the_gradient_wrt_the_non_augmented_reals(fabric, interval):
    """R1 = ||∇ₓ D(augment(x))||² at the non-augmented reals ``x`` (NVlabs: the gradient flows
    through the augmentation). With ``augment = 2·flip`` that is 4× the penalty taken at the
    augmented reals. ``lr`` is tiny so that D barely moves before a separate (lazy) R1 step."""
    task = make_task(fabric, r1_interval=interval, r1_gamma=1.0, lr=1e-12, ada=False, mirror=False)
    task.augment = FixedAugment(4)
    d = copy.deepcopy(task.d_raw)
    images, labels = batch(task, 0)
    logs = run_step(task, 0)
    x = task.encoding.encode(images, labels).float().requires_grad_(True)
    (grad,) = torch.autograd.grad(d(2 * x.flip(-1)).sum(), x)
    ref = grad.square().sum(dim=(1, 2, 3)).mean()
    aug = (2 * x.flip(-1)).detach().requires_grad_(True)
    (grad_aug,) = torch.autograd.grad(d(aug).sum(), aug)
    torch.testing.assert_close(ref, 4 * grad_aug.square().sum(dim=(1, 2, 3)).mean())  # the two differ: ×4
    torch.testing.assert_close(logs["r1"], ref, rtol=1e-4, atol=0)


@pytest.mark.parametrize("family", ["stylegan1", "stylegan2", "stylegan3", "progan"])
def test_mirror_flips_the_reals_only(fabric, family):
    """``mirror`` is NVlabs' ``--mirror`` (the data set and its mirror images): the reals D
    sees are flipped, the fakes never (at ``p = 0`` they reach D unchanged). Flipping the fakes
    too hid from D a generator whose left-right layout does not vary: StyleGAN's tumour
    positions collapsed along x (std 0.3-0.4 px against the data's 1.5) but not along y.
    Before the fix every call here flipped, fakes included."""
    task = make_task(fabric, family, ada=False, mirror=True)
    pipe = RecordingAugment(4, mirror=True, adaptive=False)
    task.augment = pipe
    g = task.g_raw
    record = g.register_forward_hook(
        lambda m, a, out: pipe.fakes.append(out if isinstance(out, torch.Tensor) else out[0]))
    run_step(task, 0)
    record.remove()
    assert pipe.calls and all(real != fake for fake, real in pipe.calls), pipe.calls
    assert any(fake for fake, _ in pipe.calls) and any(not fake for fake, _ in pipe.calls)
    torch.manual_seed(0)
    x = torch.randn(8, 5, 16, 16)
    torch.testing.assert_close(pipe(x, GeneratorDraws(torch.Generator().manual_seed(0)), real=False), x)
    flipped = pipe(x, GeneratorDraws(torch.Generator().manual_seed(0)))
    assert any(torch.allclose(flipped[i], x[i].flip(-1), atol=1e-5) for i in range(8))


@pytest.mark.parametrize("family", ["stylegan2", "stylegan1"])
def test_ranks_draw_their_rows_of_the_noise_inputs_and_augmentation(fabric, family):
    """W ranks with batch B draw what one process with batch W·B draws, noise inputs and ADA
    included: the D step's fakes (latents, mixing and noise maps) and augmented reals (mirror
    and the ``p`` transforms) of ranks 0 and 1 of two, each on its half of the batch, are one
    process's on the whole batch. Before the fix every rank drew the same noise maps and
    transforms for its own samples."""
    outputs = {}
    for rank, world in ((0, 1), (0, 2), (1, 2)):
        task = make_task(fabric, family, ada=True, mirror=True, ada_interval=100)
        task.augment.p.fill_(0.6)
        for module in task.g_raw.modules():
            if type(module).__name__ == "NoiseInjection":
                module.weight.data.fill_(0.5)  # trained networks have non-zero noise strengths
        seen: dict[str, list[torch.Tensor]] = {"fake": [], "augment": []}
        task.g_raw.register_forward_hook(
            lambda m, a, out: seen["fake"].append((out if isinstance(out, torch.Tensor) else out[0]).detach().clone()))
        task.augment.register_forward_hook(lambda m, a, out: seen["augment"].append(out.detach().clone()))
        images, labels = batch(task, 0)
        h = images.shape[0] // world
        local = (images[rank * h : (rank + 1) * h], labels[rank * h : (rank + 1) * h])
        task.training_step(local, StepContext(0, StepRandom(0, 0, rank=rank, world_size=world), fabric))
        outputs[rank, world] = seen["fake"][0], seen["augment"][0]  # before any weight moves
    for i, name in enumerate(("fakes", "augmented reals")):
        whole, halves = outputs[0, 1][i], [outputs[r, 2][i] for r in range(2)]
        torch.testing.assert_close(torch.cat(halves), whole, rtol=0, atol=1e-5, msg=lambda m: f"{family} {name}: {m}")


def _count_changes(module: torch.nn.Module, buffer: str) -> list[int]:
    """A one-element counter of the forwards of ``module`` that changed its ``buffer``."""
    count, before = [0], {}
    module.register_forward_pre_hook(lambda m, a: before.update(v=getattr(m, buffer).clone()))
    module.register_forward_hook(lambda m, a, o: count.__setitem__(0, count[0] + int(
        not torch.equal(before["v"], getattr(m, buffer)))))
    return count


@pytest.mark.parametrize("family", ["stylegan2", "stylegan3", "progan"])
def test_running_averages_move_once_per_iteration_not_in_every_forward(fabric, family):
    """``w_avg`` (ProGAN: ``h_avg``) and StyleGAN 3's magnitude EMAs move in one generator
    forward per iteration (style mixing and path length add forwards), never in a forward that
    does not ask for it, and the EMA generator copies them."""
    task = make_task(fabric, family, style_mixing=0.9, pl_weight=2.0 if family == "stylegan2" else 0.0, pl_interval=1)
    g = task.g_raw
    counters = [_count_changes(g, "h_avg")] if family == "progan" else [_count_changes(g.mapping, "w_avg")]
    if family == "stylegan3":
        counters += [_count_changes(layer, "magnitude_ema") for layer in g.synthesis.layers]
    for step in range(2):
        run_step(task, step)
        assert [c[0] for c in counters] == [step + 1] * len(counters)
    for name, value in g.named_buffers():
        torch.testing.assert_close(dict(task.ema.module.named_buffers())[name], value)
    state = {k: v.clone() for k, v in g.state_dict().items()}
    with torch.no_grad():
        g.train()(torch.randn(3, task.config.z_dim), psi=0.7)  # an extra training-mode forward: no update
    assert all(torch.equal(state[k], v) for k, v in g.state_dict().items())


def _adam_steps(opt: torch.optim.Optimizer, param: torch.nn.Parameter) -> int:
    return int(opt.state[param]["step"])


def test_lazy_regularisation_scales_lr_and_betas_only_with_a_separate_regularisation_step(fabric):
    """NVlabs: with a regularisation interval ``k > 1`` the penalty is a separate optimiser step
    every ``k`` iterations, and lr, β are scaled by ``c = k/(k+1)`` (k+1 steps per k
    iterations); regularising every iteration (``k = 1``), or not at all, takes no extra step
    and scales nothing."""
    lr, betas = 2e-3, (0.0, 0.99)

    def hyper(opt):
        group = opt.param_groups[0]
        return group["lr"], tuple(group["betas"])

    def scaled(c):
        return pytest.approx(lr * c), pytest.approx(tuple(b**c for b in betas))

    every = make_task(fabric, lr=lr, betas=betas, r1_interval=1, pl_weight=2.0, pl_interval=1)
    assert hyper(every.opt_d) == (lr, betas) and hyper(every.opt_g) == (lr, betas)
    lazy = make_task(fabric, lr=lr, betas=betas, r1_interval=16, pl_weight=2.0, pl_interval=4)
    assert hyper(lazy.opt_d) == scaled(16 / 17) and hyper(lazy.opt_g) == scaled(4 / 5)
    off = make_task(fabric, lr=lr, betas=betas, r1_interval=16, r1_gamma=0.0, pl_weight=0.0, pl_interval=4)
    assert hyper(off.opt_d) == (lr, betas) and hyper(off.opt_g) == (lr, betas)
    # the steps: 4 iterations with k = 2 take 4 main + 2 regularisation steps of D and G
    task = make_task(fabric, r1_interval=2, pl_weight=2.0, pl_interval=2)
    for step in range(4):
        run_step(task, step)
    d_param, g_param = next(task.d_raw.parameters()), next(task.g_raw.parameters())
    assert _adam_steps(task.opt_d, d_param) == 6 and _adam_steps(task.opt_g, g_param) == 6
    task = make_task(fabric, r1_interval=1, pl_weight=2.0, pl_interval=1)
    for step in range(2):
        run_step(task, step)
    assert _adam_steps(task.opt_d, next(task.d_raw.parameters())) == 2
    assert _adam_steps(task.opt_g, next(task.g_raw.parameters())) == 2
    # a resumed run re-applies this run's lr with the same rule
    lazy.opt_d.param_groups[0]["lr"] = 1.0
    lazy.load_extra_state({})
    assert lazy.opt_d.param_groups[0]["lr"] == pytest.approx(lr * 16 / 17)
