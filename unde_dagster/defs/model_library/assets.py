"""`model_library`: one fal.ai image per model template; each materialization = next version."""

import dagster as dg

from unde_dagster.db.scraper_logs import BatchLog, write_scraper_log
from unde_dagster.defs.brand_schedules import stops_when_terminated
from unde_dagster.model_library.generate import (
    SCRAPER_NAME,
    GenerationFailed,
    GenerationSettings,
    generate,
    store_version,
)
from unde_dagster.model_library.templates import all_templates, template
from unde_dagster.resources.databases import ProductionDatabase, StagingDatabase
from unde_dagster.resources.fal import FalResource
from unde_dagster.resources.object_store import ObjectStore

model_template_partitions = dg.StaticPartitionsDefinition(list(all_templates()))
FAL_POOL = "fal"  # set its limit to 1 (`dagster instance concurrency set fal 1`): fal rate limits


class ModelLibraryConfig(dg.Config):
    image_size: str = "portrait_4_3"
    num_inference_steps: int = 28
    guidance_scale: float = 3.5


@dg.asset(
    partitions_def=model_template_partitions,
    kinds={"postgres", "s3"},
    pool=FAL_POOL,
    description=(
        "AI fashion-model image of one template (gender × age × body type × pose × style) "
        "from fal.ai `fal-ai/flux/dev`, copied to `models/{template}/v{n}.jpg` with a "
        "thumbnail; one `model_library` row per (template_id, version)."
    ),
)
@stops_when_terminated
def model_library(
    context: dg.AssetExecutionContext,
    config: ModelLibraryConfig,
    fal: FalResource,
    object_store: ObjectStore,
    production_db: ProductionDatabase,
    staging_db: StagingDatabase,
) -> dg.MaterializeResult:
    t = template(context.partition_key)
    settings = GenerationSettings(
        application=fal.application, image_size=config.image_size,
        num_inference_steps=config.num_inference_steps, guidance_scale=config.guidance_scale,
        timeout_s=fal.timeout_s, poll_interval_s=fal.poll_interval_s,
        download_timeout_s=fal.download_timeout_s,
    )
    batch = BatchLog(scraper_name=SCRAPER_NAME, run_id=context.run.run_id, fetched=1,
                     metadata={"template_id": t.template_id})
    s3 = object_store.get_client()
    try:
        generated = generate(fal.client(), t, settings)
        with production_db.connect(autocommit=True) as conn:
            version, image_url, thumb_url = store_version(
                conn, t, generated, settings,
                lambda key, body: object_store.put_public(s3, key, body))
    except GenerationFailed as exc:
        batch.errors, batch.error_message = 1, str(exc)
        batch.metadata.update({"kind": exc.kind, "fal_request_id": exc.request_id})
        with staging_db.connect(autocommit=True) as log_conn:
            write_scraper_log(log_conn, batch)
        raise dg.Failure(description=f"{t.template_id}: {exc}",
                         metadata={"kind": exc.kind}) from exc
    batch.new = 1
    batch.metadata.update({"version": version, "fal_request_id": generated.request_id})
    with staging_db.connect(autocommit=True) as log_conn:
        write_scraper_log(log_conn, batch)
    return dg.MaterializeResult(
        metadata={
            "template_id": t.template_id,
            "version": version,
            "image_url": dg.MetadataValue.url(image_url),
            "thumbnail_url": dg.MetadataValue.url(thumb_url),
            "fal_request_id": generated.request_id,
            "processing_time_ms": generated.processing_time_ms,
            "size": f"{generated.width}x{generated.height}",
            "prompt": t.prompt,
        }
    )
