"""Run llama.cpp's own convert_hf_to_gguf.py (from the llama-cpp-python sdist) on several Hugging Face
directories in one process (importing torch + the converter once costs seconds).

    python tests/llamacpp_convert.py LLAMA_CPP_DIR HF_DIR=OUT.gguf:OUTTYPE [HF_DIR=OUT.gguf:OUTTYPE ...]

OUTTYPE is the converter's --outtype (f32, f16, q8_0, ...).

The tiny test tokenizers are trained here, so their pre-tokenizer hash is not in the converter's list of
known hub tokenizers (get_vocab_base_pre raises for unknown hashes). We answer "qwen2" (a GPT-2-style
byte-level pre-tokenizer both llama.cpp and edgellama know) for them; everything else — tensor names,
metadata, norm shifts, permutations — is the converter's own code, which is what the tests check.
"""

from __future__ import annotations

import runpy
import sys
from pathlib import Path


def main(argv) -> int:
    llama_cpp = Path(argv[1])
    sys.path.insert(0, str(llama_cpp))
    sys.path.insert(1, str(llama_cpp / "gguf-py"))
    import conversion.base as base  # noqa: E402  (the converter's package)

    base.TextModel.get_vocab_base_pre = lambda self, tokenizer: "qwen2"
    script = str(llama_cpp / "convert_hf_to_gguf.py")
    for pair in argv[2:]:
        hf_dir, rest = pair.split("=", 1)
        out, outtype = rest.rsplit(":", 1)
        sys.argv = [script, hf_dir, "--outtype", outtype, "--outfile", out]
        try:
            runpy.run_path(script, run_name="__main__")
        except SystemExit as e:
            if e.code not in (0, None):
                print(f"llamacpp_convert: {hf_dir}: converter exited with {e.code}", file=sys.stderr)
                return 1
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
