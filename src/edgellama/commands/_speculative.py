"""Speculative-decoding options shared by `edgellama run` and `edgellama chat` (not a command itself:
the leading underscore keeps it out of command discovery).

By default (``--draft auto``) prompt lookup is used when the prompt is long enough to hold
candidates: the output is the same, only faster when the answer copies from the prompt, and the
verify loop backs off when drafts fail (see edgellama.speculative)."""

from __future__ import annotations

import argparse
from typing import Any, Optional

from .. import cli

# Below this many prompt tokens there is rarely anything to look up.
MIN_LOOKUP_PROMPT_TOKENS = 24


def add_arguments(p: argparse.ArgumentParser) -> None:
    g = p.add_argument_group("speculative decoding (same output, faster when the answer copies the prompt)")
    g.add_argument("--draft", choices=["auto", "lookup", "none"], default="auto",
                   help="draft source: prompt lookup when the prompt has at least "
                        f"{MIN_LOOKUP_PROMPT_TOKENS} tokens (auto, the default), always (lookup), or off (none)")
    g.add_argument("--no-spec", action="store_true", help="turn speculative decoding off (= --draft none)")
    g.add_argument("--draft-model", metavar="PATH", default=None,
                   help="draft with this small GGUF model (same vocabulary) instead of prompt lookup")
    g.add_argument("--draft-max", type=int, default=10, metavar="N",
                   help="at most N draft tokens per step (default: %(default)s)")


def make_drafter(args: argparse.Namespace, llm: Any) -> Optional[Any]:
    """The drafter the options ask for, or None; loaded once per command."""
    from ..llama_speculative import LlamaDraftModel, LlamaPromptLookupDecoding

    if args.draft_max <= 0:
        raise cli.UserError(f"--draft-max must be positive, got {args.draft_max}")
    if args.no_spec or args.draft == "none":
        if args.draft_model:
            raise cli.UserError("--draft-model cannot be combined with --no-spec / --draft none")
        return None
    if args.draft_model:
        path = cli.resolve_model_arg(args.draft_model)
        threads = getattr(args, "threads", None)
        return LlamaDraftModel(path, n_draft=args.draft_max, n_ctx=llm.n_ctx(), n_threads=threads)
    return LlamaPromptLookupDecoding(max_ngram_size=3, num_pred_tokens=args.draft_max)


def use_for_prompt(args: argparse.Namespace, llm: Any, drafter: Optional[Any], n_prompt_tokens: int) -> None:
    """Attach ``drafter`` to ``llm`` for a prompt of ``n_prompt_tokens`` tokens (auto: prompt lookup
    only when the prompt is long enough; a draft model always)."""
    if drafter is not None and args.draft == "auto" and not args.draft_model \
            and n_prompt_tokens < MIN_LOOKUP_PROMPT_TOKENS:
        drafter = None
    llm.draft_model = drafter
