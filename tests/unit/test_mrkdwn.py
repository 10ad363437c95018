"""Markdown to Slack mrkdwn, and cutting long text into messages."""

from __future__ import annotations

import random

import pytest

from handlers.slack.mrkdwn import find_split, split_message, to_mrkdwn

# -- emphasis, links, headings, lists ------------------------------------------------------


@pytest.mark.parametrize(
    ("markdown", "mrkdwn"),
    [
        ("**bold**", "*bold*"),
        ("__bold__", "*bold*"),
        ("*italic*", "_italic_"),
        ("_italic_", "_italic_"),
        ("~~strike~~", "~strike~"),
        ("***both***", "*_both_*"),
        ("**bold with *italic* inside**", "*bold with _italic_ inside*"),
        ("a **b** c *d* e", "a *b* c _d_ e"),
        ("snake_case_name and __init__.py", "snake_case_name and __init__.py"),
        ('if __name__ == "__main__":', 'if __name__ == "__main__":'),
        ("__Bold Words__", "*Bold Words*"),
        ("obj.__dict__ and __post_init__() and __foo__.bar", "obj.__dict__ and __post_init__() and __foo__.bar"),
        ("2*3*4 = 24", "2*3*4 = 24"),
        ("* not italic *", "• not italic *"),
        ("a * b * c", "a * b * c"),
        ("**unclosed bold", "**unclosed bold"),
        ("plain text", "plain text"),
        ("", ""),
    ],
)
def test_emphasis(markdown: str, mrkdwn: str) -> None:
    assert to_mrkdwn(markdown) == mrkdwn


@pytest.mark.parametrize(
    ("markdown", "mrkdwn"),
    [
        ("[Slack](https://slack.com)", "<https://slack.com|Slack>"),
        ("see [the docs](https://x.io/a?b=1&c=2) now", "see <https://x.io/a?b=1&c=2|the docs> now"),
        ("[**bold** label](https://x.io)", "<https://x.io|*bold* label>"),
        ("[a < b](https://x.io)", "<https://x.io|a &lt; b>"),
        ("[https://x.io](https://x.io)", "<https://x.io>"),
        ("[](https://x.io)", "<https://x.io>"),
        ("![a cat](https://x.io/cat.png)", "<https://x.io/cat.png|a cat>"),
        ('[t](https://x.io "a title")', "<https://x.io|t>"),
        ("[wiki](https://en.wikipedia.org/wiki/Foo_(bar))", "<https://en.wikipedia.org/wiki/Foo_(bar)|wiki>"),
        ("[t](<https://x.io/a b>)", "<https://x.io/a%20b|t>"),
        ("[t](https://x.io/a|b)", "<https://x.io/a%7Cb|t>"),
        ("**[bold link](https://x.io)**", "*<https://x.io|bold link>*"),
        ("[not a link] (https://x.io)", "[not a link] (https://x.io)"),
    ],
)
def test_links(markdown: str, mrkdwn: str) -> None:
    assert to_mrkdwn(markdown) == mrkdwn


@pytest.mark.parametrize(
    ("markdown", "mrkdwn"),
    [
        ("a < b && c > d", "a &lt; b &amp;&amp; c &gt; d"),
        ("AT&T", "AT&amp;T"),
        ("already &amp; escaped", "already &amp;amp; escaped"),
        ("<b>html</b>", "&lt;b&gt;html&lt;/b&gt;"),
        ("hi <@U123ABC> and <@U9|bob>", "hi <@U123ABC> and <@U9|bob>"),
        ("in <#C0123> and <#C9|general>", "in <#C0123> and <#C9|general>"),
        ("<!here> <!channel> <!everyone>", "<!here> <!channel> <!everyone>"),
        ("<!subteam^S123|@team> ping", "<!subteam^S123|@team> ping"),
        ("<https://x.io|already slack> & more", "<https://x.io|already slack> &amp; more"),
        ("autolink <https://x.io>", "autolink <https://x.io>"),
        ("x <@U1 unclosed", "x &lt;@U1 unclosed"),
        ("\\*not italic\\*", "*not italic*"),
        ("\\<tag\\>", "&lt;tag&gt;"),
    ],
)
def test_escaping_keeps_slack_tokens(markdown: str, mrkdwn: str) -> None:
    assert to_mrkdwn(markdown) == mrkdwn


@pytest.mark.parametrize(
    ("markdown", "mrkdwn"),
    [
        ("# Title", "*Title*"),
        ("### Third level ###", "*Third level*"),
        ("## **Bold** heading", "*Bold heading*"),
        ("## Use `pip` & *venv*", "*Use `pip` &amp; _venv_*"),
        ("#hashtag", "#hashtag"),
        ("- one", "• one"),
        ("* two", "• two"),
        ("+ three", "• three"),
        ("  - nested **b**", "  • nested *b*"),
        ("- [ ] todo", "• ☐ todo"),
        ("- [x] done", "• ☑ done"),
        ("1. first", "1. first"),
        ("> quoted **text** & more", "> quoted *text* &amp; more"),
        ("> - quoted item", "> • quoted item"),
        ("---", "———"),
        ("* * *", "———"),
    ],
)
def test_block_elements(markdown: str, mrkdwn: str) -> None:
    assert to_mrkdwn(markdown) == mrkdwn


def test_a_whole_answer() -> None:
    markdown = (
        "## Setup\n"
        "\n"
        "Install it with **pip** (see [docs](https://pip.pypa.io)):\n"
        "\n"
        "- run `pip install x`\n"
        "- then *restart*\n"
        "\n"
        "Ask <@U42> if a < b."
    )
    assert to_mrkdwn(markdown) == (
        "*Setup*\n"
        "\n"
        "Install it with *pip* (see <https://pip.pypa.io|docs>):\n"
        "\n"
        "• run `pip install x`\n"
        "• then _restart_\n"
        "\n"
        "Ask <@U42> if a &lt; b."
    )


# -- code ----------------------------------------------------------------------------------


def test_inline_code_is_not_converted() -> None:
    assert to_mrkdwn("use `**kwargs` and `a_b_c` or `[x](y)`") == "use `**kwargs` and `a_b_c` or `[x](y)`"


def test_inline_code_keeps_text_but_escapes_control_characters() -> None:
    # Slack reads &, < and > as control characters even in code; escaped, they show as written.
    assert to_mrkdwn("`List<String> & more`") == "`List&lt;String&gt; &amp; more`"


def test_fenced_code_is_not_converted() -> None:
    markdown = "Before **b**\n```python\n# not a heading\n- not a bullet\nx = **kw  # _no_\n```\nAfter *i*"
    assert to_mrkdwn(markdown) == ("Before *b*\n```\n# not a heading\n- not a bullet\nx = **kw  # _no_\n```\nAfter _i_")


def test_fenced_code_escapes_control_characters_only() -> None:
    assert to_mrkdwn("```\nif a < b && c > d:\n    pass\n```") == (
        "```\nif a &lt; b &amp;&amp; c &gt; d:\n    pass\n```"
    )


def test_tilde_fences_and_longer_fences() -> None:
    assert to_mrkdwn("~~~\n**x**\n~~~") == "```\n**x**\n```"
    assert to_mrkdwn("````md\n```\n**x**\n```\n````\n**y**") == "```\n```\n**x**\n```\n```\n*y*"


def test_unclosed_fence_is_closed() -> None:
    # An answer cut off inside a code block must not leave the rest of Slack's message as code.
    assert to_mrkdwn("Code:\n```js\nlet a = 1;\n") == "Code:\n```\nlet a = 1;\n```\n"


# -- tables --------------------------------------------------------------------------------


def test_table_becomes_aligned_code_block() -> None:
    markdown = "Results:\n\n| Name | Score |\n|------|------:|\n| **Ann** | 9 |\n| Bob & co | 10 |\n\nDone."
    assert to_mrkdwn(markdown) == (
        "Results:\n\n```\nName     | Score\n---------+------\nAnn      | 9\nBob &amp; co | 10\n```\n\nDone."
    )


def test_table_cells_lose_markdown_marks() -> None:
    markdown = "a | b\n--- | ---\n`x` | [t](https://x.io)\nc | d \\| e"
    assert to_mrkdwn(markdown) == "```\na | b\n--+-----------------\nx | t (https://x.io)\nc | d | e\n```"


def test_pipes_without_separator_are_not_a_table() -> None:
    assert to_mrkdwn("a | b\nc | d") == "a | b\nc | d"


def test_ragged_table_rows_are_aligned() -> None:
    assert to_mrkdwn("|a|b|c|\n|-|-|-|\n|1|\n") == "```\na | b | c\n--+---+--\n1\n```\n"


# -- split_message -------------------------------------------------------------------------


def test_short_text_is_one_part() -> None:
    assert split_message("hello", 40) == ["hello"]
    assert split_message("x" * 40, 40) == ["x" * 40]


def test_blank_text_is_no_parts() -> None:
    assert split_message("", 40) == []
    assert split_message(" \n ", 40) == []


def test_splits_at_paragraphs_first() -> None:
    text = "First paragraph here.\nSecond line of it.\n\nAnother paragraph that is long."
    assert split_message(text, 50) == [
        "First paragraph here.\nSecond line of it.\n\n",
        "Another paragraph that is long.",
    ]


def test_splits_at_lines_when_no_paragraph_fits() -> None:
    text = "line one is here\nline two is here\nline three is here"
    assert split_message(text, 45) == ["line one is here\nline two is here\n", "line three is here"]


def test_splits_at_words_when_no_line_fits() -> None:
    text = "word " * 16 + "end"
    parts = split_message(text, 32)
    assert parts == ["word " * 6, "word " * 6, "word word word word end"]


def test_hard_cut_without_any_boundary() -> None:
    assert split_message("x" * 90, 40) == ["x" * 40, "x" * 40, "x" * 10]


def test_far_paragraph_loses_to_near_line() -> None:
    # A paragraph break in the first half would leave a tiny part; a line break near the limit wins.
    text = "Hi.\n\n" + "a line of text\n" * 6
    assert split_message(text, 60)[0] == "Hi.\n\n" + "a line of text\n" * 3


def test_trailing_whitespace_never_forces_a_split() -> None:
    assert split_message("x" * 40 + "\n\n", 40) == ["x" * 40 + "\n\n"]


def test_split_keeps_code_blocks_whole_when_possible() -> None:
    text = "Intro text.\n```\nline 1\nline 2\nline 3\n```\nOutro."
    assert split_message(text, 40) == ["Intro text.\n", "```\nline 1\nline 2\nline 3\n```\nOutro."]


def test_code_block_longer_than_limit_is_closed_and_reopened() -> None:
    code = "".join(f"row {i}\n" for i in range(12))
    text = f"See:\n```python\n{code}```\nDone."
    parts = split_message(text, 40)
    assert all(len(p) <= 40 for p in parts)
    assert all(p.count("```") % 2 == 0 for p in parts), parts
    assert parts[0] == "See:\n"
    assert all(p.startswith("```python\nrow ") for p in parts[1:-1])
    assert parts[-2].endswith("row 11\n```\n") and parts[-1] == "Done."
    # Without the added fences, the parts are the text again.
    code_parts = [p.removeprefix("```python\n").removesuffix("```") for p in parts[1:-2]]
    last_code = parts[-2].removeprefix("```python\n")
    assert parts[0] + "```python\n" + "".join(code_parts) + last_code + parts[-1] == text


def test_code_line_longer_than_limit_is_cut_inside_the_block() -> None:
    text = "```\n" + "y" * 100 + "\n```"
    parts = split_message(text, 40)
    assert all(len(p) <= 40 for p in parts)
    assert all(p.startswith("```\ny") and p.endswith("y\n```") for p in parts), parts
    assert "".join(p.removeprefix("```\n").removesuffix("\n```") for p in parts) == "y" * 100


def test_find_split_respects_floor() -> None:
    text = "aaaa aaaa aaaa aaaa\n\nbbbb cccc dddd eeee ffff"
    assert find_split(text, 40).pos == 21
    # Text up to 25 was already sent, so the cut cannot go back to the paragraph break.
    assert find_split(text, 40, floor=25).pos == 36
    assert find_split(text, 40, floor=38).pos == 40


def test_limit_too_small_is_refused() -> None:
    with pytest.raises(ValueError, match="limit"):
        split_message("x" * 40, 31)


@pytest.mark.parametrize("seed", range(5))
def test_split_properties_on_random_text(seed: int) -> None:
    rng = random.Random(seed)
    words = ["alpha", "beta", "gamma\n", "delta\n\n", "`code`", "x" * 45, "\n```\n", "y = 1\n", "  "]
    for _ in range(200):
        text = " ".join(rng.choice(words) for _ in range(rng.randint(1, 120)))
        limit = rng.choice([32, 40, 64, 100])
        parts = split_message(text, limit)
        assert all(len(p.rstrip()) <= limit and p.strip() for p in parts), (limit, text, parts)
        if "```" not in text:
            assert "".join(parts) == (text if text.strip() else "")
        else:
            # Every part leaves code blocks as it found them: closed, unless the text ends inside one.
            balanced = text.count("```") % 2 == 0
            assert all(p.count("```") % 2 == 0 for p in parts[:-1]), (limit, text, parts)
            assert (parts[-1].count("```") % 2 == 0) == balanced, (limit, text, parts)


def test_split_of_converted_text() -> None:
    text = to_mrkdwn("## Plan\n\n" + "- step with **bold**\n" * 30)
    parts = split_message(text, 100)
    assert "".join(parts) == text
    assert all(len(p) <= 100 for p in parts)
    assert all(p.endswith("\n") for p in parts[:-1])
