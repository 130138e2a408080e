"""Web maps (folium, Italian) of the territory, the land budget, site comparison and the fund.

Public functions return a ``folium.Map``; :func:`render` gives the HTML string served by the API
and :func:`write_page` writes ``maps/<name>.html`` atomically. Leaflet is vendored in
``pattogis/static/leaflet`` (no CDN, no base tiles by default: the platform runs offline).
"""

from pattogis.maps.base import render, write_page
from pattogis.maps.data import ON_DEMAND, layer_features
from pattogis.maps.pages import (
    budget_map,
    fund_map,
    overview_map,
    rank_interval_columns,
    sites_map,
    write_pages,
)

__all__ = [
    "ON_DEMAND",
    "budget_map",
    "fund_map",
    "layer_features",
    "overview_map",
    "rank_interval_columns",
    "render",
    "sites_map",
    "write_page",
    "write_pages",
]
