"""`store_availability`: hourly in-store stock of the brand's SKUs in its Dubai stores."""

import dagster as dg
from pydantic import Field

from unde_dagster.availability.client import HttpPolicy
from unde_dagster.availability.poll import PollSettings, poll_brand
from unde_dagster.brands import brand as brand_of
from unde_dagster.defs.brand_schedules import stops_when_terminated
from unde_dagster.defs.partitions import brand_partitions
from unde_dagster.resources.availability import AvailabilityApi
from unde_dagster.resources.databases import StagingDatabase


class StoreAvailabilityConfig(dg.Config):
    store_ids: list[int] = Field(
        default_factory=list, description="poll only these stores (default: all in raw_stores)"
    )
    refresh_stores: bool = Field(default=True, description="reload raw_stores from the locator")


@dg.asset(
    partitions_def=brand_partitions,
    kinds={"postgres"},
    description=(
        "In-store stock per Dubai store, colour SKU and UTC day (`raw_availability`, latest "
        "poll of the day wins); the brand's stores come from its store locator (`raw_stores`)."
    ),
)
@stops_when_terminated
def store_availability(
    context: dg.AssetExecutionContext,
    config: StoreAvailabilityConfig,
    staging_db: StagingDatabase,
    availability_api: AvailabilityApi,
) -> dg.MaterializeResult:
    brand = brand_of(context.partition_key)
    api = availability_api
    settings = PollSettings(
        base_url=api.base_url(brand.key), country=api.country, language=api.language,
        city=api.city, latitude=api.latitude, longitude=api.longitude, radius_km=api.radius_km,
        stores_per_request=api.stores_per_request,
        references_per_request=api.references_per_request,
        request_delay_s=api.request_delay_s, only_store_ids=tuple(config.store_ids),
        refresh_stores=config.refresh_stores,
    )
    policy = HttpPolicy(timeout_s=api.timeout_s, max_attempts=api.max_attempts,
                        backoff_s=api.backoff_s, max_backoff_s=api.max_backoff_s)
    with staging_db.connect(autocommit=True) as conn, api.session() as session:
        result = poll_brand(session, conn, brand.key, brand.source, settings, policy,
                            run_id=context.run.run_id)
    if result.stores == 0:
        raise dg.Failure(description=f"{brand.key}: no {api.city} stores known "
                         f"(locator: {result.locator_error or 'returned none'})")
    if result.requests and result.failed_requests == result.requests:
        raise dg.Failure(description=f"{brand.key}: every stock request failed: "
                         f"{dict(result.errors_by_kind)}")
    return dg.MaterializeResult(
        metadata={
            "stores": result.stores,
            "stores_from": result.stores_from,
            "products": result.products,
            "products_without_reference": result.products_without_reference,
            "requests": result.requests,
            "failed_requests": result.failed_requests,
            "rows_written": result.rows,
            "out_of_stock_share": result.out_of_stock_share,
            "errors_by_kind": dg.MetadataValue.json(dict(result.errors_by_kind)),
        }
    )
