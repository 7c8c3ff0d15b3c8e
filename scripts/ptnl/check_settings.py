"""train.py's own checks over many runs in one process, for ``python -m ptnl.sweep`` (plans,
``DRY_RUN``, ``status`` and the engines): a finished run goes through train.py's settings check
(``ptnl.cli.runner.prepare``: ``ptnl.runs.identity.finished_run`` on the resolved config; 0 "Done already",
3 other settings), a run to be dry-run through ``train.py --dry-run``'s checks. Nothing is written.

    python scripts/ptnl/check_settings.py REQUESTS.json ANSWERS.json

REQUESTS: [{"argv": [python, train.py, ...], "dry": bool}, ...]; ANSWERS: one record per request,
{"code": exit code train.py would end with (None: not finished, it would train), "stdout", "stderr"}.
"""
import contextlib
import io
import json
import os.path as osp
import sys


def _check(argv, dry):
    from ptnl.cli.exits import USER_ERRORS, exit_line
    from ptnl.cli.parser import build_parser
    from ptnl.cli.runner import prepare
    out, err = io.StringIO(), io.StringIO()
    code = None
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        try:
            args = build_parser().parse_args(argv[2:])
            args.dry_run = args.dry_run or dry
            cfg = prepare(args, grouped=True)  # a finished run: None (same settings) or exit 3
            code = 0 if (cfg is None or dry) else None
        except SystemExit as e:
            code = e.code if isinstance(e.code, int) else (0 if e.code is None else 2)
            if not isinstance(e.code, (int, type(None))):
                print(e.code, file=sys.stderr)
        except USER_ERRORS as e:
            print(exit_line(e), file=sys.stderr)
            code = 2
        except Exception as e:  # a crash of the check: the run would crash the same way
            print(exit_line(e), file=sys.stderr)
            code = 1
    return {"code": code, "stdout": out.getvalue(), "stderr": err.getvalue()}


def main(requests_path, answers_path):
    with open(requests_path) as f:
        requests = json.load(f)
    train_py = osp.abspath(requests[0]["argv"][1]) if requests else osp.abspath("train.py")
    sys.path.insert(0, osp.dirname(train_py))
    sys.argv = [train_py]
    from ptnl.io import write_json_atomic
    try:
        import train  # noqa: E402, F401  (train.py's module-level set-up: plugins, datasets, trainers)
    except Exception as e:  # e.g. a mistyped PTNL_PLUGINS path: every run would stop on it
        line = "Error: {}".format(e if isinstance(e, (ImportError, OSError, ValueError)) else
                                  "{}: {}".format(type(e).__name__, e))
        answers = [{"code": 2, "stdout": "", "stderr": line + "\n"} for _ in requests]
    else:
        answers = [_check(r["argv"], r.get("dry", False)) for r in requests]
    write_json_atomic(answers_path, answers)
    return 0


if __name__ == "__main__":
    if len(sys.argv) != 3:
        print(__doc__.strip().split("\n\n")[1].strip(), file=sys.stderr)
        sys.exit(2)
    sys.exit(main(sys.argv[1], sys.argv[2]))
