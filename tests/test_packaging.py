"""Package metadata a user checks first: the LICENSE file is the license pyproject declares."""

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def test_license_file_matches_the_metadata():
    meta = (ROOT / "pyproject.toml").read_text()
    declared = re.search(r'^license\s*=\s*\{\s*text\s*=\s*"([^"]+)"', meta, flags=re.M).group(1)
    text = (ROOT / "LICENSE").read_text()
    assert declared == "MIT"
    assert text.startswith("MIT License\n")
    assert "Permission is hereby granted, free of charge" in text
