"""Wiring of live video and recordings into the app: the API and pages always, the media node, controller,
playback and clips beside the SIP server (called from app.py; it imports the video modules, none imports it)."""

from __future__ import annotations

from typing import Any

from fastapi import FastAPI


def install_all(app: FastAPI, settings: Any) -> None:
    """Live video, then recordings (playback, download, clips), record search and PTZ, then the pages."""
    from anfang.gb28181.records_views import install as install_records
    from anfang.media.pages import mount as mount_pages
    from anfang.media.recording_views import install as install_recordings
    from anfang.media.views import install

    install(app, settings)
    install_recordings(app)
    install_records(app)
    mount_pages(app)
