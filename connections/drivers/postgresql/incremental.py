"""Exact incremental exports of PostgreSQL tables by the transaction that wrote each row.

Every row version carries `xmin`, the transaction that wrote it (inserted or updated the
row). An incremental table takes, from the job's snapshot, the visible rows whose writer is
in a window of transaction ids [after, before):

- `before` is the snapshot's xmin: every transaction below it had ended when the snapshot
  was taken, subtransactions too (a subtransaction's id is above its parent's), so each
  committed row version written below it is either visible in the snapshot or replaced by
  a newer version, whose writer is above it.
- `after` is the previous export's `before` for this table.

So the windows of a chain meet without gap or overlap: a row version is in exactly one,
taken by the export whose snapshot still sees it. A transaction that was running when a
snapshot was taken (and commits late) is above that snapshot's xmin: the next export takes
its rows. The first export of a chain (the base) takes every visible row written below its
`before`; the rows above are the next export's.

`xmin` has 32 bits; the snapshot's ids have 64 (the epoch). A row's full id is placed
within the 2^32 ids below the snapshot's xmax, which is exact while the window's start is
less than 2^31 ids back: beyond that (wraparound) the table is exported whole again, as a
base, with the reason in the manifest. Rows frozen by a PostgreSQL older than 9.4 carry
xmin 2 (frozen): they are in the base only.

Deletes are not seen (a deleted row has no version left to read); a soft-delete column
(an update) is.
"""

WRAP = 1 << 32
HORIZON = 1 << 31


class SnapshotXids:
    """A snapshot's transaction ids as txid_current_snapshot() writes them: "xmin:xmax:xip,..."."""

    def __init__(self, text: str):
        xmin, xmax, xip = text.split(":")
        self.text = text
        self.xmin, self.xmax = int(xmin), int(xmax)
        self.xip = [int(x) for x in xip.split(",") if x]


def window(snapshot_xids: str, after: int | None, reason: str = "") -> dict:
    """The table's window in this snapshot: {"mode": "base" or "incremental", "after",
    "before", "xmax", "reason"} (reason: why a base, when it is one)."""
    snapshot = SnapshotXids(snapshot_xids)
    if after is not None and after > snapshot.xmin:
        after, reason = (
            None,
            (
                f"the previous export's window ends at transaction {after}, after this snapshot's "
                f"{snapshot.xmin}: the source is not the database it was (restored, or another), "
                "so the table is exported whole"
            ),
        )
    elif after is not None and snapshot.xmax - after >= HORIZON:
        after, reason = (
            None,
            (
                f"more than 2^31 transactions ran since the previous export (from {after} to "
                f"{snapshot.xmax}): 32-bit xmin values wrap around, so the table is exported whole"
            ),
        )
    return {
        "mode": "base" if after is None else "incremental",
        "after": after,
        "before": snapshot.xmin,
        "xmax": snapshot.xmax,
        "reason": reason if after is None else "",
    }


def bounds(window: dict) -> dict:
    """What the SQL condition needs, in the 32-bit arithmetic of xmin: the distance back
    from the snapshot's xmax, d = (xmax - xmin) mod 2^32, of a row in the window is in
    (xmax - before, xmax - after]."""
    xmax = window["xmax"]
    return {
        "xmax32": xmax % WRAP,
        "nearer_than": xmax - window["before"],  # d > this: written below `before`
        "within": None if window["after"] is None else xmax - window["after"],
    }
