"""Claim settings every queue-driven stage shares (batch, lease, attempts, cooldown)."""

import dagster as dg
from pydantic import Field

from unde_dagster.db.claims import ClaimRules


class StageQueueSettings(dg.ConfigurableResource):
    batch_size: int = 100
    max_attempts: int = 3
    retry_after_s: int = 3600
    claim_lease_s: int = Field(
        default=120,
        description="lease of a claim; renewed while the batch runs, so a killed run's SKUs "
        "come back about this long after it died, whoever launched it",
    )
    claim_renew_every_s: float | None = Field(
        default=None, description="lease renewal period; unset = a quarter of the lease (30 s)"
    )

    def claim_rules(self) -> ClaimRules:
        return ClaimRules(
            batch_size=self.batch_size,
            lease_s=self.claim_lease_s,
            max_attempts=self.max_attempts,
            retry_after_s=self.retry_after_s,
            renew_every_s=self.claim_renew_every_s,
        )
