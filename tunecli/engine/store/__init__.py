"""Where trials are kept: storages, the gRPC proxy, lost trials, Optuna's fenced private names."""
