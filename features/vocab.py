"""The vocabularies of the data: sales channels, behaviour event types, lifecycle stages and RFM segments.

Defined once here; the data contract (``features.contract``), the feature queries (``features.rfm``,
``features.interactions``), the feature spec (``features.spec``), the simulator (a subset of the channels) and
the targeting rules read them from this module.
"""

from __future__ import annotations

#: Sales channels an order, event, touch or customer key may carry (unknown or blank values become ``other``).
CHANNELS = ("tmall", "jd", "wechat", "douyin", "store", "web", "other")

#: Behaviour event types (``events.event_type``).
EVENT_TYPES = (
    "view",
    "cart",
    "favorite",
    "search",
    "coupon_claim",
    "coupon_redeem",
    "message_open",
    "message_click",
    "livestream_view",
    "share",
    "review",
    "store_visit",
)

#: Order statuses; only ``paid`` orders count as purchases.
STATUSES = ("paid", "refunded", "cancelled")

#: Campaign touch groups.
GROUPS = ("treatment", "control")

#: Lifecycle stages of a buyer (see ``features.rfm.lifecycle_stage``), from newest to most lost.
LIFECYCLE_STAGES = ("new", "active", "reactivated", "at_risk", "lapsed")

#: Stages a win-back campaign addresses.
WINBACK_STAGES = ("lapsed", "at_risk")

#: (R high, F high, M high) -> (Chinese name, English name) of the eight RFM segments.
SEGMENTS: dict[tuple[bool, bool, bool], tuple[str, str]] = {
    (True, True, True): ("重要价值客户", "high value"),
    (True, False, True): ("重要发展客户", "high development"),
    (False, True, True): ("重要保持客户", "high retention"),
    (False, False, True): ("重要挽留客户", "high winback"),
    (True, True, False): ("一般价值客户", "general value"),
    (True, False, False): ("一般发展客户", "general development"),
    (False, True, False): ("一般保持客户", "general retention"),
    (False, False, False): ("一般挽留客户", "general winback"),
}
#: Chinese segment names in display order.
SEGMENT_ORDER = [v[0] for v in SEGMENTS.values()]
#: Chinese segment name -> English name.
SEGMENT_EN = dict(SEGMENTS.values())


def subset(names: tuple[str, ...], vocabulary: tuple[str, ...], what: str) -> tuple[str, ...]:
    """``names`` after checking each is in ``vocabulary`` (``ValueError`` naming the unknown ones).

    Parameters
    ----------
    names
        The selected names, in the order the caller wants them.
    vocabulary
        The full vocabulary (e.g. ``CHANNELS``).
    what
        What the names are, for the error message (e.g. ``"channel"``).
    """
    unknown = [n for n in names if n not in vocabulary]
    if unknown:
        raise ValueError(f"unknown {what} name(s) {unknown}; known: {list(vocabulary)}")
    return tuple(names)
