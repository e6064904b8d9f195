"""Batched augmentation with tensor ops (no torchvision), run on the training device.

Applying one op to a whole (N, C, H, W) batch is far cheaper than per-sample PIL
transforms in DataLoader workers.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F


def resize(images: torch.Tensor, size: int) -> torch.Tensor:
    """Bilinear resize of an (N, C, H, W) batch to ``size`` x ``size``."""
    if images.shape[-1] == size and images.shape[-2] == size:
        return images
    return F.interpolate(images, size=(size, size), mode="bilinear", align_corners=False, antialias=True)


def normalize(images: torch.Tensor, mean: torch.Tensor, std: torch.Tensor) -> torch.Tensor:
    return (images - mean.view(1, -1, 1, 1)) / std.view(1, -1, 1, 1)


def to_float(images: torch.Tensor, mean: torch.Tensor | None = None, std: torch.Tensor | None = None) -> torch.Tensor:
    """uint8 pixels to floats in [0, 1], then normalised: data stays uint8 (4x smaller) until the batch is used."""
    if images.dtype == torch.uint8:
        images = images.float().div_(255.0)
    if mean is None or std is None:
        return images
    return normalize(images, mean.to(images.device), std.to(images.device))


def random_crop(images: torch.Tensor, padding: int, generator: torch.Generator | None = None) -> torch.Tensor:
    """Pad by ``padding`` (zeros) and crop back to the original size at a random offset per sample."""
    if padding <= 0:
        return images
    n, c, h, w = images.shape
    padded = F.pad(images, (padding, padding, padding, padding))
    gen_device = generator.device if generator is not None else images.device
    dy = torch.randint(0, 2 * padding + 1, (n,), generator=generator, device=gen_device).to(images.device)
    dx = torch.randint(0, 2 * padding + 1, (n,), generator=generator, device=gen_device).to(images.device)
    rows = (dy[:, None] + torch.arange(h, device=images.device)[None, :])  # (n, h)
    cols = (dx[:, None] + torch.arange(w, device=images.device)[None, :])  # (n, w)
    index_rows = rows[:, None, :, None].expand(n, c, h, w + 2 * padding)
    cropped = padded.gather(2, index_rows)
    index_cols = cols[:, None, None, :].expand(n, c, h, w)
    return cropped.gather(3, index_cols)


def random_hflip(images: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
    """Flip each sample left-right with probability 0.5."""
    gen_device = generator.device if generator is not None else images.device
    flip = (torch.rand(images.shape[0], generator=generator, device=gen_device) < 0.5).to(images.device)
    return torch.where(flip[:, None, None, None], images.flip(-1), images)
