#!/usr/bin/env bash
# Many machines, one study: a SLURM array job where every task is a tunecli worker.
#   sbatch --array=0-7 examples/slurm_array.sh studies/cifar10.yaml
# Every task joins the same PostgreSQL study; the study ends with exactly budget.n_trials
# finished trials however many tasks run. SLURM sends SIGTERM before killing a task: tunecli marks
# the running trial, and any later task (or `tunecli resume NAME`) retries it from its checkpoint.
#SBATCH --job-name=tunecli
#SBATCH --gres=gpu:1
#SBATCH --cpus-per-task=8
#SBATCH --time=04:00:00
#SBATCH --signal=TERM@120
set -euo pipefail
STUDY_FILE=${1:?usage: sbatch --array=0-N examples/slurm_array.sh STUDY.yaml}
export TUNECLI_STORAGE=${TUNECLI_STORAGE:?set TUNECLI_STORAGE=postgresql://user:pass@host/db}
export TUNECLI_DATA=${TUNECLI_DATA:-$HOME/data}
# `search` creates the study if it is new and joins it otherwise (the spec must match).
exec tunecli search "$STUDY_FILE" --keep-checkpoints best
