"""`edgellama bench MODEL [-p 512] [-n 128] [-t 1,2] [-r 5] [--json]` (see edgellama.bench)."""

from edgellama.bench import add_arguments, run  # noqa: F401

NAME = "bench"
HELP = "measure prompt (ppN) and generation (tgN) tokens/s like llama-bench"
