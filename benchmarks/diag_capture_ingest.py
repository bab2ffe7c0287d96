"""Where the SQLite capture writer's CPU per record goes at a given table size (issue 20 item 4): the same ingest
path as ``bench_capture_days.py`` on its database, once with batches of 100 records from 100 different cameras (the
benchmark's pattern: a group commit of many devices) and once with batches of 100 from one camera; prints the
writing thread's CPU µs and the bytes it wrote (``wchar``: WAL frames, checkpoint, image segment) per record.

    .venv/bin/python benchmarks/diag_capture_ingest.py sqlite:///benchmarks/out/capture_days_sqlite/anfang.db
"""

from __future__ import annotations

import sys
import tempfile
import time
from datetime import timedelta
from pathlib import Path

import bench_capture_days as b

from anfang.store.engine import Store
from anfang.viid import service
from anfang.viid.images import SegmentImageStore
from anfang.viid.simulator import face, make_jpeg

N = 2000


def wchar() -> int:
    for line in Path("/proc/thread-self/io").read_text().splitlines():
        if line.startswith("wchar"):
            return int(line.split()[1])
    return 0


def main() -> None:
    store = Store(sys.argv[1])
    rows, cams, base, now = b.count(store), b.cameras(), make_jpeg(3000, seed=7), b.now_utc()
    with tempfile.TemporaryDirectory() as seg:
        for mode in ("100 cameras", "one camera", "100 cameras", "one camera"):
            serial0 = b.max_id(store) + 1000
            cam = (lambda i: cams[i % len(cams)]) if mode == "100 cameras" else (lambda i: cams[i // 100 % len(cams)])
            objs = [face(cam(i), b.unique_jpeg(base, serial0 + i), at=now - timedelta(seconds=i % 3600),
                         serial=(serial0 + i) % 100000) for i in range(N)]
            writer = service.IngestWriter(store, SegmentImageStore(Path(seg)))
            prepared = [service.prepare("face", o, max_image=1 << 20) for o in objs]
            c0, w0, t0 = time.thread_time(), wchar(), time.perf_counter()
            for i in range(0, N, 100):
                writer.write(prepared[i:i + 100])
            print(f"rows {rows:>12,}  batches from {mode:11s}  CPU {(time.thread_time() - c0) / N * 1e6:5.0f} µs/record"
                  f"  written {(wchar() - w0) / N / 1024:5.1f} KiB/record  {N / (time.perf_counter() - t0):,.0f} rec/s",
                  flush=True)
            writer.stop()
            writer.images.close()
    store.dispose()


if __name__ == "__main__":
    main()
