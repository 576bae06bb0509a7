"""`edgellama pull NAME|URL`: download a model into the local cache."""

from __future__ import annotations

import argparse
import sys

NAME = "pull"
HELP = "download a model into the local cache"
DESCRIPTION = """\
Download a model into the cache directory ($EDGELLAMA_CACHE, else $XDG_CACHE_HOME/edgellama,
else ~/.cache/edgellama) and print its path. The file appears there only when it is complete
and its sha256 checks out; an interrupted download leaves nothing behind.

SOURCE is one of:
  a built-in name         see --list
  hf://OWNER/REPO/FILE    a file of a Hugging Face repository (hf://OWNER/REPO@REV/FILE for a
                          branch or commit; HF_TOKEN is sent for gated models)
  https://... or http://  any URL"""
EPILOG = """\
examples:
  edgellama pull smollm2-135m-instruct
  edgellama pull hf://bartowski/SmolLM2-360M-Instruct-GGUF/SmolLM2-360M-Instruct-Q4_K_M.gguf
  edgellama pull https://example.com/model.gguf --sha256 0123...ef"""


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("source", metavar="SOURCE", nargs="?", help="built-in name, hf://OWNER/REPO/FILE or URL")
    p.add_argument("--list", action="store_true", help="list the built-in names and the pulled files")
    p.add_argument("--sha256", metavar="HEX", help="expected sha256 of the file (URLs and hf://)")
    p.add_argument("--force", action="store_true", help="download again even if the file is already there")
    p.add_argument("-q", "--quiet", action="store_true", help="no progress bar")


def run(args: argparse.Namespace) -> int:
    from .. import hub  # here, not at import: every command's start-up imports this module (http, ssl)

    if args.list:
        print("built-in names:")
        for m in hub.MODELS.values():
            mark = "pulled" if hub.model_path(m.name).is_file() else "      "
            print(f"  {m.name:28s} {mark}  {m.description}")
        pulled = hub.list_pulled()
        print(f"pulled files in {hub.cache_dir()}:" if pulled else f"nothing pulled into {hub.cache_dir()} yet")
        for p in pulled:
            print(f"  {p}  ({p.stat().st_size / 1e6:.1f} MB)")
        return 0
    if not args.source:
        raise hub.HubError("pull needs a SOURCE (a built-in name, hf://OWNER/REPO/FILE or a URL); "
                           "`edgellama pull --list` shows the built-in names")
    existed = hub.model_path(args.source).is_file()
    path = hub.pull(args.source, force=args.force, sha256=args.sha256, progress=not args.quiet)
    if existed and not args.force:
        print("already pulled (use --force to download again)", file=sys.stderr)
    print(path)
    return 0
