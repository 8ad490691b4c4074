"""Storage: SQLAlchemy records, the store, migrations and exports.

The record modules are imported here so every table is registered on ``models.records.Base`` (the
migrations in ``models/migrations`` are checked against it).
"""

from models import codings as _codings  # noqa: F401  (coder, coding)
from models import decisions as _decisions  # noqa: F401  (decision log, coder tokens, theme keys)
