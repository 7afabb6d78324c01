"""Campaign evaluation: treatment vs control conversion and revenue per head, with lift and 95% intervals.

Unit of analysis is the person (One-ID ``person_id``): each person's first send of the campaign starts their
window; a person conversion is any *paid* order in ``[first_sent, first_sent + window_days)`` on any of their
customer keys, and revenue is the paid amount in that window (0 for non-converters). People whose keys were
sent to both groups are dropped (their assignment is contaminated) and counted. Touches whose ``customer_key``
the brand does not know (``known_keys``: the keys of ``orders`` and ``identities``, see
:func:`features.contract_rules.known_customer_keys`) are left out and counted: such phantom people would
otherwise count as non-converters of their group.

Intervals (two-sided, ``level`` default 0.95):

- conversion, absolute lift ``p_t − p_c``: Newcombe's hybrid score interval (method 10, from two Wilson
  intervals), which keeps its coverage for small counts and rates near 0; p-value from the pooled two-proportion
  z-test;
- conversion, relative lift ``p_t / p_c − 1``: delta method on the log risk ratio (Katz):
  ``se = sqrt(1/x_t − 1/n_t + 1/x_c − 1/n_c)``;
- revenue per head, absolute lift ``m_t − m_c``: Welch's t interval and Welch's t-test (unequal variances);
- revenue per head, relative lift ``m_t / m_c − 1``: delta method on the log ratio of means:
  ``se = sqrt(s_t² / (n_t m_t²) + s_c² / (n_c m_c²))``.

Every statistic that cannot be computed (e.g. no converters in control for the relative lift) is ``None``.
"""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
from scipy import stats

from features.errors import InputError

TOUCH_COLUMNS = ("campaign_id", "customer_key", "sent_ts", "group")
ORDER_COLUMNS = ("customer_key", "order_ts", "amount")
GROUPS = ("treatment", "control")


def _num(value: float) -> float | None:
    """JSON-friendly float: NaN / inf become ``None``."""
    value = float(value)
    return value if math.isfinite(value) else None


def _interval(lo: float, hi: float) -> list[float | None] | None:
    lo, hi = _num(lo), _num(hi)
    return None if lo is None or hi is None else [lo, hi]


def _require(frame: pd.DataFrame, columns: tuple[str, ...], name: str) -> None:
    if not isinstance(frame, pd.DataFrame):
        raise TypeError(f"{name} must be a pandas DataFrame, got {type(frame).__name__}")
    missing = [c for c in columns if c not in frame.columns]
    if missing:
        raise InputError(f"{name}: missing column(s) {missing}", field=name)


def wilson_interval(x: float, n: float, z: float) -> tuple[float, float]:
    """Wilson score interval for a binomial proportion ``x / n``."""
    if n <= 0:
        return float("nan"), float("nan")
    p = x / n
    denom = 1.0 + z * z / n
    centre = (p + z * z / (2 * n)) / denom
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / denom
    return max(0.0, centre - half), min(1.0, centre + half)


def newcombe_interval(x_t: int, n_t: int, x_c: int, n_c: int, z: float) -> tuple[float, float]:
    """Newcombe's hybrid score interval for ``x_t / n_t − x_c / n_c`` (Newcombe 1998, method 10)."""
    p_t, p_c = x_t / n_t, x_c / n_c
    l_t, u_t = wilson_interval(x_t, n_t, z)
    l_c, u_c = wilson_interval(x_c, n_c, z)
    d = p_t - p_c
    return d - math.sqrt((p_t - l_t) ** 2 + (u_c - p_c) ** 2), d + math.sqrt((u_t - p_t) ** 2 + (p_c - l_c) ** 2)


def conversion_lift(x_t: int, n_t: int, x_c: int, n_c: int, *, level: float = 0.95) -> dict:
    """Absolute and relative lift in conversion rate with intervals and a p-value.

    Parameters
    ----------
    x_t, n_t : int
        Converters and persons in treatment.
    x_c, n_c : int
        Converters and persons in control.
    level : float, default 0.95

    Returns
    -------
    dict
        ``absolute_lift``, ``absolute_ci`` (Newcombe hybrid score), ``relative_lift``, ``relative_ci`` (delta
        method on the log risk ratio; ``None`` without converters in either group), ``p_value`` (pooled
        two-proportion z-test), ``method``.
    """
    if min(n_t, n_c) <= 0:
        raise ValueError(f"both groups need persons, got treatment {n_t}, control {n_c}")
    z = stats.norm.ppf(0.5 + level / 2)
    p_t, p_c = x_t / n_t, x_c / n_c
    lo, hi = newcombe_interval(x_t, n_t, x_c, n_c, z)
    pooled = (x_t + x_c) / (n_t + n_c)
    se0 = math.sqrt(pooled * (1 - pooled) * (1 / n_t + 1 / n_c))
    p_value = 2 * stats.norm.sf(abs(p_t - p_c) / se0) if se0 > 0 else float("nan")
    if x_t > 0 and x_c > 0:
        log_rr = math.log(p_t / p_c)
        se = math.sqrt(max(1 / x_t - 1 / n_t + 1 / x_c - 1 / n_c, 0.0))
        rel, rel_lo, rel_hi = p_t / p_c - 1, math.exp(log_rr - z * se) - 1, math.exp(log_rr + z * se) - 1
    else:
        rel = rel_lo = rel_hi = float("nan")
    return {
        "absolute_lift": _num(p_t - p_c),
        "absolute_ci": _interval(lo, hi),
        "relative_lift": _num(rel),
        "relative_ci": _interval(rel_lo, rel_hi),
        "p_value": _num(p_value),
        "method": "Newcombe hybrid score CI; pooled two-proportion z-test; relative: delta method on log ratio",
    }


def revenue_lift(rev_t: np.ndarray, rev_c: np.ndarray, *, level: float = 0.95) -> dict:
    """Absolute and relative lift in revenue per head with intervals and a p-value.

    Parameters
    ----------
    rev_t, rev_c : array
        Revenue of every person in treatment / control (0 for non-buyers).
    level : float, default 0.95

    Returns
    -------
    dict
        ``absolute_lift``, ``absolute_ci`` (Welch t), ``relative_lift``, ``relative_ci`` (delta method on the
        log ratio of means), ``p_value`` (Welch t-test), ``method``; intervals are ``None`` when they cannot be
        computed (fewer than 2 persons in a group, no variance, or a zero mean for the ratio).
    """
    rev_t, rev_c = np.asarray(rev_t, dtype=float), np.asarray(rev_c, dtype=float)
    if min(len(rev_t), len(rev_c)) == 0:
        raise ValueError(f"both groups need persons, got treatment {len(rev_t)}, control {len(rev_c)}")
    n_t, n_c = len(rev_t), len(rev_c)
    m_t, m_c = float(rev_t.mean()), float(rev_c.mean())
    out = {
        "absolute_lift": _num(m_t - m_c),
        "absolute_ci": None,
        "relative_lift": _num(m_t / m_c - 1) if m_c > 0 else None,
        "relative_ci": None,
        "p_value": None,
        "method": "Welch t interval and test; relative: delta method on log ratio of means",
    }
    if n_t < 2 or n_c < 2:
        return out
    v_t, v_c = float(rev_t.var(ddof=1)) / n_t, float(rev_c.var(ddof=1)) / n_c
    se = math.sqrt(v_t + v_c)
    if se > 0:
        df = (v_t + v_c) ** 2 / ((v_t**2 / (n_t - 1) if v_t > 0 else 0.0) + (v_c**2 / (n_c - 1) if v_c > 0 else 0.0))
        t_crit = stats.t.ppf(0.5 + level / 2, df)
        out["absolute_ci"] = _interval(m_t - m_c - t_crit * se, m_t - m_c + t_crit * se)
        out["p_value"] = _num(2 * stats.t.sf(abs(m_t - m_c) / se, df))
    if m_t > 0 and m_c > 0:
        z = stats.norm.ppf(0.5 + level / 2)
        se_log = math.sqrt(v_t / m_t**2 + v_c / m_c**2)
        log_ratio = math.log(m_t / m_c)
        out["relative_ci"] = _interval(math.exp(log_ratio - z * se_log) - 1, math.exp(log_ratio + z * se_log) - 1)
    return out


def evaluate_campaign(
    touches: pd.DataFrame,
    orders: pd.DataFrame,
    key_to_person: pd.DataFrame,
    campaign_id: str,
    *,
    window_days: int = 30,
    level: float = 0.95,
    data_end: pd.Timestamp | str | None = None,
    known_keys: pd.Index | list[str] | set[str] | None = None,
) -> dict:
    """Treatment vs control conversion and revenue per head of one campaign.

    Parameters
    ----------
    touches : DataFrame
        ``campaign_touches``: ``campaign_id``, ``customer_key``, ``sent_ts``, ``group`` (treatment | control).
    orders : DataFrame
        ``customer_key``, ``order_ts``, ``amount`` and optionally ``status`` (only ``paid`` orders count; all
        orders are paid when the column is absent).
    key_to_person : DataFrame
        ``customer_key`` → ``person_id`` (``IdentityResult.key_to_person``); must cover every touched key.
    campaign_id : str
        The campaign to evaluate.
    window_days : int, default 30
        Conversion window after each person's first send.
    level : float, default 0.95
        Confidence level of the intervals.
    data_end : Timestamp or str, optional
        Last timestamp the data covers (``Dataset.data_end``); defaults to the last ``order_ts``. People whose
        window runs past it are counted in ``censored_persons`` and a warning is added.
    known_keys : Index, list or set of str, optional
        The customer keys the brand knows (``features.contract_rules.known_customer_keys(orders, identities)``).
        Touches of other keys are left out, counted in ``unknown_key_touches`` and named in a warning with the
        count per group. ``None`` (default): every touched key is used.

    Returns
    -------
    dict
        JSON-ready: ``campaign_id``, ``window_days``, ``level``, ``first_sent``, ``last_sent``, ``treatment``
        and ``control`` (``persons``, ``converters``, ``conversion_rate``, ``revenue``, ``revenue_per_head``),
        ``conversion`` and ``revenue_per_head`` (``absolute_lift``, ``absolute_ci``, ``relative_lift``,
        ``relative_ci``, ``p_value``, ``method``), ``incremental_conversions`` and ``incremental_revenue``
        (absolute lift × treated persons), ``mixed_group_persons``, ``censored_persons``, ``unknown_key_touches``,
        ``warnings``.

    Raises
    ------
    ValueError
        Unknown ``campaign_id`` (the message lists known ones), a campaign without a control or treatment
        group, unknown ``group`` values, touched keys missing from ``key_to_person``, bad parameters.
    """
    _require(touches, TOUCH_COLUMNS, "campaign_touches")
    _require(orders, ORDER_COLUMNS, "orders")
    _require(key_to_person, ("customer_key", "person_id"), "key_to_person")
    if not isinstance(window_days, int | np.integer) or window_days <= 0:
        raise InputError(f"window_days must be a positive integer, got {window_days!r}", field="window_days")
    if not 0 < level < 1:
        raise InputError(f"level must be in (0, 1), got {level!r}", field="level")

    camp = touches.loc[touches["campaign_id"].astype(str) == str(campaign_id)]
    if camp.empty:
        known = sorted(touches["campaign_id"].dropna().astype(str).unique().tolist())
        shown = ", ".join(known[:10]) + (f", … ({len(known)} in all)" if len(known) > 10 else "")
        raise InputError(f"campaign_id {campaign_id!r}: unknown campaign; known campaigns: {shown or 'none'}",
                         field="campaign_id")
    groups = camp["group"].astype(str).str.lower()
    unknown_touches, unknown_note = 0, None
    if known_keys is not None:
        unknown = ~camp["customer_key"].astype(str).isin(pd.Index(known_keys, dtype="str"))
        if unknown.any():
            unknown_touches = int(unknown.sum())
            per_group = groups[unknown].value_counts().sort_index()
            unknown_note = (f"{unknown_touches} touch(es) of customer_keys found in neither orders nor identities "
                            f"are left out ({', '.join(f'{g} {n}' for g, n in per_group.items())})")
            camp, groups = camp.loc[~unknown], groups.loc[~unknown]
    bad = ~groups.isin(GROUPS)
    if bad.any():
        raise InputError(
            f"campaign_touches: column 'group' must be treatment or control; {int(bad.sum())} row(s) of "
            f"campaign {campaign_id!r} hold {sorted(groups[bad].unique().tolist())[:5]}",
            field=("campaign_touches", "group"), rows=int(bad.sum()),
        )
    for needed in GROUPS:
        if not (groups == needed).any():
            raise InputError(
                f"campaign_id {campaign_id!r}: no {needed} group in campaign_touches"
                + (f" after leaving out {unknown_touches} touch(es) of unknown customer_keys" if unknown_touches else "")
                + ", so there is nothing to compare against; lift needs both a treatment and a randomised control "
                "group", field="campaign_id"
            )

    mapping = key_to_person.drop_duplicates("customer_key").set_index("customer_key")["person_id"]
    camp = pd.DataFrame(
        {
            "person_id": camp["customer_key"].map(mapping).to_numpy(),
            "sent_ts": pd.to_datetime(camp["sent_ts"]).to_numpy(),
            "group": groups.to_numpy(),
        }
    )
    unmapped = camp["person_id"].isna()
    if unmapped.any():
        raise InputError(
            f"key_to_person: {int(unmapped.sum())} touched customer_key(s) of campaign {campaign_id!r} have no "
            "person_id; pass the identity resolution built from the same dataset",
            field=("key_to_person", "person_id"), rows=int(unmapped.sum()),
        )

    camp["treated"] = (camp["group"] == "treatment").astype(np.int8)
    per_person = camp.groupby("person_id", sort=True).agg(
        sent_ts=("sent_ts", "min"), lo=("treated", "min"), hi=("treated", "max")
    )
    mixed = per_person["lo"] != per_person["hi"]
    per_person = per_person.loc[~mixed, ["sent_ts"]].assign(
        group=np.where(per_person.loc[~mixed, "hi"] == 1, "treatment", "control")
    )
    for needed in GROUPS:
        if not (per_person["group"] == needed).any():
            raise InputError(
                f"campaign_id {campaign_id!r}: no {needed} persons left after dropping {int(mixed.sum())} "
                "person(s) sent to both groups", field="campaign_id"
            )

    paid = orders
    if "status" in orders.columns:
        paid = orders.loc[orders["status"].fillna("paid").astype(str).str.lower() == "paid"]
    paid = pd.DataFrame(
        {
            "person_id": paid["customer_key"].map(mapping).to_numpy(),
            "order_ts": pd.to_datetime(paid["order_ts"]).to_numpy(),
            "amount": pd.to_numeric(paid["amount"], errors="coerce").fillna(0.0).to_numpy(),
        }
    )
    joined = paid.merge(per_person["sent_ts"], left_on="person_id", right_index=True, how="inner")
    window = pd.Timedelta(days=int(window_days))
    in_window = (joined["order_ts"] >= joined["sent_ts"]) & (joined["order_ts"] < joined["sent_ts"] + window)
    revenue = joined.loc[in_window].groupby("person_id")["amount"].sum()
    per_person["converted"] = per_person.index.isin(revenue.index)
    per_person["revenue"] = revenue.reindex(per_person.index, fill_value=0.0).to_numpy()

    end = pd.Timestamp(data_end) if data_end is not None else pd.to_datetime(orders["order_ts"]).max()
    censored = int((per_person["sent_ts"] + window > end).sum()) if pd.notna(end) else len(per_person)
    warnings = [unknown_note] if unknown_note else []
    if censored:
        warnings.append(
            f"{censored} person(s) have a {window_days}-day window running past the data end ({end}); "
            "their conversions are undercounted in both groups"
        )
    if mixed.any():
        warnings.append(f"{int(mixed.sum())} person(s) were sent to both groups and are left out")

    arms = {}
    values = {}
    for name in GROUPS:
        arm = per_person.loc[per_person["group"] == name]
        n = len(arm)
        x = int(arm["converted"].sum())
        rev = arm["revenue"].to_numpy(dtype=float)
        values[name] = (x, n, rev)
        arms[name] = {
            "persons": n,
            "converters": x,
            "conversion_rate": x / n,
            "revenue": float(rev.sum()),
            "revenue_per_head": float(rev.mean()),
        }
    x_t, n_t, rev_t = values["treatment"]
    x_c, n_c, rev_c = values["control"]
    conversion = conversion_lift(x_t, n_t, x_c, n_c, level=level)
    revenue_stats = revenue_lift(rev_t, rev_c, level=level)
    if min(n_t, n_c) < 30:
        warnings.append(f"small groups (treatment {n_t}, control {n_c}): intervals are approximate")

    return {
        "campaign_id": str(campaign_id),
        "window_days": int(window_days),
        "level": float(level),
        "first_sent": per_person["sent_ts"].min().isoformat(),
        "last_sent": per_person["sent_ts"].max().isoformat(),
        "treatment": arms["treatment"],
        "control": arms["control"],
        "conversion": conversion,
        "revenue_per_head": revenue_stats,
        "incremental_conversions": _num(conversion["absolute_lift"] * n_t),
        "incremental_revenue": _num(revenue_stats["absolute_lift"] * n_t),
        "mixed_group_persons": int(mixed.sum()),
        "censored_persons": censored,
        "unknown_key_touches": unknown_touches,
        "warnings": warnings,
    }
