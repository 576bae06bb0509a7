"""`edgellama chat MODEL`: an interactive multi-turn conversation (or one turn per stdin line)."""

from __future__ import annotations

import argparse
import sys
from typing import Any, Dict, List

from .. import cli
from . import _speculative

NAME = "chat"
HELP = "talk with a chat model (interactive, or one turn per line of piped stdin)"
DESCRIPTION = """\
Talk with a chat model. The conversation is formatted with the model's own chat template
(or --chat-format for files without one) and kept in the KV cache, so each turn only
evaluates the new text.

At the "> " prompt: type a message and press Enter (arrow keys edit the line and recall
earlier ones). Ctrl-C stops an answer and returns to the prompt; Ctrl-C at the prompt,
Ctrl-D (end of input) or /exit leaves. /reset forgets the conversation, /help lists the
commands; a line starting with "/" is never sent to the model (write "//" to send one that
starts with "/"). When stdin is not a terminal, every line is one user turn and only the
answers are printed, each followed by a newline."""

# The "/" commands of the prompt: name -> what it does (the one table /help prints)
COMMANDS = {
    "/help": "list these commands",
    "/reset": "forget the conversation (keeps --system)",
    "/exit": "leave (also /quit, /bye, Ctrl-D)",
}
_EXIT = ("/exit", "/quit", "/bye")
EPILOG = """\
examples:
  edgellama chat smollm2-135m-instruct
  edgellama chat model.gguf --system "Answer in French." --temp 0.3
  printf 'Hi!\\nWhat is 2+2?\\n' | edgellama chat smollm2-135m-instruct --temp 0"""


def add_arguments(p: argparse.ArgumentParser) -> None:
    cli.add_model_argument(p)
    p.add_argument("--system", metavar="TEXT", help="system prompt that opens the conversation")
    p.add_argument("-n", "--n-predict", type=int, default=-1, metavar="N",
                   help="at most N tokens per answer (default: -1 = until the model ends its turn)")
    p.add_argument("--chat-format", default=None, metavar="NAME",
                   help="for models without a chat template: chatml, llama-2, llama-3 or mistral-instruct")
    cli.add_sampling_arguments(p, temp=0.7)
    cli.add_context_arguments(p)
    _speculative.add_arguments(p)


class _Session:
    def __init__(self, llm: Any, args: argparse.Namespace):
        self.llm = llm
        self.args = args
        self.drafter = _speculative.make_drafter(args, llm)
        self.system: List[Dict[str, str]] = [{"role": "system", "content": args.system}] if args.system else []
        self.turns: List[Dict[str, str]] = []

    def messages(self) -> List[Dict[str, str]]:
        return self.system + self.turns

    def _prompt_len(self) -> int:
        text = self.llm.apply_chat_template(self.messages())
        return len(self.llm.tokenize(text.encode("utf-8"), add_bos=False, special=True))

    def _fit(self) -> None:
        """Drop the oldest exchanges until the prompt leaves room for an answer."""
        n_ctx = self.llm.n_ctx()
        reserve = min(self.args.n_predict if self.args.n_predict > 0 else 512, n_ctx // 4)
        dropped = 0
        while self._prompt_len() > n_ctx - reserve and len(self.turns) > 1:
            self.turns.pop(0)
            while self.turns and self.turns[0]["role"] != "user":
                self.turns.pop(0)
            dropped += 1
        if dropped:
            print(f"[context full: forgot the oldest {dropped} message(s)]", file=sys.stderr)

    def answer(self, text: str, out: Any) -> bool:
        """Stream the answer to ``text``; False when it was interrupted with Ctrl-C."""
        self.turns.append({"role": "user", "content": text})
        self._fit()
        if self.drafter is not None:
            _speculative.use_for_prompt(self.args, self.llm, self.drafter, self._prompt_len())
        n = self.args.n_predict
        try:
            chunks = self.llm.create_chat_completion(
                self.messages(), stream=True, max_tokens=None if n <= 0 else n, **cli.sampling_kwargs(self.args))
        except ValueError:
            self.turns.pop()  # e.g. a single message longer than the context: forget it
            raise
        answer = ""
        done = True
        try:
            for c in chunks:
                piece = c["choices"][0]["delta"].get("content", "")
                if piece:
                    answer += piece
                    cli.write(piece, out)
        except KeyboardInterrupt:
            done = False
            cli.write(" [stopped]", out)
        cli.write("\n", out)
        # what the user saw is what the model said: keep it for the next turn
        self.turns.append({"role": "assistant", "content": answer})
        return done


def run(args: argparse.Namespace) -> int:
    if args.n_predict == 0 or args.n_predict < -1:
        raise cli.UserError(f"-n/--n-predict must be positive or -1, got {args.n_predict}")
    llm = cli.load_llama(args, chat_format=args.chat_format)
    session = _Session(llm, args)
    cli.check_chat_template(llm, args.model)
    interactive = sys.stdin.isatty()
    if interactive:
        try:  # line editing and history for input(); absent on some platforms, chat works without
            import readline  # noqa: F401
        except ImportError:
            pass
        print(f"Chatting with {args.model}. Ctrl-C stops an answer; Ctrl-D, /exit or Ctrl-C at the prompt "
              "leaves; /reset forgets the conversation.", file=sys.stderr)
    while True:
        try:
            line = input("> ") if interactive else sys.stdin.readline()
        except EOFError:
            if interactive:
                print(file=sys.stderr)
            return 0
        except KeyboardInterrupt:
            print(file=sys.stderr)
            return 0
        if not interactive and line == "":
            return 0  # end of piped input
        text = line.rstrip("\r\n")
        cmd = text.strip()
        if not cmd:
            continue
        if cmd in _EXIT:
            return 0
        if cmd == "/reset":
            session.turns.clear()
            print("[conversation cleared]", file=sys.stderr)
            continue
        if cmd == "/help":
            for name, what in COMMANDS.items():
                print(f"  {name:8} {what}", file=sys.stderr)
            continue
        if cmd.startswith("//"):
            text = text.replace("//", "/", 1)  # an escaped message that starts with "/"
        elif cmd.startswith("/"):
            print(f"[unknown command {cmd.split()[0]}; /help lists the commands, // sends a line starting "
                  "with /]", file=sys.stderr)
            continue
        try:
            session.answer(text, sys.stdout)
        except ValueError as e:
            print(f"{cli.PROG}: error: {e}", file=sys.stderr)
            if not interactive:
                return 1
