"""MONAI's EMA vector quantizer with dead-code restart.

MONAI's :class:`~monai.networks.layers.vector_quantizer.EMAQuantizer` learns its codebook as
exponential moving averages: ``ema_cluster_size[k]`` (the vectors assigned to code ``k`` per
batch) and ``ema_w[k]`` (their sum); the code is their Laplace-smoothed ratio. A code that no
encoder output is nearest to decays towards zero and is never chosen again: the codebook
collapses to a few codes. :class:`RestartingEMAQuantizer` keeps MONAI's quantisation, EMA
update, commitment loss and straight-through estimator, and adds the restart of
FirasGit/medicaldiffusion's codebook: after a training forward,
:meth:`~RestartingEMAQuantizer.restart_dead_codes` re-seeds every code whose
``ema_cluster_size`` is below ``restart_threshold`` with a random encoder output of the batch
(drawn with the caller's generator, so a resumed run repeats it), and resets its statistics to
``max(restart_threshold, 1)`` uses of that vector. Under DDP rank 0's choice is broadcast, so the codebooks stay equal.
At the first step every code is unused, so the codebook starts from the data.

The quantizer runs in float32 whatever autocast is on: nearest-code search, EMA statistics and
commitment loss (MONAI switches off CUDA autocast for the search only; this switches off the
input's device type for the whole forward, so bf16 never rounds the codebook's sums).
"""

from __future__ import annotations

import torch
from monai.networks.layers.vector_quantizer import EMAQuantizer


class RestartingEMAQuantizer(EMAQuantizer):
    """:class:`EMAQuantizer` that remembers the last training batch and restarts dead codes.

    Args:
        spatial_dims, num_embeddings, embedding_dim, commitment_cost, decay, epsilon,
            embedding_init, ddp_sync: as MONAI's :class:`EMAQuantizer`.
        restart_threshold: a code whose ``ema_cluster_size`` is below this is dead (0: none is).

    Attributes:
        last_inputs: the last training forward's encoder outputs, float32 ``[N, embedding_dim]``
            (detached; ``None`` before the first one or after a restart consumed them).
    """

    def __init__(self, spatial_dims: int, num_embeddings: int, embedding_dim: int, *, commitment_cost: float = 0.25,
                 decay: float = 0.99, epsilon: float = 1e-5, embedding_init: str = "normal", ddp_sync: bool = True,
                 restart_threshold: float = 1.0):
        super().__init__(spatial_dims, num_embeddings, embedding_dim, commitment_cost=commitment_cost, decay=decay,
                         epsilon=epsilon, embedding_init=embedding_init, ddp_sync=ddp_sync)
        self.restart_threshold = float(restart_threshold)
        self.last_inputs: torch.Tensor | None = None

    def forward(self, inputs: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """MONAI's forward (quantisation, EMA update in training, commitment loss, straight-through
        estimator) in float32 with autocast off on the input's device: ``(quantized float32
        [B, C, *S], loss, indices [B, *S])``."""
        with torch.autocast(inputs.device.type, enabled=False):
            return super().forward(inputs.float())

    def quantize(self, inputs: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """MONAI's nearest-code search in float32 (autocast off on the input's device); a training
        call keeps the flattened inputs for :meth:`restart_dead_codes`."""
        with torch.autocast(inputs.device.type, enabled=False):
            flat, encodings, indices = super().quantize(inputs.float())
        if self.training:
            self.last_inputs = flat.detach()
        return flat, encodings, indices

    def dead_codes(self) -> torch.Tensor:
        """bool ``[num_embeddings]``: codes whose EMA use is below ``restart_threshold``."""
        return self.ema_cluster_size < self.restart_threshold

    @torch.no_grad()
    def restart_dead_codes(self, generator: torch.Generator | None = None) -> int:
        """Re-seed the dead codes with random rows of :attr:`last_inputs` (uniform, with
        replacement), drawn with ``generator``; their ``ema_cluster_size`` becomes
        ``max(restart_threshold, 1)`` use and ``ema_w`` that use times the new vector, so the
        next EMA update keeps them where they were put. Other codes are untouched.

        Returns:
            How many codes were re-seeded (0 without a training forward since the last call).
        """
        if self.last_inputs is None or self.restart_threshold <= 0:
            return 0
        inputs, self.last_inputs = self.last_inputs, None
        dead = self.dead_codes()
        if torch.distributed.is_available() and torch.distributed.is_initialized() and self.ddp_sync:
            flags = dead.to(torch.uint8)
            torch.distributed.broadcast(flags, 0)
            dead = flags.bool()
        n = int(dead.sum())
        if n == 0:
            return 0
        device = generator.device if generator is not None else inputs.device
        rows = torch.randint(0, inputs.shape[0], (n,), generator=generator, device=device).to(inputs.device)
        new = inputs[rows].to(self.embedding.weight.dtype)
        if torch.distributed.is_available() and torch.distributed.is_initialized() and self.ddp_sync:
            torch.distributed.broadcast(new, 0)
        use = max(self.restart_threshold, 1.0)
        self.embedding.weight[dead] = new
        self.ema_cluster_size[dead] = use
        self.ema_w[dead] = new * use
        return n
