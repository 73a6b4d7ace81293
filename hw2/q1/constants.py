"""Question 1's names shared by the benchmark's code and its configuration (a leaf: no torch). Part of the
benchmark's code identity: the code branches on them."""

METHODS = ("softmax_naive", "softmax_sdpa", "taylor_linear", "taylor_causal")
INPUT_KINDS = ("random", "clustered", "opposite")
