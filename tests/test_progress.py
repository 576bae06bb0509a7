"""progress.py: a bar on a terminal, whole lines elsewhere (issue 12: logs full of \\r redraws)."""

import io

from edgellama.progress import LineProgress, progress_bar


class _Tty(io.StringIO):
    def isatty(self):
        return True


def test_not_a_terminal_gives_lines_at_most_every_tenth():
    out = io.StringIO()
    with progress_bar(200, "tensors", unit="tensor", file=out) as bar:
        assert isinstance(bar, LineProgress)
        for _ in range(200):
            bar.update(1)
    lines = out.getvalue().splitlines()
    assert "\r" not in out.getvalue()
    assert lines[0] == "tensors: 10% (20 tensor of 200 tensor)"
    assert lines[-1] == "tensors: 100% (200 tensor of 200 tensor)"
    assert len(lines) == 10


def test_a_terminal_gets_tqdm_and_disabled_prints_nothing():
    tty = _Tty()
    bar = progress_bar(10, "x", file=tty)
    assert type(bar).__name__ == "tqdm"
    bar.close()
    quiet = io.StringIO()
    with progress_bar(10, "x", enabled=False, file=quiet) as b:
        b.update(10)
    assert quiet.getvalue() == ""


def test_byte_counts_are_scaled():
    out = io.StringIO()
    with progress_bar(4 << 20, "model.gguf", unit="B", file=out, unit_scale=True) as bar:
        bar.update(4 << 20)
    assert out.getvalue().splitlines()[-1] == "model.gguf: 100% (4.0 MiB of 4.0 MiB)"
