"""Tools around the runs: the step-time benchmark, the time estimate of a target, the environment
check, and the GPU acceptance check with its prepared one-call experiments."""
