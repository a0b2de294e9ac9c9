"""Runs one `tfvae` command with a fault injected at a known point (for test_run_lifecycle.py).

Usage: python lifecycle_child.py HOOK TFVAE_ARGS...  where HOOK is one of

    none                     no fault
    kill-mid-epoch:E         SIGKILL at batch 3 of epoch E (0-based; needs --steps-per-execution 1)
    kill-after-checkpoint:N  SIGKILL right after checkpoint epoch-N is published, before its
                             history.csv row is written
    kill-after-model         SIGKILL once model/ is saved, before metrics.json
    kill-writing-metrics     SIGKILL with metrics.json's temporary file written, not yet renamed
    kill-before-curves       SIGKILL after metrics.json, before pictures/curves.png
    pause:DIR                at the end of the first epoch create DIR/ready, then wait for DIR/go

The hooks are patched in here, not in the library, so each kill lands at one exact point.
"""

import os
import signal
import sys
import time

from tfvae import plots
from tfvae.base import atomic
from tfvae.cli import app as cli
from tfvae.training import checkpointing, train


def _kill():
    os.kill(os.getpid(), signal.SIGKILL)


def _install(hook: str) -> None:
    name, _, arg = hook.partition(":")
    cls = checkpointing.TrainingCheckpoint
    if name == "kill-mid-epoch":

        def on_epoch_begin(self, epoch, logs=None):
            self._epoch = epoch

        def on_train_batch_end(self, batch, logs=None):
            if self._epoch == int(arg) and batch == 2:
                _kill()

        cls.on_epoch_begin, cls.on_train_batch_end = on_epoch_begin, on_train_batch_end
    elif name == "kill-after-checkpoint":
        save = cls.save

        def save_then_kill(self, epochs_done):
            path = save(self, epochs_done)
            if epochs_done == int(arg):
                _kill()
            return path

        cls.save = save_then_kill
    elif name == "kill-after-model":
        save_model = train.save_model

        def save_model_then_kill(*args, **kwargs):
            save_model(*args, **kwargs)
            _kill()

        train.save_model = save_model_then_kill
    elif name == "kill-writing-metrics":
        replace = atomic.os.replace

        def replace_or_kill(src, dst, *args, **kwargs):
            if os.fspath(dst).endswith("metrics.json"):
                _kill()
            return replace(src, dst, *args, **kwargs)

        atomic.os.replace = replace_or_kill
    elif name == "kill-before-curves":
        save_figure = plots.save_figure

        def kill_or_save(figure, path):
            if os.fspath(path).endswith("curves.png"):
                _kill()
            return save_figure(figure, path)

        plots.save_figure = kill_or_save
    elif name == "pause":
        on_epoch_end = cls.on_epoch_end

        def pause_after_first(self, epoch, logs=None):
            on_epoch_end(self, epoch, logs)
            if epoch == 0:
                open(os.path.join(arg, "ready"), "w").close()
                deadline = time.monotonic() + 300
                while not os.path.exists(os.path.join(arg, "go")):
                    if time.monotonic() > deadline:
                        sys.exit(3)
                    time.sleep(0.1)

        cls.on_epoch_end = pause_after_first
    elif name != "none":
        raise SystemExit(f"unknown hook {hook!r}")


if __name__ == "__main__":
    _install(sys.argv[1])
    sys.exit(cli.main(sys.argv[2:]))
