"""The one read model of an item: what the index reads, the API serves and the CLI lists."""

from __future__ import annotations

from dataclasses import replace

from gpufleet.domain import Item, ItemStatus, Tag


def test_an_item_reads_back_what_it_wrote_and_keeps_its_worker_to_the_operator() -> None:
    item = Item(job="j1", key="a b.jpg", status=ItemStatus.DONE,
                tags=(Tag("n02123045", "tabby", 0.9), Tag("n02124075", "Egyptian cat", 0.05)),
                attempts=2, worker="host-1-ab12", finished_at=1000.5)
    served = item.to_json()
    assert served == {"job": "j1", "key": "a b.jpg", "status": "done",
                      "tags": [{"id": "n02123045", "label": "tabby", "score": 0.9},
                               {"id": "n02124075", "label": "Egyptian cat", "score": 0.05}],
                      "error": None, "attempts": 2, "finished_at": 1000.5}
    assert Item.from_json(served) == replace(item, worker=None)
    assert Item.from_json(item.to_json(worker=True)) == item
