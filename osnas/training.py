"""Optimisation plumbing shared by supernet and final training: optimizer, schedule, AMP, clipping."""

from __future__ import annotations

import contextlib
import math
from typing import Any, Iterable, Iterator, TypeVar

import torch
import torch.nn as nn

from osnas.config import OptimizerConfig, PhaseConfig

M = TypeVar("M", bound=nn.Module)


DTYPES = {"float32": torch.float32, "float64": torch.float64}


def upcast(t: torch.Tensor) -> torch.Tensor:
    """Half or bfloat16 (under AMP) to float32 for numerically delicate sums; float32/float64 unchanged."""
    return t.float() if t.dtype in (torch.float16, torch.bfloat16) else t


def compute_in(module: M, dtype: torch.dtype) -> M:
    """Cast ``module`` to ``dtype`` and make it cast its floating inputs to its own dtype (loaders deliver float32).

    ``dtype: float64`` removes the float32 rounding that BatchNorm amplifies on nearly constant
    channels (some supernet paths lose 1e-2 of relative gradient accuracy in float32), e.g. so
    that a 2-process run reproduces the 1-process one (docs/distributed.md). The inputs follow
    the parameters, so a copy cast back to float32 (profiling, export) still runs.
    """
    module.to(dtype)
    if dtype != torch.float32:
        module.register_forward_pre_hook(_cast_inputs)
    return module


def _cast_inputs(module: nn.Module, args: tuple[Any, ...]) -> tuple[Any, ...]:
    dtype = next(module.parameters()).dtype
    return tuple(a.to(dtype) if torch.is_tensor(a) and a.is_floating_point() else a for a in args)


def build_optimizer(cfg: OptimizerConfig, params: Iterable[torch.nn.Parameter]) -> torch.optim.Optimizer:
    params = [p for p in params if p.requires_grad]
    if cfg.name == "sgd":
        return torch.optim.SGD(params, lr=cfg.lr, momentum=cfg.momentum, nesterov=cfg.nesterov and cfg.momentum > 0,
                               weight_decay=cfg.weight_decay)
    if cfg.name == "adam":
        return torch.optim.Adam(params, lr=cfg.lr, weight_decay=cfg.weight_decay)
    return torch.optim.AdamW(params, lr=cfg.lr, weight_decay=cfg.weight_decay)


def build_scheduler(cfg: PhaseConfig, optimizer: torch.optim.Optimizer, steps_per_epoch: int) -> torch.optim.lr_scheduler.LambdaLR:
    """Per-step schedule: linear warm-up then cosine (or step decay at 1/2 and 3/4, or constant)."""
    total = max(1, cfg.epochs * steps_per_epoch)
    warmup = cfg.warmup_epochs * steps_per_epoch

    def factor(step: int) -> float:
        if step < warmup:
            return (step + 1) / warmup
        progress = (step - warmup) / max(1, total - warmup)
        if cfg.scheduler == "cosine":
            return 0.5 * (1.0 + math.cos(math.pi * min(progress, 1.0)))
        if cfg.scheduler == "step":
            return 0.1 ** (int(progress >= 0.5) + int(progress >= 0.75))
        return 1.0

    return torch.optim.lr_scheduler.LambdaLR(optimizer, factor)


def resolve_amp(amp: str, device: torch.device) -> tuple[str, str | None]:
    """The AMP mode to use and, when it had to be turned off, why."""
    if amp == "none":
        return "none", None
    if device.type != "cuda":
        return "none", f"amp={amp} needs a CUDA device; training in float32 on {device.type}"
    if amp == "bf16" and not torch.cuda.is_bf16_supported():
        return "fp16", "bf16 is not supported on this GPU; using fp16 with loss scaling"
    return amp, None


def use_channels_last(setting: bool | str, device: torch.device, amp: str,
                      dtype: torch.dtype = torch.float32) -> bool:
    """Whether a phase runs in channels-last layout: ``setting``, or for ``"auto"`` what was measured faster
    (CPU in float32: oneDNN; CUDA with AMP: tensor cores; never float64, whose convolutions have no NHWC
    kernels and took twice as long)."""
    if setting != "auto":
        return bool(setting)
    if dtype == torch.float64:
        return False
    return device.type == "cpu" or (device.type == "cuda" and resolve_amp(amp, device)[0] != "none")


def in_layout(model: M, channels_last: bool | str, amp: str, device: torch.device) -> M:
    """``model`` in the memory layout a phase with these settings trains (and is scored) in."""
    dtype = next(model.parameters()).dtype
    if use_channels_last(channels_last, device, amp, dtype):
        model = model.to(memory_format=torch.channels_last)
    return model


class Updater:
    """Wraps an optimizer with autocast, loss scaling, gradient clipping and the LR schedule.

    Strategies call ``zero_grad``, ``autocast``, ``backward`` and ``step`` on it, so
    AMP and clipping behave the same whatever decides the paths.
    """

    def __init__(
        self,
        optimizer: torch.optim.Optimizer,
        scheduler: torch.optim.lr_scheduler.LRScheduler | None,
        device: torch.device,
        amp: str = "none",
        grad_clip: float | None = None,
    ) -> None:
        self.optimizer = optimizer
        self.scheduler = scheduler
        self.device = device
        self.amp = amp
        self.grad_clip = grad_clip
        self.scaler = torch.amp.GradScaler("cuda", enabled=amp == "fp16")

    @property
    def param_groups(self) -> list[dict[str, Any]]:
        return self.optimizer.param_groups

    def zero_grad(self) -> None:
        self.optimizer.zero_grad(set_to_none=True)

    @contextlib.contextmanager
    def autocast(self) -> Iterator[None]:
        if self.amp == "none":
            yield
            return
        dtype = torch.bfloat16 if self.amp == "bf16" else torch.float16
        with torch.autocast(device_type=self.device.type, dtype=dtype):
            yield

    def backward(self, loss: torch.Tensor) -> None:
        self.scaler.scale(loss).backward()

    def step(self) -> None:
        if self.grad_clip:
            self.scaler.unscale_(self.optimizer)
            params = [p for g in self.optimizer.param_groups for p in g["params"] if p.grad is not None]
            torch.nn.utils.clip_grad_norm_(params, self.grad_clip)
        self.scaler.step(self.optimizer)
        self.scaler.update()
        if self.scheduler is not None:
            self.scheduler.step()

    def state_dict(self) -> dict[str, Any]:
        return {
            "optimizer": self.optimizer.state_dict(),
            "scheduler": None if self.scheduler is None else self.scheduler.state_dict(),
            "scaler": self.scaler.state_dict(),
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.optimizer.load_state_dict(state["optimizer"])
        if self.scheduler is not None and state.get("scheduler") is not None:
            self.scheduler.load_state_dict(state["scheduler"])
        if state.get("scaler"):
            self.scaler.load_state_dict(state["scaler"])
