"""Storage: SQLAlchemy records, the store and exports.

``models.codings`` is imported here so its tables (coder, coding) are registered on
``models.records.Base`` before any ``Store`` runs ``create_all``.
"""

from models import codings as _codings  # noqa: F401  (registers the coder and coding tables)
