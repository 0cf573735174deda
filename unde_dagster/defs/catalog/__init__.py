"""`raw_products`: the brand catalog from Apify; runs on the apify host."""
