"""The output lock: a second writer of the same output is refused in one line, a dead holder's lock is taken
over, and the lock is released when its block ends (also by an exception)."""
from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap

import pytest

from liteframe.errors import InputError
from liteframe.io import output_lock

HOLD = textwrap.dedent("""
    import sys, time
    from liteframe.io import output_lock
    with output_lock(sys.argv[1]):
        print("held", flush=True)
        time.sleep(60)
""")


def _holder(path):
    proc = subprocess.Popen([sys.executable, "-c", HOLD, str(path)], stdout=subprocess.PIPE, text=True)
    assert proc.stdout.readline().strip() == "held"
    return proc


def test_second_writer_refused_while_the_first_lives_then_taken_over_after_sigkill(tmp_path):
    out = tmp_path / "run"
    proc = _holder(out)
    try:
        with pytest.raises(InputError, match=rf"output .*run is in use by pid {proc.pid} on ") as err:
            with output_lock(out):
                pass
        assert "\n" not in str(err.value)
    finally:
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait()
    with output_lock(out) as lock:  # the dead holder's file is still there: taken over
        assert lock.read_text() == f"pid {os.getpid()} on {os.uname().nodename}\n"


def test_released_on_exit_and_on_error(tmp_path):
    out = tmp_path / "answers.jsonl"
    with pytest.raises(RuntimeError):
        with output_lock(out, "eval output"):
            raise RuntimeError("boom")
    with output_lock(out, "eval output"):
        with pytest.raises(InputError, match="eval output .*answers.jsonl is in use"):
            with output_lock(out, "eval output"):  # the same process, a second open file: refused too
                pass
    assert not out.exists()  # the lock is a sibling, never the output itself
