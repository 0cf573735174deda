"""Production sync: verified staging SKUs → the Production DB catalog (`catalog_products`)."""
