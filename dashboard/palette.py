"""Colours for the Explore scatter: one distinct colour per class."""
from __future__ import annotations

import pandas as pd
import plotly.express as px

# 48 distinct qualitative colours: plotly's default has 10, so 11 styles or 24 artists repeated colours.
PALETTE = px.colors.qualitative.Dark24 + px.colors.qualitative.Light24
OTHER, OTHER_COLOUR = "other classes", "#bdbdbd"


def class_colours(labels: pd.Series) -> dict[str, str]:
    """{class: colour}, distinct for every class while they fit the 48-colour palette; past that the
    most frequent 47 keep theirs and the rest share OTHER (grey), so no two legend entries look
    alike (the hover still names each painting's class). Keyed on all points, so a filter never
    re-colours a class."""
    order = labels.value_counts().index.tolist()
    if len(order) <= len(PALETTE):
        return dict(zip(order, PALETTE))
    return {**dict(zip(order[:len(PALETTE) - 1], PALETTE)), OTHER: OTHER_COLOUR}
