"""Errors that say what is wrong, where (file, row, field), and what to do next."""

from __future__ import annotations


class PattogisError(Exception):
    """Base class of every error pattogis raises on purpose."""


class ConfigError(PattogisError):
    """A configuration file is missing a key or has a value of the wrong kind."""


class InputError(PattogisError):
    """Bad input data. Carries the file, row(s) and field where it was found."""

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


class MissingDataError(PattogisError):
    """A raw file or built layer is missing; the message names it and how to get it."""


class InfeasibleError(PattogisError):
    """An optimisation has no solution; the message names the conflicting constraints."""


class PermissionDenied(PattogisError):
    """A role tried to write what it does not own."""


class NotFound(PattogisError):
    """An unknown collection, feature, proposal, scenario or comune."""
