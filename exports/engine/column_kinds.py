"""What the engine asks of a column's Arrow type and plan, whatever the source: numbers and
dates (masks, rules), order (the profile's min and max), a text fallback (a value that does
not fit). Each driver's own type mapping is in its package (connections/drivers/*/types.py).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from connections.drivers.base import NATIVE

if TYPE_CHECKING:
    import pyarrow as pa

    from connections.drivers.base import ColumnPlan

# The questions are asked of types that exist already: pyarrow is loaded by then, and
# importing it here, not at the top, keeps it out of the portal's and commands' start-up.


def is_number(arrow_type: pa.DataType) -> bool:
    import pyarrow as pa

    return (
        pa.types.is_integer(arrow_type)
        or pa.types.is_floating(arrow_type)
        or pa.types.is_decimal(arrow_type)
    )


def is_date_or_timestamp(arrow_type: pa.DataType) -> bool:
    import pyarrow as pa

    return pa.types.is_date(arrow_type) or pa.types.is_timestamp(arrow_type)


def is_ordered(column_plan: ColumnPlan) -> bool:
    """Whether min and max of the column in the file mean min and max at the source."""
    import pyarrow as pa

    kind = column_plan.arrow_type
    if column_plan.representation != NATIVE or isinstance(kind, pa.BaseExtensionType):
        return False  # text standing for another type sorts as text, not as that type
    return not (pa.types.is_binary(kind) or pa.types.is_boolean(kind))


def can_fall_back(column_plan: ColumnPlan) -> bool:

    return not column_plan.fallback and column_plan.may_not_fit
