"""Claim settings every queue-driven stage shares (batch, lease, attempts, cooldown)."""

import dagster as dg

from unde_dagster.db.claims import ClaimRules


class StageQueueSettings(dg.ConfigurableResource):
    batch_size: int = 100
    max_attempts: int = 3
    retry_after_s: int = 3600
    claim_lease_s: int = 1800

    def claim_rules(self) -> ClaimRules:
        return ClaimRules(
            batch_size=self.batch_size,
            lease_s=self.claim_lease_s,
            max_attempts=self.max_attempts,
            retry_after_s=self.retry_after_s,
        )
