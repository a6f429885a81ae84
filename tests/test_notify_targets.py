"""Apprise URL handling without a network: masking, validation, redaction, exports."""

from __future__ import annotations

import logging

import pytest

import watcher.notify
from watcher.notify import mask_url, normalize_targets, validate_targets
from watcher.notify.apprise_targets import build_service, redact

SECRET_URL = "json://user:secret@127.0.0.1:8080/?+X-Api-Key=topsecret"


def test_mask_url_hides_password_and_header_values():
    """Apprise's privacy form, plus header/query values Apprise itself would show."""
    masked = mask_url(SECRET_URL)
    assert masked.startswith("json://user:****@")
    assert "X-Api-Key=***" in masked
    assert "secret" not in masked


@pytest.mark.parametrize(
    ("url", "hidden"),
    [
        ("tgram://123456789:AAHsecretbottoken/987654", "AAHsecretbottoken"),
        (
            "slack://T1JJ3T3L2/A1BRTD4JD/TIiajkdnlazkcOXrIdevi7FQ/#alerts",
            "TIiajkdnlazkcOXrIdevi7FQ",
        ),
        ("mailtos://alice:hunter22@example.com", "hunter22"),
    ],
)
def test_mask_url_hides_service_tokens(url, hidden):
    """Tokens Apprise knows to be secret are masked in the URL we show."""
    assert hidden not in mask_url(url)


@pytest.mark.parametrize(
    ("url", "expected"),
    [("tgramm://123456:ABCsecret/987", "tgramm://***"), ("not a url at all", "***")],
)
def test_mask_url_of_an_unparseable_url_shows_only_the_scheme(url, expected):
    """A URL Apprise cannot parse is shown as scheme://*** (nothing of it can be trusted)."""
    assert mask_url(url) == expected


def test_apprise_log_records_are_redacted(caplog):
    """Apprise's own DEBUG line about a loaded URL carries no header secret."""
    caplog.set_level(logging.DEBUG, logger="apprise")
    build_service("json://bob:pa55word@127.0.0.1:8081/?+Authorization=bearer-xyz-123")
    build_service("slack://TokenAAAA/broken#x")
    assert "Loaded JSON URL" in caplog.text
    for secret in ("pa55word", "bearer-xyz-123", "TokenAAAA"):
        assert secret not in caplog.text
    assert redact("token bearer-xyz-123 and pa55word") == "token *** and ***"


def test_validate_targets_accepts_a_good_configuration():
    """Loadable URLs, a bare string or a list, give no problems."""
    assert validate_targets({"hook": "json://127.0.0.1:1/", "mail": ["mailtos://a:b@x.com"]}) == []


def test_validate_targets_reports_every_problem_with_masked_urls():
    """Empty targets and URLs Apprise cannot load are reported, each URL masked."""
    problems = validate_targets(
        {"phone": ["tgram://not-a-token"], "team": [], "ok": [SECRET_URL], "x": "jsn://u:pw@h/"}
    )
    assert problems == [
        "notify target 'phone': apprise cannot load url tgram://***",
        "notify target 'team' has no url",
        "notify target 'x': apprise cannot load url jsn://***",
    ]


def test_normalize_targets_turns_a_bare_string_into_one_url():
    """A target may be one URL string or a list; blanks are dropped."""
    assert normalize_targets({"a": "json://h/", "b": ["json://h/", " ", "json://i/"]}) == {
        "a": ("json://h/",),
        "b": ("json://h/", "json://i/"),
    }


def test_package_exports_exist():
    """Everything in watcher.notify.__all__ is importable."""
    for name in watcher.notify.__all__:
        assert hasattr(watcher.notify, name), name
