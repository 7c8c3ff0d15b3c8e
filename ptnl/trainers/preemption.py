"""Stopping a run when the scheduler asks, so that re-running it (SLURM's requeue, or the same
command) resumes exactly: SLURM sends SIGTERM to a job it preempts or cancels (SIGKILL follows
after ``KillWait``) and, with ``sbatch --signal=USR1@SECONDS``, SIGUSR1 ahead of the time limit.

While a run trains, a signal only sets a flag: the run stops at the next batch boundary when the
last finished epoch is on disk (its checkpoint), else at the end of the current epoch, after saving
it. Outside the epoch loop (data, model, final test) it stops at once; every file is written
atomically, so nothing is left half-written. SIGUSR1 also requeues the SLURM job
(``scontrol requeue``; ``PTNL_REQUEUE=0`` turns that off); the exit status is 128 + the signal
number (143 for SIGTERM, 138 for SIGUSR1)."""
import os
import shutil
import signal
import subprocess
import threading

from ptnl.io import get_logger

log = get_logger(__name__)

SIGNALS = ("SIGTERM", "SIGUSR1")


class Preempted(KeyboardInterrupt):
    """The run was stopped by a signal; ``exit_code`` is 128 + its number. A KeyboardInterrupt, so
    that everything that ends a Ctrl-C'd run cleanly (the exit line, grouped runs' logs) ends it."""

    def __init__(self, message: str, exit_code: int):
        super().__init__(message)
        self.exit_code = exit_code


class _State:
    signum = None  # the first stop signal received
    deferring = False  # True inside the epoch loop: stop at a safe point, not at once
    stopping = False  # Preempted raised: later signals are ignored
    installed = False


STATE = _State()


def install() -> None:
    """Handle SIGTERM and SIGUSR1 in this process (the main thread only; elsewhere a no-op)."""
    if STATE.installed or threading.current_thread() is not threading.main_thread():
        return
    for name in SIGNALS:
        if hasattr(signal, name):
            signal.signal(getattr(signal, name), _handler)
    STATE.installed = True


def _handler(signum, frame):
    if STATE.stopping or STATE.signum is not None:
        return
    STATE.signum = signum
    if not STATE.deferring:
        raise stop(None)


def requested() -> bool:
    return STATE.signum is not None


def defer(on: bool) -> None:
    """Inside the epoch loop (True) a signal waits for ``check``; outside it stops at once."""
    STATE.deferring = on
    if not on and STATE.signum is not None and not STATE.stopping:
        raise stop(None)


def check(trainer, saved_epochs: int, completed_epochs: int) -> None:
    """At a batch boundary: stop now if a signal came and the ``completed_epochs`` finished epochs
    are all on disk (``saved_epochs``), else leave it to the end of the epoch."""
    if STATE.signum is not None and not STATE.stopping and saved_epochs >= completed_epochs:
        raise stop(trainer, saved_epochs)


def stop(trainer, saved_epochs: int = None) -> Preempted:
    """The exception that ends the run (after requeueing the SLURM job for SIGUSR1)."""
    STATE.stopping = True
    name = signal.Signals(STATE.signum).name
    epoch = getattr(trainer, "epoch", -1) + 1 if trainer is not None else 0
    total = getattr(trainer, "max_epoch", "?") if trainer is not None else "?"
    kept = ("the checkpoint of epoch {} is kept".format(saved_epochs) if saved_epochs
            else "no epoch was finished")
    requeued = requeue() if STATE.signum == getattr(signal, "SIGUSR1", None) else None
    then = ("SLURM job {} requeued: it resumes from there".format(requeued) if requeued
            else "re-run the same command (or let SLURM requeue it) to resume")
    return Preempted("Interrupted at epoch {}/{} by {}: {}; {}.".format(epoch, total, name, kept, then),
                     128 + STATE.signum)


def slurm_job_id():
    """This process's SLURM job as ``scontrol`` names it (array tasks as JOB_TASK), or None."""
    env = os.environ
    if env.get("SLURM_ARRAY_JOB_ID") and env.get("SLURM_ARRAY_TASK_ID"):
        return "{}_{}".format(env["SLURM_ARRAY_JOB_ID"], env["SLURM_ARRAY_TASK_ID"])
    return env.get("SLURM_JOB_ID") or None


def requeue():
    """``scontrol requeue`` this SLURM job (SIGUSR1: time is running out); the job id on success."""
    job = slurm_job_id()
    if not job or os.environ.get("PTNL_REQUEUE", "1") == "0" or shutil.which("scontrol") is None:
        return None
    try:
        proc = subprocess.run(["scontrol", "requeue", job], capture_output=True, text=True, timeout=60)
    except (OSError, subprocess.SubprocessError) as e:
        log.warning("Warning: scontrol requeue {} failed: {}".format(job, e))
        return None
    if proc.returncode:
        log.warning("Warning: scontrol requeue {} failed: {}".format(job, proc.stderr.strip()))
        return None
    return job
