"""Message templates substitute named values and nothing else."""

from __future__ import annotations

import pytest

from watcher.rules.template import MISSING, PLACEHOLDERS, check_template, render


@pytest.mark.parametrize(
    ("template", "error"),
    [
        ("{prce}", "unknown placeholder {prce}; available: market, title"),
        ("{}", "empty placeholder {}; use a name such as {market}"),
        ("{0}", "unknown placeholder {0}"),
        ("{market.__class__}", "placeholder {market.__class__} is not allowed"),
        ("{market[0]}", "placeholder {market[0]} is not allowed"),
        ("{price!r}", "placeholder {price!r} is not allowed"),
        ("{price:>5}", "placeholder {price:>5} is not allowed"),
        ("{price:{market}}", "placeholder {price:{market}} is not allowed"),
        ("price }", "message template is invalid: single '}' encountered in format string"),
        ("{price", "message template is invalid: expected '}' before end of string"),
    ],
)
def test_templates_only_accept_plain_known_names(template, error):
    """Attribute/index access, conversions, format specs and unknown names are refused."""
    with pytest.raises(ValueError, match="message template") as caught:
        check_template(template)
    assert error in str(caught.value)


def test_every_placeholder_and_literal_braces_render():
    """Known names are substituted, {{ }} are literal braces, unknown values show n/a."""
    template = " ".join("{" + name + "}" for name in PLACEHOLDERS) + " {{literal}}"
    assert check_template(template) == template
    values = {name: name.upper() for name in PLACEHOLDERS if name != "pnl"}
    rendered = render(template, values)
    assert rendered.startswith("MARKET TITLE SIDE ENTRY PRICE")
    assert f" {MISSING} " in rendered and rendered.endswith(" {literal}")


def test_rendering_never_evaluates_what_the_values_contain():
    """A value that looks like a placeholder stays text."""
    assert render("{title}", {"title": "{market.__class__}"}) == "{market.__class__}"
