"""torchrun entry point for test_elastic.py: ``personsearch train`` with the toy model and method
of tests/toys.py, plus an injected fault and a dump of each rank's state.

Environment:
  ELASTIC_TEST_KILL_RANK, ELASTIC_TEST_KILL_ITERATION: in the first attempt of the worker group
      (TORCHELASTIC_RESTART_COUNT 0), that rank SIGKILLs itself just before that training
      iteration (a process lost mid-epoch: no exception, no clean-up).
At the end of training each rank writes its memory bank, pseudo labels and parameters to
``<out>/rank<RANK>.pt``.
"""

from __future__ import annotations

import os
import signal
import sys
from pathlib import Path

import torch

from toys import install_toys

from personsearch.cli.main import main
from personsearch.comm import unwrap_model
from personsearch.engine.trainer import Trainer


def install() -> None:
    install_toys(setattr)
    kill_rank = int(os.environ.get("ELASTIC_TEST_KILL_RANK", "-1"))
    kill_iteration = int(os.environ.get("ELASTIC_TEST_KILL_ITERATION", "-1"))
    first_attempt = os.environ.get("TORCHELASTIC_RESTART_COUNT", "0") == "0"
    step, train = Trainer._step, Trainer.train

    def faulty_step(self, batch):
        if first_attempt and self.dist.rank == kill_rank and self.iteration == kill_iteration:
            os.kill(os.getpid(), signal.SIGKILL)
        return step(self, batch)

    def dumping_train(self, resume=False):
        result = train(self, resume)
        torch.save({"memory": self.method.memory, "labels": self.method.labels,
                    "params": {k: v.detach() for k, v in
                               unwrap_model(self.model).named_parameters()},
                    "iteration": self.iteration},
                   Path(self.out_dir) / f"rank{self.dist.rank}.pt")
        return result

    Trainer._step, Trainer.train = faulty_step, dumping_train


if __name__ == "__main__":
    install()
    sys.exit(main(sys.argv[1:]))
