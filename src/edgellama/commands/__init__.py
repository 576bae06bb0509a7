"""Sub-commands of the `edgellama` command, one module each.

Every module in this package defines:
    NAME: str                       # the sub-command, e.g. "quantize"
    HELP: str                       # one line for `edgellama --help`
    def add_arguments(parser): ...  # argparse arguments of the sub-command
    def run(args) -> int: ...       # exit status
edgellama.cli discovers them with pkgutil, so adding a command is adding a file.
"""
