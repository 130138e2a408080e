"""Money in exact cents and Italian-style formatting of amounts and shares.

All fund arithmetic is done on integer euro cents (``int`` / ``int64``) so sums never drift;
floats only appear at the edges (input tables, JSON output as euros with two decimals).
"""

from __future__ import annotations

import math
from decimal import ROUND_HALF_UP, Decimal, InvalidOperation

import numpy as np
import numpy.typing as npt


def to_cents(eur: float | int | str | Decimal) -> int:
    """Euros → integer cents, rounding half up at the cent (via the decimal text, not the float)."""
    try:
        d = Decimal(str(eur))
    except InvalidOperation as e:
        raise ValueError(f"not an amount in euros: {eur!r}") from e
    if not d.is_finite():
        raise ValueError(f"not a finite amount in euros: {eur!r}")
    return int((d * 100).quantize(Decimal(1), rounding=ROUND_HALF_UP))


def to_cents_array(eur: npt.ArrayLike) -> npt.NDArray[np.int64]:
    """Vectorised euros → cents. Inputs are amounts with at most two decimals; ``rint`` of
    ``x * 100`` recovers the cent exactly for any such float below 2**53 cents."""
    a = np.asarray(eur, dtype=float)
    return np.rint(a * 100.0).astype(np.int64)


def cents_to_eur(cents: int | np.integer) -> float:
    """Cents → euros as a float with two decimals (for JSON output only)."""
    return round(int(cents) / 100.0, 2)


def eur(cents: int | np.integer) -> str:
    """Italian-style amount: ``22981447`` → ``'229.814,47 €'``."""
    c = int(cents)
    sign = "-" if c < 0 else ""
    whole, frac = divmod(abs(c), 100)
    return f"{sign}{whole:,}".replace(",", ".") + f",{frac:02d} €"


def pct(share: float, decimals: int = 1) -> str:
    """Italian-style percentage, truncated (never rounded up past a threshold): 0.62 → '62%',
    0.9985 → '99,8%'."""
    if share is None or (isinstance(share, float) and math.isnan(share)):
        return "n.d."
    scale = 10**decimals
    # round first to kill binary noise (0.29 * 100 = 28.999…), then truncate
    v = math.floor(round(float(share) * 100 * scale, 6)) / scale
    text = f"{v:.{decimals}f}".rstrip("0").rstrip(".")
    return text.replace(".", ",") + "%"


def merit_text(m: float, decimals: int = 3) -> str:
    """Merit with a decimal comma, trailing zeros dropped: 71.25 → '71,25'."""
    text = f"{m:.{decimals}f}".rstrip("0").rstrip(".")
    return text.replace(".", ",")
