"""rules.yaml loading: grammar, ${VAR} interpolation, and every error located as file:line:col."""

from __future__ import annotations

import textwrap
from datetime import date, datetime, time, timedelta
from decimal import Decimal
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from watcher.errors import ConfigError
from watcher.rules import (
    MoveFromEntryRule,
    PnlRule,
    PriceCrossRule,
    RulesConfig,
    RulesError,
    SpreadRule,
    load_rules,
    parse_rules,
)
from watcher.rules.fields import parse_duration

ROOT = Path(__file__).resolve().parents[1]
SHIPPED = [ROOT / "rules" / "rules.yaml", *sorted((ROOT / "rules" / "examples").glob("*.yaml"))]
TYPES = (
    "spread, move_from_entry, pnl, price_cross, velocity, trade_size, closing_soon, settled, stale"
    ", volume_spike, event_arbitrage, ladder"
)
SPREAD_KEYS = (
    "name, type, markets, notify, cooldown, severity, price, message, enabled, expires, action, "
    "rearm_cents, side, max_cents, min_cents"
)


def parse(text: str, **env: str) -> RulesConfig:
    return parse_rules(textwrap.dedent(text), env=env)


def errors_of(text: str, **env: str) -> list[str]:
    with pytest.raises(RulesError) as caught:
        parse(text, **env)
    return [str(error) for error in caught.value.errors]


# The grammar


def test_the_design_example_loads_with_every_rule_type_and_setting():
    """The example of design.md §5 is valid and reads into typed values."""
    config = parse(
        """\
        version: 1
        timezone: America/New_York
        notify:                               # named targets → Apprise URLs (or lists of URLs)
          phone: ${WATCHER_TELEGRAM_URL}      # tgram://bottoken/chatid
          team: slack://TokenA/TokenB/TokenC/#alerts
          email: mailtos://user:pass@example.com
        defaults:
          notify: [phone]
          cooldown: 15m
        quiet_hours: {start: "23:00", end: "07:00", except: critical}
        rules:
          - {name: tight spread, type: spread, max_cents: 2}
          - {name: moved 5c from entry, type: move_from_entry, cents: 5}        # ± by default
          - {name: stop loss, type: pnl, below_dollars: -10, severity: critical}
          - {name: whale trade, type: trade_size, min_contracts: 500}
          - {name: crosses 50c, type: price_cross, cents: 50, direction: up, markets: ["KXCPI-*"]}
          - {name: fast move, type: velocity, cents: 5, within: 10m}
          - {name: closing soon, type: closing_soon, before: 2h}
          - {name: settled, type: settled}
          - {name: feed stale, type: stale, after: 5m}
          - {name: volume spike, type: volume_spike, factor: 5, within: 5m, baseline: 1h}
          - {name: basket, type: event_arbitrage, min_edge_cents: 2, events: ["KXWIN-*"]}
          - {name: ladder, type: ladder, min_edge_cents: 1}
        """,
        WATCHER_TELEGRAM_URL="tgram://bot/chat",
    )
    assert sorted(rule.type for rule in config.rules) == sorted(TYPES.split(", "))
    assert config.notify["phone"] == ("tgram://bot/chat",)
    assert config.defaults.cooldown == timedelta(minutes=15)
    assert config.quiet_hours is not None
    assert (config.quiet_hours.start, config.quiet_hours.end) == (time(23), time(7))
    assert config.quiet_hours.except_ == ("critical",)
    spread, move, pnl = config.rules[:3]
    assert isinstance(spread, SpreadRule) and spread.max_cents == Decimal(2)
    assert isinstance(move, MoveFromEntryRule) and move.direction == "either"
    assert isinstance(pnl, PnlRule) and pnl.below_dollars == Decimal(-10)
    assert config.history_ms == 600_000
    assert config.warnings == ()


def test_empty_rules_omitted_quiet_hours_and_inline_urls_are_valid():
    """`rules: []`, no quiet_hours and Apprise URLs written inline all load."""
    config = parse("notify: {team: 'slack://a/b/c', two: ['json://x', 'xml://y']}\nrules: []\n")
    assert config.rules == ()
    assert config.quiet_hours is None
    assert config.notify == {"team": ("slack://a/b/c",), "two": ("json://x", "xml://y")}


def test_yaml_1_1_words_stay_words_and_times_stay_times():
    """`side: no` is the NO side (not false) and an unquoted 23:00 is a time (not 1380)."""
    config = parse(
        """\
        quiet_hours: {start: 23:00, end: 7:05}
        rules:
          - {name: a, type: price_cross, cents: 40, direction: down, side: no, enabled: yes}
        """
    )
    assert config.quiet_hours is not None and config.quiet_hours.end == time(7, 5)
    rule = config.rules[0]
    assert isinstance(rule, PriceCrossRule) and rule.side == "NO" and rule.enabled is True


def test_numbers_are_read_exactly_never_as_binary_floats():
    """A YAML float becomes an exact Decimal: 0.1¢ is 1000 micro-dollars, not 999.99."""
    config = parse("rules:\n  - {name: a, type: move_from_entry, cents: 0.1, rearm_cents: 0.05}\n")
    rule = config.rules[0]
    assert isinstance(rule, MoveFromEntryRule)
    assert rule.cents == Decimal("0.1") and rule.rearm_micros == 500


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("30s", timedelta(seconds=30)),
        ("15m", timedelta(minutes=15)),
        ("2h", timedelta(hours=2)),
        ("1d", timedelta(days=1)),
        ("1h30m", timedelta(minutes=90)),
        (90, timedelta(seconds=90)),
        ("90", timedelta(seconds=90)),
        (0, timedelta(0)),
    ],
)
def test_durations_accept_units_or_whole_seconds(value, expected):
    """Durations are 30s, 15m, 2h, 1d (combinable) or an int of seconds."""
    assert parse_duration(value) == expected


@pytest.mark.parametrize("value", ["15 minutes", "1.5h", -5, True, "m", "", None, [1]])
def test_other_durations_are_refused(value):
    """Anything else is an error that names the value."""
    with pytest.raises(ValueError, match="expected a duration like 30s"):
        parse_duration(value)


def test_expires_date_means_through_that_day_in_the_configured_time_zone():
    """`expires: 2026-01-31` stops the rule at midnight after Jan 31 in the configured zone."""
    config = parse(
        """\
        timezone: Asia/Tokyo
        rules:
          - {name: a, type: settled, expires: 2026-01-31}
          - {name: b, type: settled, expires: "2026-01-31T16:00"}
          - {name: c, type: settled}
        """
    )
    tz = ZoneInfo("Asia/Tokyo")
    first, second, third = config.rules
    assert first.expires == date(2026, 1, 31)
    end_of_day = datetime(2026, 2, 1, tzinfo=tz).timestamp()
    assert first.expires_ms(tz) == int(end_of_day) * 1000
    assert second.expires_ms(tz) == int(datetime(2026, 1, 31, 16, tzinfo=tz).timestamp()) * 1000
    assert third.expires_ms(tz) is None


def test_defaults_fill_in_what_a_rule_does_not_set():
    """notify, cooldown, severity and price come from defaults unless the rule sets them."""
    config = parse(
        """\
        notify: {phone: 'tgram://a/b', team: 'slack://a/b/c'}
        defaults: {notify: phone, cooldown: 10m, severity: info, price: mid}
        rules:
          - {name: a, type: settled}
          - {name: b, type: settled, notify: [team], cooldown: 0, severity: critical, price: bid}
        """
    )
    first, second = config.rules
    assert (config.targets_of(first), config.targets_of(second)) == (("phone",), ("team",))
    assert (config.cooldown_ms(first), config.cooldown_ms(second)) == (600_000, 0)
    assert (config.severity_of(first), config.severity_of(second)) == ("info", "critical")
    assert (config.basis_of(first), config.basis_of(second)) == ("mid", "bid")


# ${VAR} interpolation


def test_variables_are_substituted_from_the_env_given_not_os_environ(monkeypatch):
    """${VAR} comes from the `env` argument; ${VAR:-default} falls back when unset or empty."""
    monkeypatch.setenv("FROM_OS", "tgram://os/env")
    config = parse(
        """\
        notify:
          a: tgram://${BOT}/${CHAT}
          b: ${EMPTY:-json://fallback}
          c: ${UNSET:-xml://fallback}
        """,
        BOT="bot",
        CHAT="42",
        EMPTY="",
    )
    assert dict(config.notify) == {
        "a": ("tgram://bot/42",),
        "b": ("json://fallback",),
        "c": ("xml://fallback",),
    }
    assert errors_of("notify: {a: '${FROM_OS}'}\n") == [
        "rules.yaml:1:14: environment variable FROM_OS is not set (used as ${FROM_OS})"
    ]


def test_a_target_with_no_url_is_dropped_with_a_warning_and_goes_to_the_console():
    """`phone: ${WATCHER_TELEGRAM_URL:-}` with the variable unset loads; alerts go to console."""
    config = parse(
        """\
        notify:
          phone: ${WATCHER_TELEGRAM_URL:-}
        defaults: {notify: [phone]}
        rules: [{name: a, type: settled}]
        """
    )
    assert config.notify == {}
    assert config.targets_of(config.rules[0]) == ()
    assert config.warnings == (
        "rules.yaml:2:3: notify target 'phone' has no URL (WATCHER_TELEGRAM_URL is not set); "
        "its alerts go to the console only",
    )


def test_secrets_never_appear_in_errors_or_reprs():
    """A variable's value is not echoed in an error, and notify URLs are not in repr()."""
    secret = "hunter2-very-secret"
    messages = errors_of("defaults: {cooldown: '${SECRET}'}\n", SECRET=secret)
    assert messages == [
        "rules.yaml:1:22: cooldown: expected a duration like 30s, 15m, 2h or 1d, or a number "
        "of seconds, but got the value of an environment variable"
    ]
    url_errors = errors_of("notify: {a: '${URL}'}\n", URL=secret)
    assert url_errors == [
        "rules.yaml:1:13: notify target 'a': expected an Apprise URL such as "
        "tgram://bottoken/chatid (no '://' found)"
    ]
    config = parse("notify: {a: 'tgram://${TOKEN}/1'}\n", TOKEN=secret)
    assert secret not in repr(config) and secret not in str(config)


# Errors, located


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        pytest.param(
            "version: 1\nrules:\n  - name: a\n   type: spread\n",
            "rules.yaml:4:4: invalid YAML: expected <block end>, but found "
            "'<block mapping start>' (while parsing a block collection that starts at line 3)",
            id="syntax",
        ),
        pytest.param(
            "rules: [{name: a, type: spread\n",
            "rules.yaml:2:1: invalid YAML: expected ',' or '}', but got '<stream end>' "
            "(while parsing a flow mapping that starts at line 1)",
            id="syntax-unclosed",
        ),
        pytest.param(
            "rules:\n  - {name: a, type: spread, max_cents: two}\n",
            "rules.yaml:2:40: max_cents: expected a number of cents at least 0 and at most 100, "
            "but got 'two'",
            id="type",
        ),
        pytest.param(
            "rules:\n  - name: a\n    type: spread\n    mx_cents: 2\n",
            f"rules.yaml:4:5: unknown key 'mx_cents' in a spread rule; expected one of: "
            f"{SPREAD_KEYS}",
            id="unknown-key",
        ),
        pytest.param(
            "version: 1\nrule: []\n",
            "rules.yaml:2:1: unknown key 'rule' at the top level; expected one of: version, "
            "timezone, notify, defaults, quiet_hours, fees, watch, control, rules",
            id="unknown-top-level-key",
        ),
        pytest.param(
            "version: 1\nrules: []\nversion: 1\n",
            "rules.yaml:3:1: duplicate key 'version' (first written at line 1)",
            id="duplicate-key",
        ),
        pytest.param(
            "rules:\n  - name: a\n    type: spread\n    max_cents: 2\n    max_cents: 3\n",
            "rules.yaml:5:5: duplicate key 'max_cents' (first written at line 4)",
            id="duplicate-key-in-rule",
        ),
        pytest.param(
            "rules:\n  - name: a\n    type: whale\n",
            f"rules.yaml:3:11: unknown rule type 'whale'; expected one of: {TYPES}",
            id="bad-discriminator",
        ),
        pytest.param(
            "rules:\n  - name: a\n    max_cents: 2\n",
            f"rules.yaml:2:5: rule has no 'type'; expected one of: {TYPES}",
            id="missing-discriminator",
        ),
        pytest.param(
            "notify:\n  phone: tgram://${BOT_TOKEN}/123\n",
            "rules.yaml:2:18: environment variable BOT_TOKEN is not set (used as ${BOT_TOKEN})",
            id="missing-env-var",
        ),
        pytest.param(
            'notify:\n  phone: "${BOT_TOKEN}"\n',
            "rules.yaml:2:11: environment variable BOT_TOKEN is not set (used as ${BOT_TOKEN})",
            id="missing-env-var-quoted",
        ),
        pytest.param(
            "notify: {a: 'x://${9BAD}'}\n",
            "rules.yaml:1:18: invalid variable reference '${9BAD}': write ${NAME} or "
            "${NAME:-default}",
            id="bad-variable-name",
        ),
        pytest.param(
            "rules:\n  - name: a\n    type: move_from_entry\n",
            "rules.yaml:2:5: missing key 'cents' in a move_from_entry rule",
            id="missing-key",
        ),
        pytest.param(
            "rules:\n  - {name: a, type: settled}\n  - {name: a, type: stale, after: 5m}\n",
            "rules.yaml:3:12: duplicate rule name 'a' (first used at line 2)",
            id="duplicate-rule-name",
        ),
        pytest.param(
            "notify: {phone: 'tgram://a/b'}\n"
            "rules:\n  - {name: a, type: settled, notify: [phone, pager]}\n",
            "rules.yaml:3:46: unknown notify target 'pager'; defined targets: phone",
            id="unknown-notify-target",
        ),
        pytest.param(
            "defaults:\n  cooldown: 15 minutes\n",
            "rules.yaml:2:13: cooldown: expected a duration like 30s, 15m, 2h or 1d, or a number "
            "of seconds, but got '15 minutes'",
            id="bad-duration",
        ),
        pytest.param(
            "timezone: Mars/Olympus\n",
            "rules.yaml:1:11: timezone: expected an IANA time zone such as America/New_York or "
            "UTC, but got 'Mars/Olympus'",
            id="bad-time-zone",
        ),
        pytest.param(
            "quiet_hours: {start: '25:00', end: '07:00'}\n",
            "rules.yaml:1:22: start: expected a time of day like \"23:00\", but got '25:00'",
            id="bad-time-of-day",
        ),
        pytest.param(
            "rules:\n  - {name: a, type: settled, severity: urgent}\n",
            "rules.yaml:2:40: severity: expected 'info', 'warning' or 'critical', but got 'urgent'",
            id="bad-literal",
        ),
        pytest.param(
            "rules:\n  - {name: a, type: spread, max_cents: 2, min_cents: 5}\n",
            "rules.yaml:2:5: a spread rule needs exactly one of max_cents or min_cents",
            id="rule-level-check",
        ),
        pytest.param(
            "rules:\n  - {name: a, type: settled, message: 'hi {prce}'}\n",
            "rules.yaml:2:39: message template has an unknown placeholder {prce}; available: "
            "market, title, side, entry, price, bid, ask, move, spread, pnl, contracts, result, "
            "closes, rule, severity, time",
            id="unknown-placeholder",
        ),
        pytest.param(
            "rules:\n  - {name: a, type: settled, message: '{market.__class__}'}\n",
            "rules.yaml:2:39: message template placeholder {market.__class__} is not allowed: "
            "templates only substitute values, write {market}",
            id="attribute-access-in-template",
        ),
        pytest.param(
            "- a\n- b\n",
            "rules.yaml:1:1: expected a mapping with keys such as version, timezone, notify, "
            "defaults, quiet_hours, fees, watch, control, rules, but got a list",
            id="top-level-list",
        ),
        pytest.param(
            "",
            "rules.yaml:1:1: expected a mapping with keys such as version, timezone, notify, "
            "defaults, quiet_hours, fees, watch, control, rules, but got an empty file",
            id="empty-file",
        ),
        pytest.param(
            "version: 1\nrules: 5\n",
            "rules.yaml:2:8: rules: expected a list, but got 5",
            id="rules-not-a-list",
        ),
        pytest.param(
            "version: !!python/object:os.system 1\n",
            "rules.yaml:1:10: cannot read value: could not determine a constructor for the tag "
            "'tag:yaml.org,2002:python/object:os.system'",
            id="unsafe-tag",
        ),
        pytest.param(
            "rules:\n  - {name: a, type: event_arbitrage}\n",
            "rules.yaml:2:5: missing key 'min_edge_cents' in a event_arbitrage rule",
            id="event-rule-without-edge",
        ),
        pytest.param(
            "rules:\n  - {name: a, type: ladder, min_edge_cents: 0}\n",
            "rules.yaml:2:45: min_edge_cents: expected a number of cents more than 0 "
            "and at most 100, but got 0",
            id="event-rule-zero-edge",
        ),
        pytest.param(
            "rules:\n  - {name: a, type: event_arbitrage, min_edge_cents: 1, markets: [KX*]}\n",
            "rules.yaml:2:66: markets: an event rule selects events with `events`, not `markets`",
            id="event-rule-with-markets",
        ),
        pytest.param(
            "rules:\n  - {name: a, type: event_arbitrage, min_edge_cents: 1, exhaustive: maybe}\n",
            "rules.yaml:2:69: exhaustive: expected true or false, but got 'maybe'",
            id="event-rule-bad-exhaustive",
        ),
        pytest.param(
            "rules:\n  - {name: a, type: ladder, min_edge_cents: 1, exhaustive: true}\n",
            "rules.yaml:2:48: unknown key 'exhaustive' in a ladder rule; expected one of: "
            "name, type, markets, notify, cooldown, severity, price, message, enabled, expires, "
            "action, events, min_edge_cents, rearm_cents",
            id="ladder-is-not-exhaustive",
        ),
    ],
)
def test_each_error_points_at_the_offending_line_and_column(text, expected):
    """Every kind of mistake is reported as `rules.yaml:LINE:COL: message`, and only once."""
    assert errors_of(text) == [expected]


def test_every_problem_is_reported_in_file_order_and_str_is_the_first():
    """RulesError carries all problems, sorted by position; str() is the first one."""
    text = """\
        defaults:
          cooldown: soon
        rules:
          - {name: a, type: nope}
          - {name: b, type: spread}
        """
    with pytest.raises(RulesError) as caught:
        parse(text)
    error = caught.value
    assert isinstance(error, ConfigError)
    assert [(e.line, e.col) for e in error.errors] == [(2, 13), (4, 21), (5, 5)]
    assert str(error) == str(error.errors[0]) == error.errors[0].located()
    assert (error.file, error.line, error.col) == ("rules.yaml", 2, 13)


@pytest.mark.parametrize(
    ("rule", "expected"),
    [
        ("{name: s, type: move_from_entry, cents: 5, action: close}", None),
        ("{name: s, type: pnl, below_dollars: -10, action: close}", None),
        (
            "{name: s, type: spread, max_cents: 2, action: close}",
            "rules.yaml:3:51: action: close needs a rule about positions (move_from_entry, pnl)",
        ),
        (
            "{name: s, type: stale, after: 5m, action: close}",
            "rules.yaml:3:47: action: close needs a rule about positions (move_from_entry, pnl)",
        ),
        (
            "{name: s, type: pnl, below_dollars: -10, action: sell}",
            "rules.yaml:3:54: action: expected 'close', but got 'sell'",
        ),
    ],
)
def test_only_a_rule_about_positions_may_close_them(rule, expected):
    """`action: close` is for position rules; on a market rule it is an error at its value."""
    text = f"version: 1\nrules:\n  - {rule}\n"
    if expected is None:
        (loaded,) = parse(text).rules
        assert loaded.action == "close" and loaded.scope == "position"
    else:
        assert errors_of(text) == [expected]


def test_a_rule_only_alerts_unless_it_says_so_and_a_misplaced_action_is_located():
    """Without `action` a rule only alerts; in block style the error points at the value."""
    config = parse("rules:\n  - {name: s, type: pnl, below_dollars: -10}\n")
    assert config.rules[0].action is None
    block = "rules:\n  - name: s\n    type: spread\n    max_cents: 2\n    action: close\n"
    assert errors_of(block) == [
        "rules.yaml:5:13: action: close needs a rule about positions (move_from_entry, pnl)"
    ]


def test_the_filename_given_is_the_one_errors_name(tmp_path):
    """load_rules locates errors with the path as given, so editors can jump to it."""
    path = tmp_path / "mine.yaml"
    path.write_text("version: 1\nrules:\n  - {name: a, type: whale}\n", encoding="utf-8")
    with pytest.raises(RulesError) as caught:
        load_rules(path, env={})
    assert str(caught.value).startswith(f"{path}:3:21: unknown rule type 'whale'")


def test_an_unreadable_or_non_utf8_file_is_a_rules_error(tmp_path):
    """A missing file or bytes that are not UTF-8 are reported like any other problem."""
    with pytest.raises(RulesError, match="cannot read rules file"):
        load_rules(tmp_path / "absent.yaml", env={})
    path = tmp_path / "latin1.yaml"
    path.write_bytes(b"version: 1\n# caf\xe9\n")
    with pytest.raises(RulesError) as caught:
        load_rules(path, env={})
    assert str(caught.value) == f"{path}:2: file is not UTF-8 text: byte 0xe9 at offset 16"


def test_a_leading_bom_is_ignored(tmp_path):
    """Files saved by editors that write a BOM load."""
    path = tmp_path / "bom.yaml"
    path.write_bytes("\ufeffversion: 1\nrules: []\n".encode())
    assert load_rules(path, env={}).rules == ()


@pytest.mark.parametrize("path", SHIPPED, ids=lambda path: path.name)
def test_the_shipped_rule_files_load_without_any_environment(path):
    """rules/rules.yaml and every file in rules/examples/ load for a newcomer with no variables."""
    config = load_rules(path, env={})
    assert config.rules
    assert all("has no URL" in warning for warning in config.warnings)


def test_the_default_rules_include_what_the_simulator_should_trigger():
    """The default rule set has the rules `make run` is expected to fire."""
    config = load_rules(SHIPPED[0], env={"WATCHER_TELEGRAM_URL": "tgram://bot/chat"})
    enabled = {rule.name: rule for rule in config.rules if rule.enabled}
    assert {
        "tight spread",
        "moved 5c from entry",
        "stop loss",
        "whale trade",
        "closing soon",
        "settled",
        "feed stale",
    } <= set(enabled)
    spread = enabled["tight spread"]
    assert isinstance(spread, SpreadRule) and spread.max_cents == 2
    assert config.warnings == ()
    assert config.origin(spread).startswith(f"{SHIPPED[0]}:")


_YAMLISH = st.lists(
    st.sampled_from([*"ab:-[]{}\n '\"$#&*!|>,?019.\t", "rules", "type", "  - ", "${"])
).map("".join)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.one_of(st.text(), _YAMLISH))
def test_any_text_either_loads_or_raises_rules_error(text):
    """parse_rules never raises anything but RulesError, whatever the text."""
    try:
        parse_rules(text, env={})
    except RulesError as error:
        assert error.errors and all(e.line is not None for e in error.errors)


_RULE_VALUES = st.one_of(
    st.sampled_from(["spread", "pnl", "velocity", "stale", "5m", "23:00", "x://y", "${X}"]),
    st.integers(-200, 200).map(str),
    st.decimals(allow_nan=True, allow_infinity=True, places=3).map(str),
)
_RULE_KEYS = st.sampled_from(
    ["name", "type", "max_cents", "cents", "within", "after", "direction", "message", "expires"]
)


@settings(max_examples=200, deadline=None)
@given(st.lists(st.dictionaries(_RULE_KEYS, _RULE_VALUES, max_size=6), max_size=4))
def test_random_rules_either_load_or_raise_rules_error(rules):
    """Plausible-looking rules with random values never escape as another exception."""
    lines = ["rules:"] + [
        "  - {" + ", ".join(f"{key}: '{value}'" for key, value in rule.items()) + "}"
        for rule in rules
    ]
    try:
        parse_rules("\n".join(lines) + "\n", env={})
    except RulesError as error:
        assert error.errors
