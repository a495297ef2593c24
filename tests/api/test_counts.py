"""/metrics item counts: a settled job (no pending item) is counted once, open jobs at each
refresh, new and deleted jobs noticed, everything recounted every settle_s."""

from __future__ import annotations

from pathlib import Path

from gpufleet.api.counts import ItemCounts
from gpufleet.index import Index


def test_counts_recount_only_open_jobs_between_full_counts(tmp_path: Path) -> None:
    index = Index(f"sqlite:///{tmp_path / 'index.db'}")
    now = [0.0]
    counts = ItemCounts(index, refresh_s=10, settle_s=100, clock=lambda: now[0])
    try:
        def job(job_id: str, n: int) -> None:
            index.create_job(job_id, model="synthetic", input="file:///i/", output="file:///o/",
                             keys=[f"k{i}" for i in range(n)])
        job("settled", 300)
        index.fail_pending("settled", [f"k{i}" for i in range(300)], error="x")
        job("open", 2)
        # When first scraped, everything is counted
        assert counts.totals() == {"failed": 300, "pending": 2}
        assert counts.rows_counted == 302
        # And within refresh_s, a new job is not seen yet (the last totals are served)
        job("new", 1)
        assert counts.totals() == {"failed": 300, "pending": 2}
        # Then after refresh_s only the open jobs' items are counted again
        now[0] += 11
        assert counts.totals() == {"failed": 300, "pending": 3}
        assert counts.rows_counted == 3
        # And a deleted settled job drops out without its items being counted
        index.delete_job("settled")
        now[0] += 11
        assert counts.totals() == {"pending": 3}
        assert counts.rows_counted == 3
        # And every settle_s everything is counted afresh (a redrive may have changed them)
        index.fail_pending("open", ["k0", "k1"], error="x")
        now[0] += 100
        assert counts.totals() == {"failed": 2, "pending": 1}
        assert counts.rows_counted == 3
    finally:
        index.close()
