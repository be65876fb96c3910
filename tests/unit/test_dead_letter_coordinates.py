"""``broker dead-letters --save``'s coordinates: sources with colons, refusals that say the form."""

from __future__ import annotations

import pytest

from alert_broker.storage.dead_letters import parse_coordinates


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("archive:ztf_public_20231017:0:412", ("archive:ztf_public_20231017", 0, 412)),
        ("kafka:ztf_alerts:3:1234567890123", ("kafka:ztf_alerts", 3, 1234567890123)),
        ("a:b:c:7:0", ("a:b:c", 7, 0)),
    ],
)
def test_coordinates_keep_the_colons_of_the_source(text, expected):
    assert parse_coordinates(text) == expected


@pytest.mark.parametrize(
    "text", ["", "412", "archive:0", ":0:1", "archive:x:1", "archive:0:-1", "archive:0:1.5"]
)
def test_malformed_coordinates_are_refused_with_the_form(text):
    with pytest.raises(ValueError, match="SOURCE:PARTITION:OFFSET"):
        parse_coordinates(text)
