"""Shared bits of the Python-driven CLI tests (test_*.py beside it): a
pass/fail tally and a runner for the wobble command."""
import subprocess
import sys

_tally = {"passes": 0, "fails": 0}


def check(cond, what):
    """Count one assertion; print what failed."""
    if cond:
        _tally["passes"] += 1
    else:
        _tally["fails"] += 1
        print("FAIL:", what)


def runner(wobble):
    """run(*args) -> CompletedProcess of `wobble args...` (text, captured)."""
    return lambda *args: subprocess.run([wobble, *args], capture_output=True, text=True)


def finish():
    """Print the tally and exit 1 if anything failed."""
    print(f"{_tally['passes']} passed, {_tally['fails']} failed")
    sys.exit(1 if _tally["fails"] else 0)
