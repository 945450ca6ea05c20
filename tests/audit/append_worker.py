"""A separate process that appends to a log until told to stop (or killed): `ROLE URL N BATCH`.

`log` appends AuditRecords in batches; `store` makes store changes each with its entry in one
unit of work. Prints one line per committed batch, so the parent knows when to strike.
"""

from __future__ import annotations

import sys
import uuid

from madbwpu_r.audit.log import AuditLog
from madbwpu_r.audit.records import AuditRecord
from madbwpu_r.store import IngestRecord, open_store


def main() -> None:
    role, url, n, batch = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4])
    name = f"writer-{uuid.uuid4().hex[:6]}"
    if role == "log":
        log = AuditLog.open(url, "madbwpu-r/test")
        for i in range(0, n, batch):
            log.append([AuditRecord(name, "data.purge", f"t:{i + j}") for j in range(batch)])
            print(i + batch, flush=True)
    else:
        store = open_store(url)
        for i in range(n):
            job = uuid.uuid4().hex
            with store.unit_of_work() as uow:
                uow.record_ingest(IngestRecord(job, "d", f"{job}.csv", 1.0))
                uow.audit(AuditRecord(name, "ingest.accepted", "dataset:d", detail=f"job {job}"))
            print(i + 1, flush=True)


if __name__ == "__main__":
    main()
