"""`edgellama run MODEL -p PROMPT`: stream a continuation of the prompt to stdout."""

from __future__ import annotations

import argparse
import sys
import time

from .. import cli
from . import _speculative

NAME = "run"
HELP = "continue a prompt, streaming the text to stdout"
DESCRIPTION = """\
Continue PROMPT with the model and stream the new text to stdout as it is generated
(the prompt itself is not repeated unless --echo). Ctrl-C stops generation."""
EPILOG = """\
examples:
  edgellama run smollm2-135m-instruct -p "The capital of France is" --temp 0
  edgellama run model.gguf -f prompt.txt -n 256 --seed 1
  echo "Once upon a time" | edgellama run model.gguf -p - -n 64
  edgellama run model.gguf --chat -p "Write a haiku about the sea"   # as a chat turn
  edgellama run model.gguf --chat -p "A person" --json-schema person.json   # valid JSON only
  edgellama run model.gguf -p "Answer:" --grammar yesno.gbnf                # GBNF or Lark grammar"""


def add_arguments(p: argparse.ArgumentParser) -> None:
    cli.add_model_argument(p)
    src = p.add_mutually_exclusive_group(required=True)
    src.add_argument("-p", "--prompt", help="the prompt text ('-' reads it from stdin)")
    src.add_argument("-f", "--file", metavar="PATH", help="read the prompt from a file")
    p.add_argument("-n", "--n-predict", type=int, default=128, metavar="N",
                   help="generate at most N tokens (default: %(default)s; -1 = until the context is full)")
    p.add_argument("--stop", action="append", default=[], metavar="TEXT",
                   help="stop before this text (repeatable)")
    p.add_argument("--echo", action="store_true", help="print the prompt before the continuation")
    p.add_argument("--chat", action="store_true",
                   help="send the prompt as one user message, formatted with the model's chat template")
    p.add_argument("--chat-format", default=None, metavar="NAME",
                   help="chat format for models without a template: chatml, llama-2, llama-3")
    shape = p.add_mutually_exclusive_group()
    shape.add_argument("--json-schema", metavar="FILE",
                       help="constrain the output to JSON valid against the JSON Schema in FILE")
    shape.add_argument("--grammar", metavar="FILE",
                       help="constrain the output to the GBNF (llama.cpp) or Lark grammar in FILE")
    p.add_argument("-v", "--verbose", action="store_true", help="print token counts and speed to stderr")
    cli.add_sampling_arguments(p)
    cli.add_context_arguments(p)
    _speculative.add_arguments(p)


def read_prompt(args: argparse.Namespace) -> str:
    if args.file is not None:
        try:
            with open(args.file, "r", encoding="utf-8") as f:
                return f.read()
        except UnicodeDecodeError as e:
            raise cli.UserError(f"{args.file}: not UTF-8 text ({e.reason} at byte {e.start})") from None
    if args.prompt == "-":
        return sys.stdin.read()
    return args.prompt


def max_tokens(n: int):
    if n == -1:
        return None
    if n <= 0:
        raise cli.UserError(f"-n/--n-predict must be positive or -1 (until the context is full), got {n}")
    return n


def load_grammar(args: argparse.Namespace):
    """--json-schema / --grammar -> a LlamaGrammar (None without either); errors name the file."""
    from ..llama_grammar import LlamaGrammar

    if args.json_schema is None and args.grammar is None:
        return None
    try:
        if args.grammar is not None:
            return LlamaGrammar.from_file(args.grammar)
        try:
            with open(args.json_schema, encoding="utf-8") as f:
                text = f.read()
        except (OSError, UnicodeDecodeError) as e:
            raise ValueError(f"cannot read JSON schema file: {getattr(e, 'strerror', None) or e}") from None
        try:
            return LlamaGrammar.from_json_schema(text)
        except ValueError as e:
            raise ValueError(f"{args.json_schema}: {e}") from None
    except ValueError as e:
        msg = str(e)
        path = args.grammar or args.json_schema
        raise cli.UserError(msg if msg.startswith(str(path)) else f"{path}: {msg}") from None


def run(args: argparse.Namespace) -> int:
    n = max_tokens(args.n_predict)
    prompt = read_prompt(args)
    grammar = load_grammar(args)  # before loading the model: a bad file fails fast
    llm = cli.load_llama(args, chat_format=args.chat_format)
    drafter = _speculative.make_drafter(args, llm)
    kw = dict(max_tokens=n, stop=args.stop or None, stream=True, **cli.sampling_kwargs(args))
    if grammar is not None:
        kw["grammar"] = grammar
    t0 = time.perf_counter()
    if args.chat:
        cli.check_chat_template(llm, args.model)
        if drafter is not None:
            text = llm.apply_chat_template([{"role": "user", "content": prompt}])
            _speculative.use_for_prompt(args, llm, drafter, len(llm.tokenize(text.encode("utf-8"), special=True)))
        chunks = llm.create_chat_completion([{"role": "user", "content": prompt}], **kw)
        texts = (c["choices"][0]["delta"].get("content", "") for c in chunks)
    else:
        if drafter is not None:
            _speculative.use_for_prompt(args, llm, drafter, len(llm.tokenize(prompt.encode("utf-8"))))
        chunks = llm.create_completion(prompt, echo=args.echo, **kw)
        texts = (c["choices"][0]["text"] for c in chunks)
    e0 = getattr(llm, "eval_count", 0)
    t_first, e_first = None, e0
    interrupted = False
    # with --echo the first chunk is the prompt's text, yielded before the prompt is evaluated:
    # the prompt phase ends at the first generated chunk
    n_echo = 1 if args.echo and not args.chat else 0
    try:
        for i, text in enumerate(texts):
            if t_first is None and i >= n_echo:
                t_first, e_first = time.perf_counter(), getattr(llm, "eval_count", 0)
            if text:
                cli.write(text)
    except KeyboardInterrupt:
        interrupted = True
    cli.write("\n")
    if args.verbose:
        t_end, e_end = time.perf_counter(), getattr(llm, "eval_count", 0)
        t_first = t_first or t_end
        n_gen, dt = e_end - e_first, t_end - t_first
        rate = f", {n_gen / dt:.1f} tokens/s" if n_gen and dt > 0 else ""
        n_prompt = e_first - e0  # less than the prompt when its start was still in the KV cache
        print(f"[prompt: {n_prompt} token{'s' * (n_prompt != 1)} evaluated in {t_first - t0:.2f} s; "
              f"generation: {n_gen} token{'s' * (n_gen != 1)} evaluated in {dt:.2f} s{rate}]", file=sys.stderr)
        st = getattr(getattr(llm, "draft_model", None), "stats", None)
        if st is not None and st.drafted:  # (evaluated tokens above include the rejected drafts)
            print(f"[speculative: {st.accepted}/{st.drafted} draft tokens accepted "
                  f"({100 * st.acceptance_rate:.0f}%) in {st.steps} verification steps]", file=sys.stderr)
    return 130 if interrupted else 0
