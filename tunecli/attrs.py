"""The names tunecli stores on Optuna trials and studies, in one place.

Trials' user attributes are what ``optuna`` and optuna-dashboard show beside each trial, and what
``report``, ``resume`` and other workers read back, so a key is a stored format: rename one and
older studies read differently. A leaf: it imports nothing.
"""

from __future__ import annotations

__all__ = [
    "BEST_EPOCH",
    "CLAIM",
    "DEVICE",
    "ENQUEUED",
    "EPOCHS_DONE",
    "EPOCHS_RUN",
    "EPOCH_CLAIM",
    "FAIL_REASON",
    "FUSED_GROUP",
    "FUSED_WITH",
    "GRID_POINT",
    "GRID_QUEUED",
    "HISTORY",
    "INFEASIBLE",
    "INTERRUPTED",
    "LEASE",
    "LOG_FILE",
    "LOST_LEASE",
    "LOST_REASONS",
    "LOST_WORKER",
    "MEASURES",
    "OUTPUT_PROBLEMS",
    "PARAMS_COUNT",
    "PID",
    "PRUNED_BY",
    "REPLACES",
    "RETRY_OF",
    "SAMPLES_PER_SECOND",
    "SPREAD",
    "STUDY_METRIC",
    "SURPLUS",
    "THREADS",
    "TIME_LIMIT",
    "TRAIN_SECONDS",
    "WORKER",
]

# A trial's user attributes
WORKER = "worker"                    # host:pid of the process that trains it
FAIL_REASON = "fail_reason"          # why it failed; LOST_REASONS mark a trial to retry
SURPLUS = "surplus"                  # a worker's lost race: never trained, left out of reports
RETRY_OF = "retry_of"                # the first trial of this configuration (its checkpoint)
REPLACES = "replaces"                # the lost trial a retry stands in for
ENQUEUED = "enqueued"                # a configuration given with --enqueue or --from
GRID_POINT = "grid_point"            # the index of a queued grid point
HISTORY = "history"                  # every epoch's metrics
BEST_EPOCH = "best_epoch"
EPOCHS_RUN = "epochs_run"
PARAMS_COUNT = "params_count"
DEVICE = "device"
SAMPLES_PER_SECOND = "samples_per_second"
THREADS = "threads"                # CPU threads it trained with (trainer/threads.py)
TRAIN_SECONDS = "train_seconds"
LOG_FILE = "log_file"                # a command trial's output, everything but its metrics
PID = "pid"                          # a command trial's process
OUTPUT_PROBLEMS = "output_problems"  # lines of a command's output that were not metrics JSON
SPREAD = "spread"                    # trainer.repeats / cv: each run's value and the spread
FUSED_GROUP = "fused_group"          # a fused group's first trial
FUSED_WITH = "fused_with"            # the trials it trained alongside
EPOCH_CLAIM = "epoch_claim"          # budget.epochs: the epochs it may train
EPOCHS_DONE = "epochs_done"          # multi-objective trials cannot report: their epoch count
MEASURES = "measures"                # params, FLOPs, latency measured before training
INFEASIBLE = "infeasible"            # broke a constraint before training: why
PRUNED_BY = "pruned_by"              # multi-objective pruning: the trials that dominated it

# A trial's system attributes
LEASE = "tunecli:lease"              # {"beat": n, "every": s}: renewed while it trains
CLAIM = "tunecli:claim"              # the token its creation carried (a retried create finds it)

# A study's user attributes
STUDY_METRIC = "tunecli:metric"
GRID_QUEUED = "tunecli:grid_queued"  # the grid's points are in the queue

# How a lost trial's FAIL_REASON begins: its process stopped, not its configuration failed
INTERRUPTED = "interrupted"
TIME_LIMIT = "interrupted: the time limit was reached"
LOST_WORKER = "lost: its worker process ended"
LOST_LEASE = "lost: its machine stopped renewing the trial's lease"
LOST_REASONS = ("lost", INTERRUPTED)
