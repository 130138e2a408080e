"""Errors that say what is wrong, where (file, row, field), and what to do next.

One hierarchy for the library and both faces. Every error carries the HTTP status the API
answers with (``status``, as pygeoapi's exceptions do), so the API has one handler and no table:

===========================  ======  ==========================================================
error                        status  when
===========================  ======  ==========================================================
``BadRequest``               400     a request parameter that cannot be parsed, or unknown
``Unauthenticated``          401     missing, unknown or revoked API key
``PermissionDenied``         403     a role writing what it does not own
``NotFound``                 404     unknown collection, feature, proposal, call, comune...
``ConflictError``            409     clashes with the stored state (withdrawn, id taken)
``PreconditionFailed``       412     ``If-Match`` names a version that is no longer current
``PayloadTooLarge``          413     a body or an upload over the limits (also after inflating)
``UnsupportedMediaType``     415     a body in a format the endpoint does not read
``InputError``               422     well-formed input that fails validation (file, rows, field)
``InfeasibleError``          422     constraints without a solution
``PreconditionRequired``     428     an update without ``If-Match``
``ConfigError``              500     the server's configuration is broken
``MissingDataError``         503     the layer set or raw data is not there (message says how)
===========================  ======  ==========================================================
"""

from __future__ import annotations

from typing import ClassVar


class PattogisError(Exception):
    """Base class of every error pattogis raises on purpose. ``status``: the HTTP status."""

    status: ClassVar[int] = 500


class ConfigError(PattogisError):
    """A configuration file is missing a key or has a value of the wrong kind."""

    status = 500


class InputError(PattogisError):
    """Bad input data. Carries the file, row(s) (counted from 1) and field where it was found."""

    status = 422

    def __init__(
        self,
        message: str,
        *,
        file: str | None = None,
        rows: list[int] | None = None,
        field: str | None = None,
        hint: str | None = None,
    ) -> None:
        self.file = file
        self.rows = rows or []
        self.field = field
        self.hint = hint
        where = []
        if file:
            where.append(f"file {file}")
        if self.rows:
            shown = ", ".join(str(r) for r in self.rows[:10])
            more = f" (+{len(self.rows) - 10} more)" if len(self.rows) > 10 else ""
            where.append(f"row{'s' if len(self.rows) > 1 else ''} {shown}{more}")
        if field:
            where.append(f"field '{field}'")
        text = message + (f" [{'; '.join(where)}]" if where else "")
        if hint:
            text += f". {hint}"
        super().__init__(text)

    def to_dict(self) -> dict:
        return {"detail": str(self), "file": self.file, "rows": self.rows, "field": self.field}


class BadRequest(InputError):
    """A request parameter that cannot be parsed (bad bbox, limit, datetime, unknown name)."""

    status = 400


class PayloadTooLarge(InputError):
    """A request body or an upload over the limits, before or after decompression."""

    status = 413


class UnsupportedMediaType(InputError):
    """A body in a format the endpoint does not read."""

    status = 415


class ConflictError(InputError):
    """Well-formed request that clashes with the state of the store: a withdrawn proposal, a
    proposal_id already taken."""

    status = 409


class PreconditionFailed(ConflictError):
    """``If-Match`` names a version of the proposal that is no longer the current one."""

    status = 412


class PreconditionRequired(InputError):
    """An update or withdrawal sent without ``If-Match`` (the version it was based on)."""

    status = 428


class MissingDataError(PattogisError):
    """A raw file or built layer is missing; the message names it and how to get it."""

    status = 503


class InfeasibleError(PattogisError):
    """An optimisation has no solution; the message names the conflicting constraints."""

    status = 422


class PermissionDenied(PattogisError):
    """A role tried to write (or read) what it does not own."""

    status = 403


class Unauthenticated(PermissionDenied):
    """No API key, or a key that is unknown or revoked."""

    status = 401


class NotFound(PattogisError):
    """An unknown collection, feature, proposal, scenario or comune."""

    status = 404
