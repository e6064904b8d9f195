"""Multi-GPU / multi-node runs on ``torch.distributed``, launched by ``torchrun``.

An N-process run has the semantics of the 1-process run with the same global batch:

* every rank iterates the same global batch order and trains on its slice of each batch
  (:class:`ShardedLoader`); ``dataflow.batch_size`` stays the global batch size;
* every rank samples the same path: all ranks seed the strategy RNG identically;
* BatchNorm in a training step normalises with the statistics of the whole global batch
  (:class:`GlobalBatchNorm2d`), as the 1-process run does; per-rank statistics would
  change the gradients, not just the running averages;
* the gradients of the parameters that received one are averaged with one all-reduce per
  dtype before the optimizer step (:class:`DistributedUpdater`). DistributedDataParallel
  would need ``find_unused_parameters=True`` for a supernet: a graph walk every step and
  an all-reduce of every candidate's (zero) gradient, K times the traffic, and unused
  candidates would then be touched by momentum and weight decay, unlike the 1-process run.
  Because all ranks run the same path, they hold gradients for the same parameters, so
  the flat all-reduce lines up;
* the search shards the candidates, not the data: each rank scores its share of a batch of
  architectures on the full fixed BN-recalibration and validation batches, the scores are
  all-gathered, so every rank's cache and search trajectory are the same
  (:class:`ShardedEvaluator`);
* rank 0 alone writes the run directory (other ranks get a :class:`RankRunDir`) and builds
  the lookup table (one timing on an idle device, then broadcast).
"""

from __future__ import annotations

import logging
import os
import sys
from pathlib import Path
from typing import Any, Callable, Iterator, TypeVar

import numpy as np
import torch
import torch.distributed as dist
import torch.nn as nn

from osnas.dataflows.base import Loader
from osnas.errors import OsnasError
from osnas.run_dir import RunDir
from osnas.search_strategies.base import arch_key
from osnas.search_strategies.evaluator import Evaluator
from osnas.training import Updater, upcast

T = TypeVar("T")
M = TypeVar("M", bound=nn.Module)


# ----------------------------------------------------------------------------- process group


def launched() -> bool:
    """Started by torchrun (or anything that sets its RANK / WORLD_SIZE variables)."""
    return "RANK" in os.environ and "WORLD_SIZE" in os.environ


def active() -> bool:
    return dist.is_available() and dist.is_initialized()


def rank() -> int:
    return dist.get_rank() if active() else int(os.environ.get("RANK", 0))


def world_size() -> int:
    return dist.get_world_size() if active() else 1


def backend() -> str:
    """The process group's backend (nccl, gloo), or "none" outside a distributed run."""
    return str(dist.get_backend()) if active() else "none"


def is_main() -> bool:
    """Rank 0, the only writer; true outside torchrun. Valid before the group is joined."""
    return rank() == 0


def setup(device: torch.device) -> torch.device:
    """Join torchrun's process group (once per process) and return this rank's device.

    Under torchrun a CUDA device means ``cuda:LOCAL_RANK`` (one GPU per process, NCCL);
    a CPU device uses gloo.
    """
    if not launched():
        return device
    local = int(os.environ.get("LOCAL_RANK", 0))
    if device.type == "cuda":
        if local >= torch.cuda.device_count():
            raise OsnasError(f"local rank {local} has no GPU: this node has {torch.cuda.device_count()}; "
                             "start at most that many processes per node (torchrun --nproc_per_node, "
                             "osnas compare --tasks-per-job)")
        device = torch.device("cuda", local)
        torch.cuda.set_device(device)
    if not active():
        if device.type == "cuda":
            dist.init_process_group("nccl", device_id=device)
        else:
            dist.init_process_group("gloo")
    return device


def leave() -> None:
    """Wait for every rank, then leave the process group; the process goes on.

    For a distributed run inside a process with work left after it: a submitit job
    stores its result once the function returns.
    """
    if not active():
        return
    dist.barrier()
    dist.destroy_process_group()


def shutdown() -> None:
    """End a distributed command cleanly: barrier, leave the group, exit without interpreter teardown.

    gloo workers can abort in static destructors at interpreter exit ("terminate called
    without an active exception") after a correct run; ``os._exit`` after flushing skips them.
    """
    if not active():
        return
    leave()
    sys.stdout.flush()
    sys.stderr.flush()
    logging.shutdown()
    os._exit(0)


def broadcast_object(obj: T) -> T:
    """Rank 0's ``obj`` on every rank (pickled)."""
    if not active():
        return obj
    box = [obj]
    dist.broadcast_object_list(box, src=0)
    return box[0]


def from_main(compute: Callable[[], T]) -> T:
    """``compute()`` run on rank 0 only, its result broadcast; a failure there fails every rank."""
    if not active():
        return compute()
    outcome: tuple[bool, Any] = (True, None)
    error: Exception | None = None
    if is_main():
        try:
            outcome = (True, compute())
        except Exception as exc:  # re-raised on rank 0, reported on the others
            error, outcome = exc, (False, str(exc))
    ok, value = broadcast_object(outcome)
    if error is not None:
        raise error
    if not ok:
        raise OsnasError(f"rank 0 failed: {value}")
    return value


def average(value: torch.Tensor) -> torch.Tensor:
    """Mean of a tensor over ranks (for logging figures every rank computed on its shard)."""
    if not active():
        return value
    value = value.detach().clone()
    dist.all_reduce(value)
    return value / world_size()


def maximum(value: torch.Tensor) -> torch.Tensor:
    """Largest value over ranks, so every rank takes the same decision on it."""
    if not active():
        return value
    value = value.detach().clone()
    dist.all_reduce(value, op=dist.ReduceOp.MAX)
    return value


# ----------------------------------------------------------------------------- run directory


class RankRunDir(RunDir):
    """The run directory as a rank other than 0 sees it: reads go to disk, writes are skipped."""

    def write_json(self, name: str, data: Any) -> Path:
        return self.file(name)

    def write_text(self, name: str, text: str) -> Path:
        return self.file(name)

    def save_checkpoint(self, name: str, obj: Any) -> Path:
        return self.file(name)

    def log_metrics(self, record: dict[str, Any]) -> None:
        pass

    def prune_metrics(self, phase: str, keep: int) -> int:
        return 0

    def remove_temporaries(self) -> list[str]:
        return []

    def lock(self) -> None:
        pass  # rank 0 holds the run


def rank_view(run: RunDir) -> RunDir:
    """``run`` on rank 0, a write-free view of the same path on the other ranks."""
    return run if is_main() else RankRunDir(run.path)


def create_run_dir(root: str | Path, name: str) -> RunDir:
    """A new run directory made by rank 0; the other ranks get its path."""
    path = from_main(lambda: RunDir.create(root, name).path)
    return rank_view(RunDir(path))


# ----------------------------------------------------------------------------- data


class ShardedLoader:
    """Each rank's slice of the global batches of ``loader`` (all ranks iterate the same order).

    Full batches split evenly (the global batch size is a multiple of the world size); a short
    last batch is cut to a multiple of it, so at most world-1 samples an epoch are left out.
    """

    def __init__(self, loader: Loader, rank: int, world: int) -> None:
        if loader.batch_size % world:
            raise OsnasError(f"dataflow.batch_size ({loader.batch_size}) is the global batch and must be a "
                             f"multiple of the number of processes ({world})")
        self.loader = loader
        self.rank = rank
        self.world = world
        self.batch_size = loader.batch_size

    @property
    def num_samples(self) -> int:
        return self.loader.num_samples

    def __len__(self) -> int:
        n = len(self.loader)
        tail = self.loader.num_samples - (n - 1) * self.batch_size
        return n - 1 if 0 < tail < self.world else n

    def state_dict(self) -> dict:
        return self.loader.state_dict()

    def load_state_dict(self, state: dict) -> None:
        self.loader.load_state_dict(state)

    def __iter__(self) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        for x, y in self.loader:
            n = x.shape[0] - x.shape[0] % self.world  # equal shards, so the mean of means is the global mean
            if n == 0:
                continue
            lo, hi = self.rank * n // self.world, (self.rank + 1) * n // self.world
            yield x[lo:hi], y[lo:hi]


def shard(loader: Loader) -> Loader:
    """This rank's view of a training loader (the loader itself outside a distributed run)."""
    return ShardedLoader(loader, rank(), world_size()) if active() else loader


# ----------------------------------------------------------------------------- model and gradients


class _GatherStats(torch.autograd.Function):
    """All-gather of each rank's statistics, with its gradient.

    Every rank's loss depends on every rank's statistics, so the gradient reaching rank r's
    statistics is the sum over ranks of the gradients at row r.
    """

    @staticmethod
    def forward(ctx: Any, stats: torch.Tensor) -> torch.Tensor:
        rows = [torch.empty_like(stats) for _ in range(world_size())]
        dist.all_gather(rows, stats.contiguous())
        return torch.stack(rows)

    @staticmethod
    def backward(ctx: Any, grad: torch.Tensor) -> torch.Tensor:
        grad = grad.contiguous().clone()
        dist.all_reduce(grad)
        return grad[rank()]


class _GlobalBatchStats:
    """BatchNorm whose training step normalises with the statistics of the global batch.

    Each rank computes its shard's count, mean and squared deviations; one all-gather combines
    them (Chan et al.), avoiding the cancellation of E[x^2] - E[x]^2.
    It synchronises only in a training forward with autograd on (a training step). Forwards
    under ``no_grad`` stay local: during search each rank recalibrates BN for different
    candidates on the same full batches, and there is nothing to synchronise.
    """

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not (self.training and torch.is_grad_enabled() and active()):
            return super().forward(x)  # type: ignore[misc]
        channels = x.shape[1]
        dims = [0, *range(2, x.dim())]
        shape = [1, channels] + [1] * (x.dim() - 2)
        xf = upcast(x)
        # corrected two-pass: the rounding error of the first mean is taken out of both statistics; the
        # plain two-pass lost 2e-4 of the variance of a nearly constant float32 channel
        count = xf.new_full((1,), float(x.numel() // channels))
        rough = xf.mean(dims, keepdim=True)
        deviation = xf - rough
        shift = deviation.sum(dims)
        local_mean = rough.view(-1) + shift / count
        local_m2 = deviation.square().sum(dims) - shift.square() / count
        rows = _GatherStats.apply(torch.cat([count, local_mean, local_m2]))  # (world, 1 + 2C)
        counts, means, m2s = rows[:, :1], rows[:, 1:channels + 1], rows[:, channels + 1:]
        n = counts.sum()
        mean = (counts * means).sum(0) / n
        var = (m2s.sum(0) + (counts * (means - mean).square()).sum(0)) / n
        if self.track_running_stats and self.running_mean is not None:
            self._update_running(mean.detach(), var.detach(), n.detach())
        y = (xf - mean.view(shape)) * torch.rsqrt(var + self.eps).view(shape)
        if self.affine:
            y = y * self.weight.view(shape) + self.bias.view(shape)
        return y.to(x.dtype)

    @torch.no_grad()
    def _update_running(self, mean: torch.Tensor, var: torch.Tensor, n: torch.Tensor) -> None:
        self.num_batches_tracked.add_(1)
        momentum = self.momentum if self.momentum is not None else 1.0 / float(self.num_batches_tracked)
        unbiased = var * n / (n - 1).clamp_min(1.0)
        self.running_mean.mul_(1 - momentum).add_(mean.to(self.running_mean.dtype), alpha=momentum)
        self.running_var.mul_(1 - momentum).add_(unbiased.to(self.running_var.dtype), alpha=momentum)


class GlobalBatchNorm1d(_GlobalBatchStats, nn.BatchNorm1d):
    """BatchNorm1d with global-batch statistics in distributed training steps."""


class GlobalBatchNorm2d(_GlobalBatchStats, nn.BatchNorm2d):
    """BatchNorm2d with global-batch statistics in distributed training steps."""


GLOBAL_NORMS: dict[type, type] = {nn.BatchNorm1d: GlobalBatchNorm1d, nn.BatchNorm2d: GlobalBatchNorm2d}


def use_global_batchnorm(module: M) -> M:
    """Switch the BatchNorm layers of ``module`` to global-batch statistics, in place.

    The class is swapped on the existing objects: parameters, buffers, state-dict keys and
    every reference (optimizer, path lists) stay valid.
    """
    for m in module.modules():
        if type(m) in GLOBAL_NORMS:
            m.__class__ = GLOBAL_NORMS[type(m)]
    return module


def prepare(module: M) -> M:
    """A model ready for a distributed training phase: global BN, rank 0's weights everywhere."""
    if not active():
        return module
    use_global_batchnorm(module)
    with torch.no_grad():
        for tensor in [*module.parameters(), *module.buffers()]:
            dist.broadcast(tensor.data, src=0)
    return module


def average_gradients(params: list[torch.nn.Parameter]) -> None:
    """Average the existing gradients over ranks: one flat all-reduce per dtype and device."""
    world = world_size()
    groups: dict[tuple[torch.dtype, torch.device], list[torch.Tensor]] = {}
    for p in params:
        if p.grad is not None:
            groups.setdefault((p.grad.dtype, p.grad.device), []).append(p.grad)
    for grads in groups.values():
        flat = torch.cat([g.reshape(-1) for g in grads])
        dist.all_reduce(flat)
        flat /= world
        offset = 0
        for g in grads:
            g.copy_(flat[offset:offset + g.numel()].view_as(g))
            offset += g.numel()


class DistributedUpdater(Updater):
    """An :class:`Updater` that averages gradients over ranks before clipping and stepping."""

    def step(self) -> None:
        average_gradients([p for group in self.optimizer.param_groups for p in group["params"]])
        super().step()


def updater_type() -> type[Updater]:
    return DistributedUpdater if active() else Updater


# ----------------------------------------------------------------------------- search


class ShardedEvaluator(Evaluator):
    """Scores a batch of candidates split over ranks; every rank ends with every score.

    Each rank scores its share on the full fixed batches, exactly as one process would, so
    the gathered scores equal the 1-process scores and the cache keeps the same order.
    """

    def evaluate(self, archs: np.ndarray) -> np.ndarray:
        archs = np.atleast_2d(np.asarray(archs, dtype=np.int64))
        if active() and world_size() > 1:
            keys = [arch_key(a) for a in archs]
            todo = [key for key in dict.fromkeys(keys) if key not in self.cache]
            ordered, world = sorted(todo), world_size()  # contiguous shares: each rank's candidates share prefixes
            mine = ordered[rank() * len(ordered) // world:(rank() + 1) * len(ordered) // world]
            self.score_new(mine)
            shares: list[Any] = [None] * world_size()
            dist.all_gather_object(shares, [(key, self.cache[key], self.metrics[key]) for key in mine])
            found = {key: (score, metrics) for share in shares for key, score, metrics in share}
            for key in todo:  # insert in the order one process would have
                self.cache.pop(key, None)
                self.cache[key], self.metrics[key] = found[key]
        return super().evaluate(archs)
