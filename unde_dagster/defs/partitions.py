"""The brand partitions every catalog stage shares (keys from `brands.yaml`)."""

import dagster as dg

from unde_dagster.brands import load_brands

brand_partitions = dg.StaticPartitionsDefinition(list(load_brands()))
