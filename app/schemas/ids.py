"""Bounded integer ids for paths, queries and bodies.

Primary keys are 32-bit ``INTEGER`` on PostgreSQL (SQLite takes 64-bit); an id outside
``1..MAX_DB_ID`` cannot exist, so it is refused as 422 naming the field instead of
overflowing the database driver (a 500).
"""

from typing import Annotated

from annotated_types import Interval

MAX_DB_ID = 2**31 - 1
DbId = Annotated[int, Interval(ge=1, le=MAX_DB_ID)]
