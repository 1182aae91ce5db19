"""``eeve train`` whose main process is killed (SIGKILL) right after it stores a given checkpoint.

A crash at a known point instead of a race with a polling test: the two-process tests launch
``-m tests.kill_after_checkpoint train ...`` with ``EEVE_KILL_AFTER_CHECKPOINT=<stage>:<step>``.
"""

import os
import signal
import sys

import eeve_lib.pipeline.training as training
from eeve_lib.cli import main

stage, step = map(int, os.environ["EEVE_KILL_AFTER_CHECKPOINT"].split(":"))
save = training._save_checkpoint


def save_then_die(path, key, state):
    save(path, key, state)
    if state.log["stage"] == stage and state.step >= step:
        os.kill(os.getpid(), signal.SIGKILL)


training._save_checkpoint = save_then_die
sys.exit(main())
