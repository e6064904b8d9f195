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
    """uint8 pixels to floats in [0, 1], then normalised: data stays uint8 (4x smaller) until the batch is used.

    For uint8 input the scaling and normalisation are one in-place multiply-add on the new float copy.
    """
    if images.dtype != torch.uint8:
        return images if mean is None or std is None else normalize(images, mean.to(images.device), std.to(images.device))
    x = images.float()
    if mean is None or std is None:
        return x.div_(255.0)
    mean, std = mean.to(x.device).view(1, -1, 1, 1), std.to(x.device).view(1, -1, 1, 1)
    return x.mul_(1.0 / (255.0 * std)).sub_(mean / std)


def random_crop_flip(images: torch.Tensor, padding: int, hflip: bool,
                     generator: torch.Generator | None = None) -> torch.Tensor:
    """Zero-pad by ``padding``, crop back at a random offset per sample, flip left-right with p=0.5.

    Crop and flip are one gather on the padded batch (the flip only reverses the column
    index), so a batch costs one pad and one indexed copy whatever the options.
    Draw order: row offsets, column offsets, flips (only those the options ask for).
    """
    if padding <= 0 and not hflip:
        return images
    n, c, h, w = images.shape
    device = images.device
    gen_device = generator.device if generator is not None else device

    def offsets() -> torch.Tensor:
        if padding <= 0:
            return torch.zeros(n, dtype=torch.long, device=device)
        return torch.randint(0, 2 * padding + 1, (n,), generator=generator, device=gen_device).to(device)

    dy, dx = offsets(), offsets()
    cols = torch.arange(w, device=device).expand(n, w)
    if hflip:
        flip = (torch.rand(n, generator=generator, device=gen_device) < 0.5).to(device)
        cols = torch.where(flip[:, None], w - 1 - cols, cols)
    padded = F.pad(images, (padding, padding, padding, padding)) if padding > 0 else images
    width = w + 2 * max(padding, 0)
    rows = dy[:, None] + torch.arange(h, device=device)  # (n, h)
    pixels = rows[:, :, None] * width + (cols + dx[:, None])[:, None, :]  # (n, h, w) into the padded plane
    index = pixels.view(n, 1, h * w).expand(n, c, h * w)
    return padded.reshape(n, c, -1).gather(2, index).view(n, c, h, w)
