"""GA/T 1400 video image database (视图库): APE and lower-platform ingest over HTTP under ``/VIID``, an image store,
subscriptions, dispositions (布控), cascade to an upper 视图库, retention and a simulator. See docs/viid.md."""
