"""How a run ends when it does not finish: one line for a user error (``ptnl.errors.PTNLError``) or
a stop (Ctrl-C, SIGTERM / SIGUSR1), on the terminal and at the end of the run's log; any other
exception is a bug and keeps its traceback (its log still ends with an ``Error:`` line). And how a
finished run ends: without the interpreter's slow teardown.

Lines written to the log start with ``Error: `` (a failed run) or ``Interrupted at epoch`` (an
interrupted one): the run listing reads them.
"""
import contextlib
import os
import os.path as osp
import sys

from ptnl.errors import PTNLError
from ptnl.runs.files import newest_checkpoint

# what train.py and scripts/ptnl/check_settings.py print as one line: the user-error classes only
USER_ERRORS = (PTNLError,)


class Current:
    """The run in progress, as the exit handler describes it when it stops: its config once
    resolved, its trainer once built (a grouped run's: the group's first)."""

    def __init__(self):
        self.cfg = None
        self.trainer = None


def log_file():
    """The open ``log.txt`` of this run (the file of the tee ``setup_logger`` put on stdout), or None."""
    f = getattr(sys.stdout, "file", None)
    if f is None or not hasattr(f, "write") or getattr(f, "closed", True):
        return None
    return f


def to_log(text: str) -> None:
    """Write ``text`` into this run's log only (not on the terminal)."""
    f = log_file()
    if f is not None:
        with contextlib.suppress(OSError, ValueError):  # a full disk: the terminal still has the line
            f.write(text if text.endswith("\n") else text + "\n")
            f.flush()


def interrupted_message(trainer=None, cfg=None) -> str:
    """The epoch in progress, and the newest checkpoint's epoch, where a re-run resumes (the number
    main.sh's "Resuming: ... (from epoch E)" names)."""
    epoch, total = 0, (cfg.OPTIM.MAX_EPOCH if cfg is not None else "?")
    if trainer is not None:
        total = getattr(trainer, "max_epoch", total)
        epoch = getattr(trainer, "epoch", -1) + 1
    out_dir = getattr(trainer, "output_dir", None) or (cfg.OUTPUT_DIR if cfg is not None else None)
    last = newest_checkpoint(out_dir) if isinstance(out_dir, str) and osp.isdir(out_dir) else None
    then = ("resume from epoch {} (the newest checkpoint)".format(last) if last is not None
            else "start again (no checkpoint was written yet)")
    return "Interrupted at epoch {}/{}: re-run the same command to {}.".format(epoch, total, then)


def exit_line(e: BaseException, trainer=None, cfg=None) -> str:
    """The line that ends a run's log when ``e`` stops it: ``Interrupted at epoch`` for Ctrl-C,
    ``Error: <message>`` for a user error, ``Error: <type>: <message>`` for a crash."""
    if isinstance(e, KeyboardInterrupt):  # a stop signal's (ptnl.trainers.preemption) says which one
        return str(e.args[0]) if e.args else interrupted_message(trainer, cfg)
    if isinstance(e, USER_ERRORS):
        return "Error: {}".format(e)
    return "Error: {}: {}".format(type(e).__name__, e)


def _finish_line(line: str) -> None:
    """``line`` on the terminal (stderr) and at the end of the run's log, if there is one."""
    with contextlib.suppress(Exception):
        sys.stdout.flush()
    to_log(line)
    print(line, file=sys.stderr)


@contextlib.contextmanager
def exit_handler():
    """Around a command; yields the ``Current`` run, which the command fills in. A user error
    (``PTNLError``) is one ``Error:`` line (exit 2), Ctrl-C one ``Interrupted at epoch`` line (exit
    130); both, and any other crash's ``Error:`` line, end the run's log. Anything else is a bug and
    keeps its traceback. SIGTERM / SIGUSR1 stop the run at a safe point (``ptnl.trainers.preemption``,
    exit 128 + signal); a diverged run exits 4."""
    current = Current()
    try:
        from ptnl.trainers import preemption  # imports the engine: PTNL_ENGINE's error is one line too
        preemption.install()
        yield current
    except KeyboardInterrupt as e:
        _finish_line(exit_line(e, current.trainer, current.cfg))
        sys.exit(getattr(e, "exit_code", 130))
    except USER_ERRORS as e:
        if os.environ.get("PTNL_DEBUG"):
            to_log(exit_line(e))
            raise
        _finish_line(exit_line(e))
        print("(set PTNL_DEBUG=1 for the full traceback)", file=sys.stderr)
        sys.exit(getattr(e, "exit_code", 2))
    except Exception as e:  # a crash: the traceback follows on stderr, the log says why it stopped
        to_log(exit_line(e))
        raise


def quick_exit(code: int = 0) -> None:
    """End a finished ``train.py`` without the interpreter's teardown (a second or more of freeing
    torch's modules one by one, on CPU): the exit handlers run (logging, worker processes), every
    open file is flushed, then the process ends with ``code``."""
    import atexit
    import gc
    import io
    atexit._run_exitfuncs()
    for obj in gc.get_objects():
        if not issubclass(type(obj), io.IOBase):  # type(), not isinstance: no __class__ lookups (warnings)
            continue
        try:
            if not obj.closed and obj.writable():
                obj.flush()
        except Exception:  # a stream that cannot flush (a closed pipe) is the teardown's to report
            pass
    for stream in (sys.stdout, sys.stderr):
        try:
            stream.flush()
        except Exception:
            pass
    os._exit(code)
