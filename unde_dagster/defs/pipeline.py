"""`brand_catalog_pipeline`: one brand end to end, for a first load or a by-hand catch-up."""

import dagster as dg

from unde_dagster.defs.catalog.assets import raw_products

brand_catalog_pipeline = dg.define_asset_job(
    "brand_catalog_pipeline",
    selection=dg.AssetSelection.assets(raw_products).downstream(),
    description="One brand end to end: catalog → originals → collages → Ximilar index. "
    "Launch by hand for a brand's first load; day to day the stages run on their own.",
)
