"""`production_catalog`: verified SKUs into the Production DB; runs on the scraper host."""
