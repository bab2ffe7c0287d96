"""Settings: defaults < TOML file < ANFANG_* environment variables < command-line options.

The TOML file is the one named by ANFANG_CONFIG, else ./anfang.toml when present. Keys are the field names
below (e.g. ``role = "county"``, ``database_url = "postgresql+psycopg://..."``).
"""

from __future__ import annotations

import json
import os
from enum import StrEnum
from pathlib import Path
from typing import Annotated, Any

from pydantic import Field, field_validator, model_validator
from pydantic_settings import (
    BaseSettings,
    NoDecode,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
    TomlConfigSettingsSource,
)


class NodeRole(StrEnum):
    community = "community"
    county = "county"
    city = "city"


def _toml_path() -> Path | None:
    explicit = os.environ.get("ANFANG_CONFIG")
    if explicit:
        return Path(explicit)
    local = Path("anfang.toml")
    return local if local.exists() else None


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="ANFANG_", extra="ignore")

    role: NodeRole = NodeRole.city
    node_id: str = Field(default="350400", description="this node's region code or name")
    data_dir: Path = Path("var")
    database_url: str | None = Field(default=None, description="default: sqlite file data_dir/anfang.db")
    host: str = "127.0.0.1"
    port: int = 8000
    # read-only reader processes beside the server (`serve --read-workers N --read-port P`, docs/architecture.md):
    # GET/HEAD of the stateless read routes; everything else answers 421 there. 0: none (the default)
    read_workers: int = 0
    read_port: int | None = None  # default: port + 1
    session_hours: float = 12.0
    timezone: str = "Asia/Shanghai"  # times are stored UTC and shown, labelled, in this zone (core.timefmt)
    language: str = "zh-CN"
    log_level: str = "INFO"
    # early warning: MQTT broker for doors and sensors (off when unset), NATS for the bus (in-process when unset)
    mqtt_host: str | None = None
    mqtt_port: int = 1883
    nats_url: str | None = None
    warning_dedup_minutes: float = 10.0
    warning_escalate_minutes: float = 15.0
    warning_webhooks: list[str] = Field(default_factory=list)
    # audit chain head anchoring (security/audit.py): head file (default data_dir/audit-heads.jsonl), interval
    audit_heads_file: Path | None = None
    audit_anchor_minutes: float = 5.0
    # /metrics (Prometheus): answered to these client addresses, or to "Authorization: Bearer <metrics_token>"
    metrics_allow: list[str] = Field(default_factory=lambda: ["127.0.0.1", "::1"])
    metrics_token: str | None = None
    # request body limits in bytes, enforced while reading (security/bodylimit.py); /VIID has viid_max_body
    max_body_preauth: int = 64 * 1024  # without a live session: login, /api/iot device messages, anything else
    max_body_api: int = 1024 * 1024  # JSON API and console forms with a session
    max_body_upload: int = 32 * 1024 * 1024  # uploads with a session (leak trace, 六无 import, siting OSM)
    max_body_doorplate: int = 8 * 1024 * 1024  # /p/ phone pages (plate token; photos)
    max_body_federation: int = 64 * 1024 * 1024  # /api/federation/ingest (HMAC-signed batches)
    # Door plates (anfang.doorplates): the URL printed in the QR codes (default http://host:port), and how far (m)
    # an installer's scan may be from the address's coordinates for the plate to count as accurate.
    public_url: str | None = None
    plate_accuracy_m: float = 30.0
    # GA/T 1400 视图库 (docs/viid.md)
    viid_server_id: str = Field(default="35040000005030000001", description="this 视图库's 20-digit id")
    viid_password: str = Field(default="anfang1400", description="digest password of APEs not in the registry")
    viid_auto_register: bool = True  # unknown APEs with the shared password are added to the device registry
    viid_keepalive_timeout: float = 180.0  # seconds without keepalive after which a device is refused / offline
    viid_max_body: int = 32 * 1024 * 1024  # bytes; larger bodies get 413
    viid_max_image: int = 4 * 1024 * 1024  # bytes per decoded image
    viid_retention_days: float = 90.0
    # more directories (other disks) for capture images besides data_dir/viid/segments: each new day goes to the
    # one with the most free space (docs/deployment.md). TOML list; ANFANG_VIID_IMAGE_VOLUMES=/d1/viid,/d2/viid
    viid_image_volumes: Annotated[list[Path], NoDecode] = Field(default_factory=list)
    viid_upper_url: str | None = None  # cascade: base URL of the upper 视图库 (http://host:port)
    viid_upper_id: str | None = None  # the upper 视图库's 20-digit id (its User-Identify)
    viid_upper_password: str | None = None
    viid_simulate: int = 0  # demo: this many simulated APEs post faces and vehicles to this node
    viid_faces_dir: Path | None = None  # photos the simulated APEs use (read in place); None: drawn faces
    demo_scenario_pace: float = 0.0  # demo: > 0 plays demo/scenario.py's warnings, one step every this many s

    # GB/T 28181 device access (docs/gb28181.md): the SIP server runs when sip_enabled (demo, serve --sip-port)
    sip_enabled: bool = False
    sip_server_id: str = Field(default="35040000002000000001", description="20-digit SIP server id; realm = 10")
    sip_host: str = ""  # bind address of the SIP server; empty: the HTTP host (issue 19: never wider than asked)
    sip_port: int = 5060
    sip_advertised_host: str | None = None  # the address devices reach us at (Via/Contact); default the bind host
    sip_password: str = Field(default="anfang28181", description="shared digest password of unregistered devices")
    sip_allow_unknown: bool = True  # unknown devices with the shared password register as review=pending
    sip_heartbeat_interval: float = 60.0
    sip_heartbeat_count: int = 3
    sip_register_expires: int = 3600
    sip_lockout_failures: int = 5
    sip_lockout_minutes: float = 10.0
    sip_query_on_register: bool = True  # Catalog + DeviceInfo query after a (re-)registration
    sip_subscribe_on_register: bool = False  # SUBSCRIBE Catalog and Alarm after a registration
    sip_offline_warning_minutes: float = 30.0
    sip_uppers: list[dict] = Field(default_factory=list)  # cascade: [{server_id, host, port, password, ...}]
    sip_simulate: int = 0  # simulated devices started with the server (the demo sets a few)
    retention_check_hours: float = 24.0  # recording retention measured on every online channel this often
    ptz_roles: list[str] = Field(default_factory=lambda: ["city_admin", "county_admin", "police"])  # may steer PTZ

    # Live video (docs/video.md): the embedded media node runs with the SIP server unless media_enabled is false
    media_enabled: bool = True
    media_bind_host: str | None = None  # RTP receivers listen here; default the SIP server's host
    media_rtp_ip: str | None = None  # the address devices send media to (SDP c=); default the SIP advertised host
    media_port_min: int = 0  # RTP port range for the firewall (0: any free port)
    media_port_max: int = 0
    media_transport: str = "UDP"  # UDP | TCP-passive (device connects to us) | TCP-active (we connect)
    media_linger: float = 15.0  # seconds a stream stays open after its last viewer left (then BYE)
    media_timeout: float = 8.0  # seconds from INVITE to the first picture before the viewer is told
    media_audio: bool = False  # keep the cameras' G.711 audio (as AAC, for the browser) or drop it
    media_clips: bool = True  # every warning with a linked camera gets the recording around it (报警录像)
    media_clip_before: float = 30.0  # seconds before the event
    media_clip_after: float = 60.0  # seconds after it
    # live streams keep this many seconds (whole GOPs, ≤ 48 MiB each) so that a warning on a camera being watched
    # gets its clip from the open stream; 0: every clip is pulled from the NVR's recording
    media_ring_seconds: float = 35.0
    media_secret: str | None = Field(default=None, repr=False,
                                     description="shared secret of console and media nodes (stream tokens)")
    media_embedded: bool = True  # a media node inside serve/demo; false: only `anfang media` nodes (NATS)
    media_public_url: str | None = None  # `anfang media`: the URL browsers reach this node at (ws/http)
    media_node_id: str | None = None  # `anfang media`: this node's id (default node_id-media-port)
    media_nats_url: str | None = None  # NATS of the media node announcements (default nats_url)
    media_subject: str = "anfang.media"  # NATS subjects of node announcements (.nodes) and viewings (.views)

    # Data security (docs/security.md). Encryption at rest: the data keys' JSON (ANFANG_DATA_KEYS) or key file
    # (default data_dir/keys/data-keys.json, generated when absent).
    data_keys: str | None = Field(default=None, repr=False, description="data key set as JSON (overrides the file)")
    data_key_file: Path | None = None
    # Sessions: absolute lifetime is session_hours; idle expiry after session_idle_minutes without a request.
    session_idle_minutes: float = 30.0
    # A validated session is cached this long per process (0: off); a logout on the process ends it at once.
    session_cache_seconds: float = 5.0
    # Login protection: lockout after login_lockout_failures failed logins in a row, for login_lockout_minutes.
    login_lockout_failures: int = 5
    login_lockout_minutes: float = 15.0
    totp_required_roles: list[str] = Field(default_factory=list)  # e.g. ["city_admin", "county_admin", "police"]
    totp_issuer: str = "anfang"
    # Access monitoring: persons read in a day above max(monitor_min_reads, monitor_factor × the account's mean
    # daily reads over monitor_baseline_days); access between monitor_quiet_hours (local time, start–end).
    monitor_min_reads: int = 500
    monitor_factor: float = 3.0
    monitor_baseline_days: int = 14
    monitor_quiet_hours: tuple[int, int] = (0, 6)
    monitor_timezone: str = "Asia/Shanghai"
    monitor_failed_logins_client: int = 20  # failed logins from one client within 15 minutes (password spraying)
    # Transport: HSTS when served over TLS (tls_certfile / tls_keyfile below, or a TLS proxy), CSRF origin check
    # (trusted extra origins, path prefixes never checked: device endpoints, which carry no cookies anyway).
    hsts_seconds: int = 31_536_000
    csrf_trusted_origins: list[str] = Field(default_factory=list)
    csrf_exempt_paths: list[str] = Field(default_factory=lambda: ["/VIID", "/api/iot"])

    # Tiered platforms (docs/federation.md): parents this node forwards to ([{node_id, transport: https|nats, url,
    # secret, nats_url, ca_file, cert_file, key_file}]), children it accepts ([{node_id, secret, role}])
    federation_parents: list[dict] = Field(default_factory=list)
    federation_children: list[dict] = Field(default_factory=list)
    federation_forwarder: bool = True  # run the forwarders inside `serve` (off: `anfang federation forward`)
    federation_batch: int = 500  # records per batch sent up
    federation_nats_url: str | None = None  # JetStream of the nats transport (default nats_url)
    federation_receive_nats: bool = True  # with children: consume this node's JetStream stream
    # HTTPS for `serve` (the ingest API of a county / city): certificate and key files; a CA file to require and
    # verify client certificates (mTLS between nodes)
    tls_certfile: Path | None = None
    tls_keyfile: Path | None = None
    tls_client_ca: Path | None = None

    @field_validator("viid_image_volumes", mode="before")
    @classmethod
    def _split_paths(cls, value: Any) -> Any:
        """A comma-separated string (environment) or a JSON list; lists (TOML) as they are."""
        if isinstance(value, str):
            text = value.strip()
            if text.startswith("["):
                return json.loads(text)
            return [part.strip() for part in text.split(",") if part.strip()]
        return value

    @model_validator(mode="after")
    def _default_db(self) -> Settings:
        if not self.database_url:
            self.database_url = f"sqlite:///{(self.data_dir / 'anfang.db').as_posix()}"
        if not self.sip_host:
            self.sip_host = self.host
        return self

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        sources: list[PydanticBaseSettingsSource] = [init_settings, env_settings]
        path = _toml_path()
        if path is not None:
            sources.append(TomlConfigSettingsSource(settings_cls, toml_file=path))
        return tuple(sources)


def load_settings(**overrides: Any) -> Settings:
    """Settings from file and environment, with explicit (non-None) overrides from the command line on top."""
    settings = Settings(**{k: v for k, v in overrides.items() if v is not None})
    from anfang.core import timefmt

    timefmt.configure(settings.timezone)  # every entry point (console, CLI, PDFs, XLSX) shows times in this zone
    return settings
