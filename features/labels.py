"""Labels for a horizon after ``as_of``: churn, future spend and future orders (data from ``as_of`` on only)."""

from __future__ import annotations

from datetime import timedelta

import ibis
import pandas as pd

from features.backend import Inputs, as_date, check_identity, connect, input_table, map_keys
from features.dataset import Dataset


def build_labels(
    data: Dataset,
    as_of,
    horizon_days: int,
    *,
    identity: pd.DataFrame | None = None,
    backend=None,
) -> pd.DataFrame:
    """Outcomes in ``[as_of, as_of + horizon_days)`` for every person with a paid order before ``as_of``.

    Parameters
    ----------
    data
        Validated tables.
    as_of
        Cut-off date; the label window starts at ``as_of 00:00``.
    horizon_days
        Window length in days.
    identity
        ``key_to_person`` frame; resolved as in ``build_features`` when ``None``.
    backend
        An Ibis backend; a fresh in-process DuckDB connection when ``None``.

    Returns
    -------
    pandas.DataFrame
        ``person_id``, ``churned`` (bool: no paid order in the window), ``future_spend`` (paid amount in the
        window), ``future_orders`` (paid orders in the window); sorted by ``person_id``.

    Raises
    ------
    ValueError
        When the data ends before the last day of the window (``data_end < as_of + horizon_days - 1 day``).
    """
    as_of = as_date(as_of)
    if horizon_days < 1:
        raise ValueError(f"horizon_days must be at least 1, got {horizon_days}")
    end = as_of + timedelta(days=horizon_days)
    last_day = pd.Timestamp(end - timedelta(days=1))
    data_end = pd.Timestamp(data.data_end)
    if data_end < last_day:
        raise ValueError(
            f"labels for as_of={as_of} and horizon {horizon_days} days need data through {last_day.date()} "
            f"(window [{as_of}, {end})), but the data ends {data_end.date()}; use an earlier as_of or a shorter horizon"
        )
    if identity is None and data.identities is not None and len(data.identities):
        from features.identity import resolve_identities

        identity = resolve_identities(data, as_of=as_of).key_to_person
    con = backend if backend is not None else connect()
    inputs = Inputs(con)
    orders = input_table(data.orders, ["customer_key", "order_ts", "amount", "status"], inputs)
    if "status" not in orders.columns:
        orders = orders.mutate(status=ibis.literal("paid"))
    paid = orders.filter(orders.status == "paid")
    given = (input_table(check_identity(identity), ["customer_key", "person_id"], inputs)
             if identity is not None else None)
    paid = paid.join(map_keys([paid.select("customer_key")], given), "customer_key")
    start_lit = ibis.literal(pd.Timestamp(as_of), type="timestamp")
    end_lit = ibis.literal(pd.Timestamp(end), type="timestamp")
    buyers = paid.filter(paid.order_ts < start_lit).select("person_id").distinct()
    future = paid.filter((paid.order_ts >= start_lit) & (paid.order_ts < end_lit))
    fut = future.group_by("person_id").aggregate(future_orders=future.count(), future_spend=future.amount.sum())
    j = buyers.left_join(fut, buyers.person_id == fut.person_id)
    expr = j.select(
        "person_id",
        future_spend=j.future_spend.fill_null(0.0).cast("float64"),
        future_orders=j.future_orders.fill_null(0).cast("int64"),
    )
    try:
        out = con.to_pyarrow(expr).to_pandas()
    finally:
        inputs.close()
        if backend is None:
            con.disconnect()
    out = out.sort_values("person_id", kind="stable").reset_index(drop=True)
    out.insert(1, "churned", out["future_orders"] == 0)
    return out[["person_id", "churned", "future_spend", "future_orders"]]
