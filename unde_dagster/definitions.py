"""The table of contents: every asset, check, schedule, sensor and resource of the project."""

import dagster as dg

from unde_dagster.catalog.assets import raw_products
from unde_dagster.resources import resources_from_env

defs = dg.Definitions(
    assets=[raw_products],
    resources=resources_from_env(),
)
