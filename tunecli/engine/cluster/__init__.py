"""Many processes and machines: local worker processes and SLURM / Kubernetes launch files."""
