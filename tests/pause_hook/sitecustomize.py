"""Pauses a fine-tune at a known step, for tests that kill a process mid-run at a deterministic
point rather than after some time (which depends on the machine's speed).

With this folder first on PYTHONPATH, every Python process started (the sweep, its forkserver and
workers) imports this module at start-up. If ``GPTBENCH_TEST_PAUSE`` is ``SEED:STEP:MARKER``, the
fine-tune of seed SEED, once optimizer step STEP is done, creates the file MARKER and sleeps until it
is killed."""

import os

if os.environ.get("GPTBENCH_TEST_PAUSE"):
    import time
    from pathlib import Path

    from lightning.pytorch.callbacks import Callback

    import gptbench.training.finetune as finetune

    seed, step, marker = os.environ["GPTBENCH_TEST_PAUSE"].split(":", 2)

    class PauseAt(Callback):
        def on_train_batch_end(self, trainer, *args) -> None:
            if trainer.global_step == int(step):
                Path(marker).touch()
                while True:
                    time.sleep(60)

    make_trainer = finetune.make_trainer

    def pausing_trainer(stage_dir, *args, extra_callbacks=(), **kwargs):
        if Path(stage_dir).name == f"seed{seed}":
            extra_callbacks = [*extra_callbacks, PauseAt()]
        return make_trainer(stage_dir, *args, extra_callbacks=extra_callbacks, **kwargs)

    finetune.make_trainer = pausing_trainer
