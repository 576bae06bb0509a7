"""The ``edgellama`` command. Sub-commands are the modules of :mod:`edgellama.commands`, found with
pkgutil: adding a command is adding a file there (see that package's docstring).

Errors a user can fix (a missing file, a bad option, a download that failed) print one line on stderr
and exit with status 1; ``EDGELLAMA_DEBUG=1`` shows the traceback instead. Ctrl-C exits with 130.
"""

from __future__ import annotations

import argparse
import importlib
import os
import pkgutil
import sys
import traceback
from types import ModuleType
from typing import Any, List, Optional, Sequence

PROG = "edgellama"

DESCRIPTION = """\
Run LLaMA-family language models (GGUF files) on the CPU.

MODEL, wherever a command takes one, is a path to a .gguf file or a name pulled
with `edgellama pull` (the built-in names are downloaded on first use)."""

EPILOG = """\
getting started:
  edgellama pull smollm2-135m-instruct       download a small chat model (98 MB)
  edgellama run smollm2-135m-instruct -p "The capital of France is" -n 32
  edgellama chat smollm2-135m-instruct       talk to it (Ctrl-D to quit)
  edgellama info smollm2-135m-instruct       what is inside the file

Run `edgellama COMMAND --help` for the options of one command.
Environment: EDGELLAMA_CACHE (where models are pulled to), EDGELLAMA_DEBUG=1 (tracebacks)."""

# commands listed first in --help, in this order; the others follow alphabetically
_ORDER = ["run", "chat", "pull", "info"]


class UserError(Exception):
    """An error whose message tells the user what to do; printed without a traceback."""


def _user_error_types() -> tuple:
    from . import _core
    from .hub import HubError

    return (UserError, HubError, ValueError, OSError, UnicodeError, _core.GGUFError, _core.UnsupportedError)


def discover_commands(only: Optional[str] = None) -> List[ModuleType]:
    """Every module of edgellama.commands that defines NAME, HELP, add_arguments and run (with
    `only`, the module of that name alone when there is one). A module that fails to import becomes
    a command that reports the import error when used."""
    from . import commands as pkg

    names = [info.name for info in pkgutil.iter_modules(pkg.__path__) if not info.name.startswith("_")]
    if only in names:
        names = [only]
    found: List[ModuleType] = []
    for name in names:
        try:
            mod = importlib.import_module(f"{pkg.__name__}.{name}")
        except Exception as e:  # one broken command must not take the others down
            mod = _broken_command(name, e)
        if all(hasattr(mod, a) for a in ("NAME", "HELP", "add_arguments", "run")):
            found.append(mod)

    def key(m: ModuleType):
        return (_ORDER.index(m.NAME) if m.NAME in _ORDER else len(_ORDER), m.NAME)

    return sorted(found, key=key)


def _broken_command(name: str, err: BaseException) -> ModuleType:
    mod = ModuleType(name)
    mod.NAME = name  # type: ignore[attr-defined]
    mod.HELP = f"(unavailable: {type(err).__name__}: {err})"  # type: ignore[attr-defined]
    mod.add_arguments = lambda p: p.add_argument("rest", nargs=argparse.REMAINDER)  # type: ignore[attr-defined]

    def run(args: Any) -> int:
        raise UserError(f"the '{name}' command could not be loaded: {type(err).__name__}: {err}")

    mod.run = run  # type: ignore[attr-defined]
    return mod


def build_parser(only: Optional[str] = None) -> argparse.ArgumentParser:
    """The parser of every command, or (`only`) of the command of that name alone: running one
    command then imports (and, without cached bytecode, compiles) none of the others' modules."""
    from . import __version__

    parser = argparse.ArgumentParser(prog=PROG, description=DESCRIPTION, epilog=EPILOG,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    sub = parser.add_subparsers(title="commands", metavar="COMMAND")
    for mod in discover_commands(only):
        p = sub.add_parser(mod.NAME, help=mod.HELP, description=getattr(mod, "DESCRIPTION", None) or mod.HELP,
                           epilog=getattr(mod, "EPILOG", None), formatter_class=argparse.RawDescriptionHelpFormatter)
        mod.add_arguments(p)
        p.set_defaults(_command=mod)
    return parser


def main(argv: Optional[Sequence[str]] = None) -> int:
    """Entry point of the ``edgellama`` console script; returns the exit status."""
    for stream in (sys.stdout, sys.stderr):
        try:  # a terminal or pipe without UTF-8 must not kill a stream of model output
            stream.reconfigure(errors="replace")  # type: ignore[attr-defined]
        except Exception:
            pass
    args_list = list(sys.argv[1:] if argv is None else argv)
    # the command named first (edgellama COMMAND ...): only its module is loaded
    parser = build_parser(args_list[0] if args_list and not args_list[0].startswith("-") else None)
    args = parser.parse_args(args_list)
    mod = getattr(args, "_command", None)
    if mod is None:
        parser.print_help()
        return 2
    debug = bool(os.environ.get("EDGELLAMA_DEBUG"))
    try:
        return int(mod.run(args) or 0)
    except KeyboardInterrupt:
        print(file=sys.stderr)
        return 130
    except BrokenPipeError:  # `edgellama run ... | head`
        try:
            sys.stdout = open(os.devnull, "w")
        except OSError:
            pass
        return 0
    except Exception as e:
        if debug:
            traceback.print_exc()
            return 1
        if isinstance(e, _user_error_types()):
            msg = str(e) or type(e).__name__
            if isinstance(e, FileNotFoundError) and e.filename and str(e.filename) not in msg:
                msg = f"{e.filename}: {msg}"
        else:
            msg = f"{type(e).__name__}: {e} (this is a bug; EDGELLAMA_DEBUG=1 shows the traceback)"
        print(f"{PROG}: error: {' '.join(msg.split())}", file=sys.stderr)
        return 1


# ---------------------------------------------------------------------------------------------
# helpers shared by the commands
# ---------------------------------------------------------------------------------------------


def add_model_argument(p: argparse.ArgumentParser) -> None:
    p.add_argument("model", metavar="MODEL", help="a .gguf file, or a model name (pulled on first use for the "
                   "built-in names), hf://OWNER/REPO/FILE.gguf or a URL pulled with `edgellama pull`")


def add_context_arguments(p: argparse.ArgumentParser) -> None:
    g = p.add_argument_group("model")
    g.add_argument("-c", "--ctx-size", type=int, default=2048, metavar="N",
                   help="context window in tokens (default: %(default)s; 0 = the model's training context)")
    g.add_argument("-t", "--threads", type=int, default=None, metavar="N",
                   help="CPU threads (default: the number of physical cores)")


def add_sampling_arguments(p: argparse.ArgumentParser, temp: float = 0.8) -> None:
    g = p.add_argument_group("sampling")
    g.add_argument("--temp", type=float, default=temp, metavar="T",
                   help="temperature; 0 = greedy, always the most likely token (default: %(default)s)")
    g.add_argument("--top-k", type=int, default=40, metavar="K",
                   help="sample from the K most likely tokens; 0 = all (default: %(default)s)")
    g.add_argument("--top-p", type=float, default=0.95, metavar="P",
                   help="nucleus sampling: the smallest set with probability >= P (default: %(default)s)")
    g.add_argument("--min-p", type=float, default=0.05, metavar="P",
                   help="drop tokens less likely than P x the most likely one (default: %(default)s)")
    g.add_argument("--repeat-penalty", type=float, default=1.0, metavar="R",
                   help="penalize tokens seen in the last 64; 1.0 = off (default: %(default)s)")
    g.add_argument("--seed", type=int, default=None, metavar="S",
                   help="random seed, for reproducible sampling (default: random)")


def sampling_kwargs(args: argparse.Namespace) -> dict:
    return dict(temperature=args.temp, top_k=args.top_k, top_p=args.top_p, min_p=args.min_p,
                repeat_penalty=args.repeat_penalty, seed=args.seed)


def resolve_model_arg(name: str) -> str:
    """A path for MODEL (see model_ref.py); built-in names not pulled yet are pulled now (with a
    progress bar). A missing path is "model file not found"."""
    from . import hub
    from .model_ref import locate_model, looks_like_path

    if not looks_like_path(name) and name in hub.MODELS and not hub.model_path(name).is_file():
        print(f"{PROG}: {name} is not in {hub.cache_dir()} yet; pulling it", file=sys.stderr)
        return str(hub.pull(name))
    return str(locate_model(name))


def load_llama(args: argparse.Namespace, **kwargs: Any):
    """Llama for the command's MODEL, -c and -t (tests replace this function)."""
    from .llama import Llama

    if args.ctx_size < 0:
        raise UserError(f"--ctx-size must be >= 0, got {args.ctx_size}")
    if args.threads is not None and args.threads <= 0:
        raise UserError(f"--threads must be positive, got {args.threads}")
    path = resolve_model_arg(args.model)
    # -c 0 = the context the model was trained with, as Llama(n_ctx=0) (and llama.cpp's -c 0)
    return Llama(path, n_ctx=args.ctx_size, n_threads=args.threads, **kwargs)


def check_chat_template(llm: Any, model: str) -> None:
    """Render a one-message conversation so that a missing or broken template is reported before
    the first turn, with the command-line option that fixes it."""
    try:
        llm.apply_chat_template([{"role": "user", "content": "x"}])
    except ValueError as e:
        if "no chat template" in str(e):
            raise UserError(f"{model} has no chat template; choose a format with "
                            "--chat-format chatml|llama-2|llama-3|mistral-instruct") from None
        raise


def write(text: str, stream: Any = None) -> None:
    stream = stream or sys.stdout
    stream.write(text)
    stream.flush()


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
