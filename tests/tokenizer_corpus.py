"""Deterministic corpus for the tokenizer equality tests: hand-written lines covering the hard cases
(scripts, emoji ZWJ sequences, whitespace runs, contractions, digits, code, punctuation) plus
seeded random mixtures of them. `corpus()` returns > 1,000 distinct str lines, '' included."""

from __future__ import annotations

import random

BASE_LINES = [
    "",
    " ",
    "  ",
    "\t",
    "\n",
    "\n\n",
    "\r\n",
    " \n ",
    "Hello world",
    "Hello, world!",
    " Hello world",
    "Hello world ",
    "   leading and trailing spaces   ",
    "multiple   internal    spaces and\ttabs\t\there",
    "line one\nline two\n\nline four\r\nline five",
    "I'm sure they'll say it's fine, don't you think? We've seen it, I'd say.",
    "I'M SURE THEY'LL SAY IT'S FINE; WE'VE SEEN IT, YOU'RE RIGHT, I'D SAY",
    "'s 't 're 've 'm 'll 'd 'x '' ''' 'S 'T 'RE 'Ve 'LL",
    "The quick brown fox jumps over the lazy dog.",
    "Pack my box with five dozen liquor jugs!",
    "Café naïve résumé façade Ångström coöperate jalapeño São Paulo Zürich",
    "Straße, Œuvre, Æsir, Łódź, Dvořák, Škoda, Ørsted, İstanbul, ı",
    "é (e + combining acute) vs é precomposed",
    "你好，世界！这是一个测试。",
    "我们今天去公园散步，天气非常好，阳光明媚。",
    "日本語のテキストとカタカナ、ひらがな。東京タワーに行きました！",
    "これはペンです。ｶﾀｶﾅ半角もあります。",
    "한국어 텍스트입니다. 안녕하세요, 만나서 반갑습니다!",
    "Привет, мир! Съешь же ещё этих мягких французских булок.",
    "Україна, Беларусь, България — кирилиця",
    "مرحبا بالعالم! هذه جملة عربية للاختبار.",
    "שלום עולם, זה מבחן בעברית.",
    "नमस्ते दुनिया, यह एक परीक्षण है। हिन्दी",
    "Γειά σου Κόσμε! Ελληνικά κείμενα.",
    "สวัสดีชาวโลก ภาษาไทย",
    "Tiếng Việt có dấu: Xin chào thế giới",
    "Emoji: 😀😃😄 👍🏽 🇺🇸🇯🇵 ❤️ ✨",
    "Family: 👨‍👩‍👧‍👦 and 👩🏽‍💻 and 🏳️‍🌈 and 🧑‍🤝‍🧑",
    "Mixed 😀text😀 with emoji👍inside",
    "Numbers 12345 and 3.14159 and 1,000,000 and -42 and 1e-9",
    "12345678901234567890123456789012345678901234567890",
    "0 00 000 0000 00000 000000 0000000",
    "Phone: +1 (555) 123-4567, ZIP 90210, year 2024, 3rd 21st 100th",
    "Arabic-Indic digits ٠١٢٣٤٥٦٧٨٩ and Devanagari ०१२३ and fullwidth １２３",
    "Roman numerals Ⅻ Ⅳ and fractions ½ ¾ and superscripts x² y³",
    "Punctuation!!! ??? ... --- (parens) [brackets] {braces} <angles>",
    "!@#$%^&*()_+-=[]{}|;':\",./<>?`~",
    "...!!!???,,,;;;:::---___+++===|||\\\\\\///",
    "“Smart quotes” and ‘single’ — em dash – en dash … ellipsis",
    "def foo(x):\n    return x ** 2  # comment\n",
    "int main(void) {\n\tprintf(\"%d\\n\", 42);\n\treturn 0;\n}",
    "for (let i = 0; i < arr.length; ++i) { sum += arr[i]; }",
    "<div class=\"container\"><p>Hello &amp; welcome</p></div>",
    "SELECT * FROM users WHERE id = 42 AND name LIKE '%bob%';",
    "{\"key\": \"value\", \"list\": [1, 2, 3], \"nested\": {\"a\": null}}",
    "https://example.com/path?query=1&other=two#fragment",
    "user.name+tag@example.co.uk",
    "snake_case_variable camelCaseVariable PascalCase SCREAMING_CASE kebab-case",
    "    indented with four spaces",
    "\tindented with a tab",
    "trailing newline\n",
    "trailing spaces    ",
    "a\u00a0non-breaking\u00a0space and\u2003em space and\u3000ideographic space",
    "zero\u200bwidth\u200cjoiner\u200dstuff\ufeffbom",
    "Apples are りんご 林檎 and 苹果 and 사과 and яблоко",
    "ABC123def456GHI789",
    "x=1;y=22;z=333;w=4444",
    "▁already▁has▁marks ▁",
    "Ġ and Ċ are GPT-2 byte images",
    "tab\there\tand\tthere",
    "mixed \t \n \r\n whitespace \t\t\n\n  end",
    "a  b   c    d     e",
    "?!",
    "a",
    "I",
    "😀",
    "1",
    "'",
    "\u00ad soft hyphen",
    "Ｆｕｌｌｗｉｄｔｈ ｌａｔｉｎ",
    "ﬁ ﬂ ligatures and Ｋ ℃ ™ symbols",
    "Math: ∀x∈ℝ, x² ≥ 0; ∑ᵢ aᵢ = ∫ f(x) dx ≈ π ≠ ∞",
    "Currency: $100 €200 £300 ¥400 ₹500 ₿0.01",
    "Box drawing: ┌─┐│└─┘ and arrows ← → ↑ ↓ ⇒",
    "Music 𝄞 and math 𝔸𝔹ℂ and old italic 𐌀𐌁",
]

WORDS = [
    "the", "of", "and", "to", "in", "is", "you", "that", "it", "he", "was", "for", "on", "are", "with",
    "they", "be", "at", "one", "have", "this", "from", "or", "had", "by", "hot", "word", "but", "what",
    "tokenizer", "unbelievable", "antidisestablishmentarianism", "GGUF", "llama", "SentencePiece",
    "I'm", "they'll", "don't", "it's", "we've", "you're", "she'd", "O'Neil", "rock'n'roll",
    "naïve", "café", "Müller", "Ñandú", "façade", "niño", "smörgåsbord",
    "你好", "世界", "中文", "測試", "日本語", "カタカナ", "ひらがな", "한국어", "안녕",
    "Привет", "мир", "مرحبا", "שלום", "नमस्ते", "Ελληνικά", "ภาษาไทย",
    "😀", "👍🏽", "👨‍👩‍👧", "🇫🇷", "❤️", "🔥🔥",
    "42", "3.14", "1000000", "2024-01-01", "0x1F", "1e10", "007", "٣", "１２",
    "foo()", "a[i]", "x->y", "#include", "<br/>", "&&", "||", "!=", "==", "::", "...", "--",
    "\"quoted\"", "(paren)", "[brack]", "{brace}", "end.", "why?", "wow!",
]

SEPARATORS = [" ", " ", " ", "  ", "   ", "\t", "\n", "\n\n", "\r\n", " \n", "", ", ", ". ", "-", "_", "/"]


def corpus(n_random: int = 1100, seed: int = 1234) -> list[str]:
    rng = random.Random(seed)
    lines: list[str] = list(BASE_LINES)
    seen = set(lines)
    while len(lines) < len(BASE_LINES) + n_random:
        n = rng.randint(1, 14)
        parts = []
        if rng.random() < 0.15:
            parts.append(rng.choice(["", " ", "  ", "\t", "\n", "   "]))
        for i in range(n):
            if i:
                parts.append(rng.choice(SEPARATORS))
            w = rng.choice(WORDS)
            r = rng.random()
            if r < 0.08:
                w = w.upper()
            elif r < 0.14:
                w = w.capitalize()
            elif r < 0.18:
                w = str(rng.randint(0, 10 ** rng.randint(1, 15)))
            parts.append(w)
        if rng.random() < 0.15:
            parts.append(rng.choice([" ", "  ", "\n", ".", "!", " \t", "\n\n"]))
        line = "".join(parts)
        if line not in seen:
            seen.add(line)
            lines.append(line)
    # A few long lines, to exercise long merges and whitespace runs.
    lines.append(" ".join(lines[:200]))
    lines.append(" " * 300 + "x" + "\n" * 50 + "y" + "\t" * 40)
    lines.append("9" * 500)
    lines.append("ab" * 400)
    return lines


if __name__ == "__main__":
    c = corpus()
    print(len(c), "lines")
