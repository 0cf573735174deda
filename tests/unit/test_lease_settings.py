"""Lease settings: production defaults, the renewal period derived from the lease."""

import pytest

from unde_dagster.db.claims import ClaimRules
from unde_dagster.db.leases import LeaseHeartbeat
from unde_dagster.resources.collage import CollageMaker
from unde_dagster.resources.downloader import PhotoDownloader


@pytest.mark.parametrize("settings", [PhotoDownloader(), CollageMaker()], ids=type)
def test_production_lease_is_two_minutes_renewed_every_thirty_seconds(settings) -> None:
    rules = settings.claim_rules()
    assert (rules.lease_s, rules.renew_s) == (120, 30.0)


def test_a_configured_lease_and_renewal_reach_the_claim_rules() -> None:
    rules = CollageMaker(claim_lease_s=12, claim_renew_every_s=1.0).claim_rules()
    assert (rules.lease_s, rules.renew_s) == (12, 1.0)
    assert CollageMaker(claim_lease_s=12).claim_rules().renew_s == 3.0
    assert ClaimRules(4, 600, 3, 3600).renew_s == 150.0


@pytest.mark.parametrize("every_s", [0, 12, 30])
def test_a_renewal_period_not_shorter_than_the_lease_is_refused(every_s: float) -> None:
    def never_connects():  # not called: the heartbeat is refused before it starts
        raise AssertionError

    with pytest.raises(ValueError, match="shorter than the lease"):
        LeaseHeartbeat(never_connects, "run", lease_s=12, every_s=every_s)
