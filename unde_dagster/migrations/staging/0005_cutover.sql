-- Cut-over from the old servers (SPEC §7): their rows continue under the project's rules,
-- and no writer, old or new, moves a row backwards.

-- The item-id key an old row had before the first per-colour catalog run adopted it.
ALTER TABLE raw_products ADD COLUMN IF NOT EXISTS legacy_external_id VARCHAR(100);

-- Old Ximilar records to remove, by the SKU id their metadata carries (the old server's
-- record ids are not known: the Ximilar stage finds them by `sku_id` and deletes them).
CREATE TABLE IF NOT EXISTS ximilar_legacy_skus (
    brand VARCHAR(50) NOT NULL,
    sku_id VARCHAR(100) NOT NULL,
    queued_at TIMESTAMPTZ NOT NULL DEFAULT NOW(),
    PRIMARY KEY (brand, sku_id)
);

-- Statuses the project does not know (an old worker's in-flight marker) resume where the
-- row's own data says the work stands.
UPDATE raw_products
   SET image_status = CASE WHEN jsonb_typeof(image_urls) = 'array'
                                AND jsonb_array_length(image_urls) > 0
                           THEN 'uploaded' ELSE 'pending' END
 WHERE image_status IS NULL
    OR image_status NOT IN ('pending', 'uploaded', 'collage_ready', 'error');
UPDATE raw_products
   SET ximilar_status = CASE WHEN jsonb_typeof(ximilar_synced_urls) = 'array'
                                  AND jsonb_array_length(ximilar_synced_urls) > 0
                             THEN 'partial' ELSE 'pending' END
 WHERE ximilar_status IS NULL
    OR ximilar_status NOT IN ('pending', 'partial', 'synced', 'error');
UPDATE raw_products SET sync_status = 'pending'
 WHERE sync_status IS NULL OR sync_status NOT IN ('pending', 'synced', 'skipped', 'error');

-- Old image errors carry only image_status='error', error_message, retry_count and
-- updated_at: the failed stage is inferred from what the row holds (stored originals mean
-- the download had succeeded), the attempt time is the error's updated_at, and the old
-- retry count becomes that stage's attempts. Then the normal retry rules apply.
UPDATE raw_products
   SET image_error_stage = CASE WHEN jsonb_typeof(image_urls) = 'array'
                                     AND jsonb_array_length(image_urls) > 0
                                THEN 'collage' ELSE 'download' END,
       image_attempted_at = COALESCE(image_attempted_at, updated_at, NOW())
 WHERE image_status = 'error' AND image_error_stage IS NULL;
UPDATE raw_products SET collage_attempts = GREATEST(collage_attempts, image_attempts)
 WHERE image_status = 'error' AND image_error_stage = 'collage' AND collage_attempts = 0;

-- Old Ximilar errors were written to error_message; the retry pass reads ximilar_error.
UPDATE raw_products
   SET ximilar_error = COALESCE(NULLIF(error_message, ''), 'error written by the old server')
 WHERE ximilar_status = 'error' AND ximilar_error IS NULL;

-- Forward-only writes, whoever the writer is (an old worker not yet stopped included):
-- * image_status never moves back (collage_ready -> uploaded/error, uploaded -> pending),
--   except when the same write changes the photo list (the catalog requeueing new photos);
-- * a row under another run's live claim changes image_status only by that claim's holder
--   (our writes end the claim in the same statement; an outside writer leaves it as is);
-- * an error written without its stage (an old worker) gets one, with the attempt counted
--   and timed, so the retry rules pick it up; likewise an outside Ximilar error.
-- An operator who means to send rows back (say, to fetch them again) does it in a
-- transaction that first runs `SET LOCAL unde.allow_backward = 'on'`.
-- A refused write leaves the row untouched (the statement goes on with its other rows) and
-- is reported in the server log as a WARNING naming the role.
CREATE OR REPLACE FUNCTION unde_raw_products_forward_only() RETURNS trigger
LANGUAGE plpgsql AS $$
DECLARE
    old_rank INT := CASE OLD.image_status WHEN 'pending' THEN 0 WHEN 'uploaded' THEN 1
                                          WHEN 'collage_ready' THEN 2 END;
    new_rank INT := CASE NEW.image_status WHEN 'pending' THEN 0 WHEN 'uploaded' THEN 1
                                          WHEN 'collage_ready' THEN 2 END;
BEGIN
    IF NEW.image_status IS DISTINCT FROM OLD.image_status
       AND NEW.original_image_urls IS NOT DISTINCT FROM OLD.original_image_urls
       AND current_setting('unde.allow_backward', true) IS DISTINCT FROM 'on' THEN
        IF (OLD.claim_token IS NOT NULL AND OLD.claimed_until > NOW()
                AND NEW.claim_token IS NOT DISTINCT FROM OLD.claim_token)
           OR new_rank < old_rank
           OR (NEW.image_status = 'error' AND OLD.image_status = 'collage_ready') THEN
            RAISE WARNING 'unde-dagster: refused write by role % on raw_products id %: '
                          'image_status % -> % (%)', current_user, OLD.id,
                          OLD.image_status, NEW.image_status,
                          CASE WHEN OLD.claim_token IS NOT NULL
                                    AND NEW.claim_token IS NOT DISTINCT FROM OLD.claim_token
                               THEN 'row claimed by run ' || OLD.claim_token
                               ELSE 'backward move' END;
            RETURN NULL;
        END IF;
        IF NEW.image_status = 'error' AND NEW.image_error_stage IS NULL THEN
            IF OLD.image_status = 'uploaded' THEN
                NEW.image_error_stage := 'collage';
                NEW.collage_attempts := OLD.collage_attempts + 1;
            ELSE
                NEW.image_error_stage := 'download';
                NEW.image_attempts := OLD.image_attempts + 1;
            END IF;
            NEW.image_attempted_at := NOW();
        END IF;
    END IF;
    IF NEW.ximilar_status = 'error' AND OLD.ximilar_status IS DISTINCT FROM 'error'
       AND NEW.ximilar_error IS NULL THEN
        NEW.ximilar_error := COALESCE(NULLIF(NEW.error_message, ''),
                                      'error written outside unde-dagster');
        NEW.ximilar_attempts := OLD.ximilar_attempts + 1;
        NEW.updated_at := NOW();
    END IF;
    RETURN NEW;
END
$$;

DROP TRIGGER IF EXISTS raw_products_forward_only ON raw_products;
CREATE TRIGGER raw_products_forward_only BEFORE UPDATE ON raw_products
    FOR EACH ROW EXECUTE FUNCTION unde_raw_products_forward_only();
