"""Where the runs of a comparison execute: this process, parallel processes here, or a cluster.

Every launcher returns handles with ``done()`` and ``result()`` (a ``concurrent.futures.Future``,
a ``submitit.Job`` or a :class:`RankZeroJob`), so the comparison's scheduler polls them the same
way. Clusters go through submitit (the optional ``slurm`` extra), which also offers a local
executor for tests. A submitit job of several tasks is one distributed run, as under torchrun.
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
    tasks_per_job: int = 1  # processes of one distributed run per job (one per GPU); submitit only

    def check(self) -> None:
        """Refuse bad options before anything is written."""
        if self.launcher not in LAUNCHERS:
            raise OsnasError(f"--launcher must be one of {', '.join(LAUNCHERS)} (got {self.launcher!r})")
        if self.jobs < 1:
            raise OsnasError(f"--jobs must be at least 1 (got {self.jobs})")
        if self.tasks_per_job < 1:
            raise OsnasError(f"--tasks-per-job must be at least 1 (got {self.tasks_per_job})")
        if self.tasks_per_job > 1 and self.launcher != "submitit":
            raise OsnasError(f"--tasks-per-job {self.tasks_per_job} needs --launcher submitit (valid launchers for "
                             f"a multi-process job: submitit; the {self.launcher} launcher runs 1 task per job); "
                             "for one multi-GPU run here, start osnas search under torchrun")
        if self.launcher == "submitit":
            try:
                import submitit  # noqa: F401
            except ImportError:
                raise OsnasError("--launcher submitit needs the submitit package (the optional extra 'slurm'): "
                                 "pip install 'submitit>=1.5,<2'") from None
            if self.gpus_per_job and self.tasks_per_job > self.gpus_per_job:
                raise OsnasError(f"--tasks-per-job {self.tasks_per_job} with --gpus-per-job {self.gpus_per_job}: "
                                 "each task of a job takes its own GPU; use at most as many tasks as GPUs")
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
                                        tasks_per_node=options.tasks_per_job, slurm_partition=options.partition)
        self.jobs: list[Any] = []

    def submit(self, fn: Callable[..., Any], *args: Any) -> Any:
        job = self.executor.submit(fn, *args)
        self.jobs.append(job)
        return RankZeroJob(job) if job.num_tasks > 1 else job

    def cancel(self) -> None:
        """Jobs still queued or running are cancelled, so a re-run does not find their runs locked."""
        for job in self.jobs:
            if not job.done():
                job.cancel(check=False)


class RankZeroJob:
    """A submitit job of several tasks as the scheduler polls it: its result is rank 0's.

    ``Job.result()`` refuses a job with tasks; ``results()`` raises the first failed task's error.
    """

    def __init__(self, job: Any) -> None:
        self.job = job

    def done(self) -> bool:
        return self.job.done()

    def result(self) -> Any:
        return self.job.results()[0]


def join_job_tasks() -> None:
    """Make this task of a submitit job one rank of a torch.distributed run, as torchrun would.

    RANK, WORLD_SIZE, LOCAL_RANK, MASTER_ADDR and MASTER_PORT come from the job; CUDA_VISIBLE_DEVICES
    stays as the cluster set it, since :func:`osnas.distributed.setup` takes ``cuda:LOCAL_RANK``.
    """
    import submitit

    submitit.helpers.TorchDistributedEnvironment().export(set_cuda_visible_devices=False, overwrite=True)


def make_launcher(options: LaunchOptions, folder: Path) -> InlineLauncher | PoolLauncher | SubmititLauncher:
    if options.launcher == "submitit":
        return SubmititLauncher(options, folder)
    return InlineLauncher() if options.jobs == 1 else PoolLauncher(options.jobs)
