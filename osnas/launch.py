"""Where the runs of a comparison execute: this process, parallel processes here, or a cluster.

Every launcher returns handles with ``done()`` and ``result()`` (a ``concurrent.futures.Future``
or a ``submitit.Job``), so the comparison's scheduler polls them the same way. Clusters go
through submitit (the optional ``slurm`` extra), which also offers a local executor for tests.
"""

from __future__ import annotations

import multiprocessing
from concurrent.futures import Future, ProcessPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Optional

from osnas.errors import OsnasError

LAUNCHERS = ("local", "submitit")


@dataclass
class LaunchOptions:
    """What the user chose on the command line (cluster fields only matter to submitit)."""

    launcher: str = "local"
    jobs: int = 1
    cluster: Optional[str] = None  # submitit's: None picks SLURM when present; "local" runs jobs here
    partition: Optional[str] = None
    timeout_min: int = 24 * 60
    gpus_per_job: Optional[int] = None
    cpus_per_job: Optional[int] = None

    def check(self) -> None:
        """Refuse bad options before anything is written."""
        if self.launcher not in LAUNCHERS:
            raise OsnasError(f"--launcher must be one of {', '.join(LAUNCHERS)} (got {self.launcher!r})")
        if self.jobs < 1:
            raise OsnasError(f"--jobs must be at least 1 (got {self.jobs})")
        if self.launcher == "submitit":
            try:
                import submitit  # noqa: F401
            except ImportError:
                raise OsnasError("--launcher submitit needs the submitit package (the optional extra 'slurm'): "
                                 "pip install 'submitit>=1.5,<2'") from None
        elif any(v is not None for v in (self.cluster, self.partition, self.gpus_per_job, self.cpus_per_job)):
            raise OsnasError("--cluster, --partition, --gpus-per-job and --cpus-per-job only apply to "
                             "--launcher submitit")


class InlineLauncher:
    """One run at a time in this process (``--jobs 1``): errors keep their tracebacks for --debug."""

    slots = 1

    def submit(self, fn: Callable[..., Any], *args: Any) -> Future:
        handle: Future = Future()
        try:
            handle.set_result(fn(*args))
        except Exception as exc:
            handle.set_exception(exc)
        return handle

    def cancel(self) -> None:
        pass


class PoolLauncher:
    """``jobs`` runs at once, each in a fresh process of this machine."""

    def __init__(self, jobs: int) -> None:
        self.slots = jobs
        # spawn, not fork: a forked child would inherit torch's thread pools and the parent's locks
        self.pool = ProcessPoolExecutor(jobs, mp_context=multiprocessing.get_context("spawn"))

    def submit(self, fn: Callable[..., Any], *args: Any) -> Future:
        return self.pool.submit(fn, *args)

    def cancel(self) -> None:
        self.pool.shutdown(wait=False, cancel_futures=True)


class SubmititLauncher:
    """Each run a submitit job (SLURM, or submitit's local executor); at most ``jobs`` queued at once."""

    def __init__(self, options: LaunchOptions, folder: Path) -> None:
        import submitit

        self.slots = options.jobs
        self.executor = submitit.AutoExecutor(folder=str(folder), cluster=options.cluster)
        self.executor.update_parameters(name="osnas-compare", timeout_min=options.timeout_min,
                                        gpus_per_node=options.gpus_per_job, cpus_per_task=options.cpus_per_job,
                                        slurm_partition=options.partition)
        self.jobs: list[Any] = []

    def submit(self, fn: Callable[..., Any], *args: Any) -> Any:
        job = self.executor.submit(fn, *args)
        self.jobs.append(job)
        return job

    def cancel(self) -> None:
        """Jobs still queued or running are cancelled, so a re-run does not find their runs locked."""
        for job in self.jobs:
            if not job.done():
                job.cancel(check=False)


def make_launcher(options: LaunchOptions, folder: Path) -> InlineLauncher | PoolLauncher | SubmititLauncher:
    if options.launcher == "submitit":
        return SubmititLauncher(options, folder)
    return InlineLauncher() if options.jobs == 1 else PoolLauncher(options.jobs)
