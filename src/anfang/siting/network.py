"""Road networks for camera siting: OSM XML (.osm), OSM PBF (.pbf, via the `osmium` package) and GeoJSON.

Everything is projected to local metres once, on reading (`Projection`), so the solvers never see degrees.
Pure Python + numpy: no web framework, no database.
"""

from __future__ import annotations

import json
import math
import xml.etree.ElementTree as ET
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO

import numpy as np

EARTH_RADIUS_M = 6_371_008.8

# Highway values that are roads a camera should watch; everything else tagged highway=* (platforms, proposed,
# construction, corridors, steps, elevators...) is ignored.
ROAD_CLASSES: dict[str, float] = {
    # weight per metre of road: main roads count double ("key nodes of main roads without blind spots", 五、(二))
    "motorway": 2.0, "trunk": 2.0, "primary": 2.0, "secondary": 2.0, "tertiary": 1.5,
    "motorway_link": 1.5, "trunk_link": 1.5, "primary_link": 1.5, "secondary_link": 1.5, "tertiary_link": 1.2,
    "unclassified": 1.0, "residential": 1.0, "living_street": 1.0, "service": 0.7, "road": 1.0,
    "track": 0.5, "pedestrian": 1.0, "footway": 0.5, "path": 0.5, "cycleway": 0.5,
}
MAIN_ROADS = frozenset({"motorway", "trunk", "primary", "secondary", "tertiary"})

# Point-of-interest kinds, their default weights and whether they must be covered (mandatory demand).
POI_KINDS: dict[str, tuple[str, str]] = {
    "intersection": ("路口", "intersection"),
    "entrance": ("出入口", "entrance"),
    "construction": ("工地", "construction site"),
    "crowded": ("人员密集场所", "crowded place"),
    "high_risk": ("高危场所", "high-risk place"),
    "poi": ("关注点", "point of interest"),
}
DEFAULT_POI_WEIGHTS: dict[str, float] = {"intersection": 50.0, "entrance": 100.0, "construction": 80.0,
                                         "crowded": 80.0, "high_risk": 80.0, "poi": 30.0}
DEFAULT_MANDATORY = frozenset({"intersection", "entrance"})


class SitingInputError(ValueError):
    """A file or parameter the planner cannot use; the message is zh-CN / English and names the problem."""


@dataclass(frozen=True)
class Projection:
    """Equirectangular projection around a reference point (lon0, lat0).

    x = R·cos(lat0)·Δlon, y = R·Δlat (radians). Over a village or town (≤ 20 km across) the east-west scale error
    is |tan(lat0)·Δlat| ≤ 0.1 % at Sanming's latitude (26° N) and the north-south scale is exact along meridians,
    i.e. under half a metre on a 500 m camera range — far below the uncertainty of a camera's useful range. No
    projection library is needed and the inverse is exact.
    """

    lon0: float
    lat0: float

    @property
    def _kx(self) -> float:
        return EARTH_RADIUS_M * math.cos(math.radians(self.lat0)) * math.pi / 180.0

    @property
    def _ky(self) -> float:
        return EARTH_RADIUS_M * math.pi / 180.0

    def forward(self, lon: np.ndarray, lat: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        return (np.asarray(lon, float) - self.lon0) * self._kx, (np.asarray(lat, float) - self.lat0) * self._ky

    def inverse(self, x: np.ndarray, y: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        return np.asarray(x, float) / self._kx + self.lon0, np.asarray(y, float) / self._ky + self.lat0


@dataclass
class Road:
    id: str
    highway: str
    name: str
    nodes: list[str]  # node ids (OSM ids as text, or generated for GeoJSON)
    xy: np.ndarray  # (n, 2) metres


@dataclass
class Poi:
    id: str
    kind: str
    name: str
    x: float
    y: float
    weight: float | None = None  # None: the kind's default
    mandatory: bool | None = None  # None: by kind (DEFAULT_MANDATORY)


@dataclass
class Camera:
    """An existing camera (or one given by hand): position, range, field of view and heading (degrees from north)."""

    id: str
    x: float
    y: float
    radius: float | None = None
    fov: float = 360.0
    heading: float = 0.0


@dataclass
class RoadNetwork:
    projection: Projection
    roads: list[Road] = field(default_factory=list)
    pois: list[Poi] = field(default_factory=list)
    cameras: list[Camera] = field(default_factory=list)
    node_xy: dict[str, tuple[float, float]] = field(default_factory=dict)
    source: str = ""

    def intersections(self) -> list[str]:
        """Node ids where three or more road segments meet (a T, a cross, a roundabout entry)."""
        degree: dict[str, int] = {}
        for road in self.roads:
            n = len(road.nodes)
            for k, node in enumerate(road.nodes):
                degree[node] = degree.get(node, 0) + (1 if k in (0, n - 1) else 2)
        return sorted((node for node, d in degree.items() if d >= 3), key=_node_order)

    def total_length(self) -> float:
        return float(sum(_polyline_length(r.xy) for r in self.roads))

    def bounds(self) -> tuple[float, float, float, float]:
        pts = [r.xy for r in self.roads] + [np.array([[p.x, p.y]]) for p in self.pois]
        pts += [np.array([[c.x, c.y]]) for c in self.cameras]
        if not pts:
            return (0.0, 0.0, 0.0, 0.0)
        allp = np.vstack(pts)
        return (float(allp[:, 0].min()), float(allp[:, 1].min()), float(allp[:, 0].max()), float(allp[:, 1].max()))


def _node_order(node: str) -> tuple[int, str]:
    return (int(node), "") if node.lstrip("-").isdigit() else (0, node)


def _polyline_length(xy: np.ndarray) -> float:
    return float(np.hypot(*np.diff(xy, axis=0).T).sum()) if len(xy) > 1 else 0.0


# ---- OSM tags → POI kinds ----------------------------------------------------------------------------------------
_CROWDED_AMENITY = {"school", "kindergarten", "marketplace", "hospital", "clinic", "townhall", "place_of_worship",
                    "bus_station", "community_centre", "theatre", "cinema", "college", "university"}
_RISK_AMENITY = {"fuel", "bank", "atm", "police", "pharmacy"}


def poi_kind(tags: dict[str, str]) -> str | None:
    """Which POI kind an OSM node or area is, from its tags (`anfang:poi=<kind>` wins), or None."""
    explicit = tags.get("anfang:poi")
    if explicit:
        return explicit if explicit in POI_KINDS else "poi"
    if "entrance" in tags or tags.get("barrier") in {"gate", "entrance", "toll_booth"}:
        return "entrance"
    if tags.get("landuse") == "construction" or tags.get("building") == "construction":
        return "construction"
    amenity = tags.get("amenity", "")
    if amenity in _RISK_AMENITY or tags.get("power") in {"substation", "plant"} or tags.get("man_made") in {
            "dam", "storage_tank"} or tags.get("waterway") == "dam" or tags.get("water") == "reservoir":
        return "high_risk"
    if amenity in _CROWDED_AMENITY or tags.get("shop") == "mall" or tags.get("leisure") in {"park", "stadium"} \
            or tags.get("tourism") == "attraction":
        return "crowded"
    return None


MAX_ROW_ERRORS = 20  # row-level errors listed in one message; the rest are counted


def parse_weight(value: object, feature: str) -> float | None:
    """A demand weight from a file: None when not given (the kind's default), else a finite number ≥ 0.
    Anything else raises SitingInputError naming the feature (a NaN or negative weight would make the
    coverage and the proven bound meaningless)."""
    if value is None or (isinstance(value, str) and not value.strip()):
        return None
    if isinstance(value, bool):
        raise SitingInputError(f"{feature}: 权重不是数字 / weight is not a number: {value!r}")
    try:
        w = float(value)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        raise SitingInputError(f"{feature}: 权重不是数字 / weight is not a number: {value!r}") from None
    if not math.isfinite(w) or w < 0:
        raise SitingInputError(f"{feature}: 权重须为有限且不小于 0 的数 / weight must be finite and ≥ 0: {value!r}")
    return w


def _float_prop(props: dict, key: str, default: float | None, feature: str) -> float | None:
    v = props.get(key)
    if v is None:
        return default
    try:
        f = float(v)
    except (TypeError, ValueError):
        f = math.nan
    if not math.isfinite(f):
        raise SitingInputError(f"{feature}: {key} 不是有限数 / {key} is not a finite number: {v!r}")
    return f


class RowErrors:
    """Collects the row-level errors of one file so that the user sees all of them (up to MAX_ROW_ERRORS) at once."""

    def __init__(self, source: str) -> None:
        self.source = source
        self.errors: list[str] = []

    def add(self, exc: SitingInputError) -> None:
        self.errors.append(str(exc))

    def raise_if_any(self) -> None:
        if not self.errors:
            return
        n = len(self.errors)
        lines = self.errors[:MAX_ROW_ERRORS] + ([f"… 另有 {n - MAX_ROW_ERRORS} 处 / {n - MAX_ROW_ERRORS} more"]
                                                 if n > MAX_ROW_ERRORS else [])
        raise SitingInputError(f"{self.source or '输入 / input'}: {n} 处错误 / {n} error(s)\n  " + "\n  ".join(lines))


def _poi_from_tags(pid: str, tags: dict[str, str], x: float, y: float) -> Poi | None:
    kind = poi_kind(tags)
    if kind is None:
        return None
    mandatory = tags.get("anfang:mandatory")
    return Poi(pid, kind, tags.get("name", ""), x, y, parse_weight(tags.get("anfang:weight"), pid),
               None if mandatory is None else mandatory.lower() in {"yes", "true", "1"})


# ---- readers -----------------------------------------------------------------------------------------------------
def read_network(path: str | Path) -> RoadNetwork:
    """Read a road network from `.osm` (XML), `.pbf` or `.geojson`/`.json`; raises SitingInputError when unusable."""
    path = Path(path)
    if not path.is_file():
        raise SitingInputError(f"文件不存在 / no such file: {path}")
    suffix = "".join(path.suffixes[-2:]).lower() if path.suffix.lower() in {".gz", ".bz2"} else path.suffix.lower()
    if suffix.endswith((".geojson", ".json")):
        net = read_geojson(path.read_bytes(), source=path.name)
    elif suffix.endswith(".pbf"):
        net = read_pbf(path)
    elif suffix.endswith((".osm", ".xml")):
        with path.open("rb") as fh:
            net = read_osm_xml(fh, source=path.name)
    else:
        raise SitingInputError(f"不支持的文件类型 / unsupported file type {path.suffix!r}: 请用 / use .osm, .pbf, "
                               ".geojson")
    return net


def _finish(lonlat_nodes: dict[str, tuple[float, float]], ways: list[tuple[str, str, str, list[str]]],
            poi_nodes: list[tuple[str, dict[str, str], float, float]],
            poi_areas: list[tuple[str, dict[str, str], list[str]]], source: str) -> RoadNetwork:
    used = {n for _, _, _, nodes in ways for n in nodes if n in lonlat_nodes}
    if not ways or not used:
        raise SitingInputError(f"文件中没有道路 / no roads (ways tagged highway=*) in {source or 'the input'}")
    lons = np.array([lonlat_nodes[n][0] for n in used])
    lats = np.array([lonlat_nodes[n][1] for n in used])
    proj = Projection(float((lons.min() + lons.max()) / 2), float((lats.min() + lats.max()) / 2))
    net = RoadNetwork(proj, source=source)
    keys = list(lonlat_nodes)
    lonlat = np.array([lonlat_nodes[k] for k in keys], float).reshape(-1, 2)
    allx, ally = proj.forward(lonlat[:, 0], lonlat[:, 1])
    net.node_xy = {k: (float(a), float(b)) for k, a, b in zip(keys, allx, ally, strict=True)}
    for wid, highway, name, nodes in ways:
        nodes = [n for n in nodes if n in net.node_xy]
        # drop consecutive duplicates (a way that visits the same node twice in a row)
        nodes = [n for k, n in enumerate(nodes) if k == 0 or n != nodes[k - 1]]
        if len(nodes) < 2:
            continue
        net.roads.append(Road(wid, highway, name, nodes, np.array([net.node_xy[n] for n in nodes])))
    if not net.roads:
        raise SitingInputError(f"道路缺少节点坐标 / the roads in {source} reference no nodes with coordinates")
    errors = RowErrors(source)
    for pid, tags, lon, lat in poi_nodes:
        x, y = proj.forward(np.array(lon), np.array(lat))
        try:
            poi = _poi_from_tags(pid, tags, float(x), float(y))
        except SitingInputError as exc:
            errors.add(exc)
            continue
        if poi:
            net.pois.append(poi)
    for pid, tags, nodes in poi_areas:
        pts = [net.node_xy[n] for n in nodes if n in net.node_xy]
        if pts:
            c = np.mean(np.array(pts), axis=0)
            try:
                poi = _poi_from_tags(pid, tags, float(c[0]), float(c[1]))
            except SitingInputError as exc:
                errors.add(exc)
                continue
            if poi:
                net.pois.append(poi)
    errors.raise_if_any()
    return net


def read_osm_xml(stream: IO[bytes] | str | Path, *, source: str = "") -> RoadNetwork:
    """Stream-parse OSM XML (a binary file object or a path) with ElementTree.iterparse; memory grows with the
    number of nodes only (each element is cleared once read)."""
    name = source or str(stream if isinstance(stream, str | Path) else getattr(stream, "name", "OSM XML"))
    nodes: dict[str, tuple[float, float]] = {}
    node_tags: list[tuple[str, dict[str, str], float, float]] = []
    ways: list[tuple[str, str, str, list[str]]] = []
    areas: list[tuple[str, dict[str, str], list[str]]] = []
    try:
        root_seen = False
        for event, elem in ET.iterparse(stream, events=("start", "end")):
            if event == "start":
                if not root_seen:
                    root_seen = True
                    if elem.tag != "osm":
                        raise SitingInputError(f"不是 OSM XML 文件 / not an OSM XML file (root <{elem.tag}>): {name}")
                continue
            if elem.tag == "node":
                nid = elem.get("id")
                try:
                    lon, lat = float(elem.get("lon", "nan")), float(elem.get("lat", "nan"))
                except ValueError as exc:
                    raise SitingInputError(f"节点坐标无效 / bad coordinates on node {nid} in {name}") from exc
                if nid is None or not (math.isfinite(lon) and math.isfinite(lat)):
                    raise SitingInputError(f"节点缺少 id 或坐标 / node without id or lon/lat in {name}")
                nodes[nid] = (lon, lat)
                tags = {t.get("k", ""): t.get("v", "") for t in elem.iter("tag")}
                if tags:
                    node_tags.append((f"n{nid}", tags, lon, lat))
                elem.clear()
            elif elem.tag == "way":
                tags = {t.get("k", ""): t.get("v", "") for t in elem.iter("tag")}
                refs = [nd.get("ref", "") for nd in elem.iter("nd")]
                highway = tags.get("highway")
                if highway in ROAD_CLASSES and tags.get("area") != "yes":
                    ways.append((f"w{elem.get('id')}", highway, tags.get("name", ""), refs))
                elif poi_kind(tags):
                    areas.append((f"w{elem.get('id')}", tags, refs))
                elem.clear()
            elif elem.tag == "relation":
                elem.clear()
    except ET.ParseError as exc:
        raise SitingInputError(f"OSM XML 格式错误 / malformed OSM XML in {name}: {exc}") from exc
    return _finish(nodes, ways, node_tags, areas, name)


def read_pbf(path: Path) -> RoadNetwork:
    """Read an OSM PBF extract with pyosmium (the `osmium` package, a binary wheel)."""
    try:
        import osmium
    except ImportError as exc:  # pragma: no cover - osmium is a dependency; this guards a stripped install
        raise SitingInputError("读取 .pbf 需要 osmium 包 / reading .pbf needs the `osmium` package "
                               "(pip install osmium), or convert the file to .osm XML first") from exc
    nodes: dict[str, tuple[float, float]] = {}
    node_tags: list[tuple[str, dict[str, str], float, float]] = []
    ways: list[tuple[str, str, str, list[str]]] = []
    areas: list[tuple[str, dict[str, str], list[str]]] = []
    try:
        for obj in osmium.FileProcessor(str(path)):
            if obj.is_node():
                if not obj.location.valid():
                    continue
                nid = str(obj.id)
                nodes[nid] = (obj.location.lon, obj.location.lat)
                if len(obj.tags):
                    node_tags.append((f"n{nid}", {t.k: t.v for t in obj.tags}, obj.location.lon, obj.location.lat))
            elif obj.is_way():
                tags = {t.k: t.v for t in obj.tags}
                refs = [str(n.ref) for n in obj.nodes]
                highway = tags.get("highway")
                if highway in ROAD_CLASSES and tags.get("area") != "yes":
                    ways.append((f"w{obj.id}", highway, tags.get("name", ""), refs))
                elif poi_kind(tags):
                    areas.append((f"w{obj.id}", tags, refs))
    except RuntimeError as exc:
        raise SitingInputError(f"PBF 文件无法读取 / cannot read PBF {path.name}: {exc}") from exc
    return _finish(nodes, ways, node_tags, areas, path.name)


def read_geojson(data: bytes | str | dict, *, source: str = "") -> RoadNetwork:
    """Roads are LineString/MultiLineString features; Points with `kind` (or OSM-like tags) are POIs; Points with
    `camera: true` are existing cameras (`radius`, `fov`, `heading` properties). Coordinates are lon/lat (WGS 84).
    Lines that share a vertex (to 1e-7°) share a node, which is how intersections are found."""
    try:
        doc = data if isinstance(data, dict) else json.loads(data)
    except (ValueError, UnicodeDecodeError) as exc:
        raise SitingInputError(f"GeoJSON 格式错误 / malformed GeoJSON in {source}: {exc}") from exc
    feats = doc.get("features") if isinstance(doc, dict) else None
    if not isinstance(feats, list):
        raise SitingInputError(f"GeoJSON 需要 FeatureCollection / expected a FeatureCollection in {source}")
    nodes: dict[str, tuple[float, float]] = {}
    ways: list[tuple[str, str, str, list[str]]] = []
    points: list[tuple[str, dict, float, float]] = []

    def node_of(c: list) -> str:
        key = f"{float(c[0]):.7f},{float(c[1]):.7f}"
        nodes.setdefault(key, (float(c[0]), float(c[1])))
        return key

    try:
        for k, f in enumerate(feats):
            geom = (f or {}).get("geometry") or {}
            props = (f or {}).get("properties") or {}
            fid = str(f.get("id", props.get("id", k)))
            kind = geom.get("type")
            if kind in ("LineString", "MultiLineString"):
                lines = [geom["coordinates"]] if kind == "LineString" else geom["coordinates"]
                highway = str(props.get("highway", "road"))
                for m, line in enumerate(lines):
                    ways.append((f"g{fid}" + (f"-{m}" if m else ""), highway if highway in ROAD_CLASSES else "road",
                                 str(props.get("name", "")), [node_of(c) for c in line]))
            elif kind == "Point":
                lon, lat = float(geom["coordinates"][0]), float(geom["coordinates"][1])
                points.append((fid, props, lon, lat))
    except (KeyError, TypeError, ValueError, IndexError) as exc:
        raise SitingInputError(f"GeoJSON 几何无效 / invalid geometry in {source}: {exc}") from exc
    net = _finish(nodes, ways, [], [], source)
    errors = RowErrors(source)
    for fid, props, lon, lat in points:
        x, y = net.projection.forward(np.array(lon), np.array(lat))
        try:
            if props.get("camera"):
                net.cameras.append(_camera(str(props.get("id", fid)), props, float(x), float(y)))
                continue
            tags = {str(a): str(b) for a, b in props.items() if a != "weight"}
            if "kind" in props:
                tags["anfang:poi"] = str(props["kind"])
            if "mandatory" in props:
                tags["anfang:mandatory"] = "yes" if props["mandatory"] in (True, "yes", "true", 1) else "no"
            poi = _poi_from_tags(f"p{fid}", tags, float(x), float(y))
            if poi:
                if "weight" in props:
                    poi.weight = parse_weight(props["weight"], f"要素 / feature {fid}")
                net.pois.append(poi)
        except SitingInputError as exc:
            errors.add(exc)
    errors.raise_if_any()
    return net


def _camera(cid: str, props: dict, x: float, y: float) -> Camera:
    label = f"摄像机 / camera {cid}"
    radius = _float_prop(props, "radius", None, label)
    if radius is not None and radius <= 0:
        raise SitingInputError(f"{label}: radius 须大于 0 / radius must be > 0: {radius}")
    fov = _float_prop(props, "fov", 360.0, label)
    if fov is None or not 0 < fov <= 360:
        raise SitingInputError(f"{label}: fov 须在 (0, 360] / fov must be in (0, 360]: {fov}")
    return Camera(cid, x, y, radius, fov, _float_prop(props, "heading", 0.0, label) or 0.0)


# ---- planner files: points and candidate sites as GeoJSON or CSV --------------------------------------------------
# CSV columns (header row; Chinese or English names): the position is lon/lat (WGS 84) or x/y (metres in the
# network's local frame, rarely useful); every other column is optional.
CSV_COLUMNS: dict[str, tuple[str, ...]] = {
    "id": ("id", "编号", "点位编号"), "lon": ("lon", "经度", "longitude"), "lat": ("lat", "纬度", "latitude"),
    "kind": ("kind", "类型"), "name": ("name", "名称"), "weight": ("weight", "权重"),
    "mandatory": ("mandatory", "必须覆盖"), "camera": ("camera", "现有摄像机"), "radius": ("radius", "半径"),
    "fov": ("fov", "视场角"), "heading": ("heading", "朝向"),
}
_TRUE = {"1", "true", "yes", "y", "是", "√"}


def _csv_features(path: Path) -> list[dict]:
    """A CSV of points as GeoJSON-like features (row numbers as Excel shows them: the header is row 1)."""
    import csv

    raw = path.read_bytes()
    for enc in ("utf-8-sig", "gb18030"):
        try:
            text = raw.decode(enc)
            break
        except UnicodeDecodeError:
            continue
    else:  # pragma: no cover - gb18030 decodes any byte string
        raise SitingInputError(f"无法识别的编码 / unknown encoding: {path.name}")
    rows = list(csv.reader(text.splitlines()))
    if not rows:
        raise SitingInputError(f"CSV 文件为空 / empty CSV: {path.name}")
    header = [h.strip().lower() for h in rows[0]]
    col: dict[str, int] = {}
    for key, names in CSV_COLUMNS.items():
        for k, h in enumerate(header):
            if h in names:
                col[key] = k
                break
    missing = [n for n in ("lon", "lat") if n not in col]
    if missing:
        raise SitingInputError(f"CSV 缺少列 / missing columns in {path.name}: {', '.join(missing)} "
                               "(需要 经度 lon、纬度 lat)")
    feats: list[dict] = []
    for r, cells in enumerate(rows[1:], start=2):
        if not any(c.strip() for c in cells):
            continue
        props: dict[str, object] = {"_row": r}
        for key, k in col.items():
            v = cells[k].strip() if k < len(cells) else ""
            if v:
                props[key] = v
        if "camera" in props:
            props["camera"] = str(props["camera"]).lower() in _TRUE
        if "mandatory" in props:
            props["mandatory"] = str(props["mandatory"]).lower() in _TRUE
        props.setdefault("id", f"r{r}")
        feats.append({"type": "Feature", "properties": props,
                      "geometry": {"type": "Point", "coordinates": [props.pop("lon", ""), props.pop("lat", "")]}})
    return feats


def _point_features(path: str | Path) -> tuple[list, str]:
    path = Path(path)
    if path.suffix.lower() == ".csv":
        try:
            return _csv_features(path), path.name
        except OSError as exc:
            raise SitingInputError(f"无法读取点文件 / cannot read points file {path}: {exc}") from exc
    try:
        doc = json.loads(path.read_bytes())
        feats = doc["features"]
        if not isinstance(feats, list):
            raise TypeError("features is not a list")
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise SitingInputError(f"无法读取点文件 / cannot read points file {path}: {exc}") from exc
    return feats, path.name


def _feature_xy(f: object, k: int, projection: Projection) -> tuple[dict, str, str, float, float]:
    """(properties, label, id, x, y) of a Point feature; SitingInputError naming the feature (or CSV row)."""
    props = (f.get("properties") if isinstance(f, dict) else None) or {}
    fid = str(props.get("id", f.get("id", k) if isinstance(f, dict) else k)).strip()
    where = f"第 {props['_row']} 行 / row {props['_row']} ({fid})" if "_row" in props else \
        f"第 {k + 1} 个要素 / feature {k + 1} ({fid})"
    try:
        lon, lat = (float(v) for v in f["geometry"]["coordinates"][:2])  # type: ignore[index]
        if not (math.isfinite(lon) and math.isfinite(lat) and -180 <= lon <= 180 and -90 <= lat <= 90):
            raise ValueError("out of range")
    except (KeyError, TypeError, ValueError, AttributeError):
        raise SitingInputError(f"{where}: 不是有效的点（经纬度）/ not a valid Point (lon/lat)") from None
    x, y = (float(v) for v in projection.forward(np.array(lon), np.array(lat)))
    return props, (where if "_row" in props else f"要素 / feature {fid}"), fid, x, y


def read_points(path: str | Path, projection: Projection) -> tuple[list[Poi], list[Camera]]:
    """Demand points (POIs) and existing cameras from a GeoJSON file of Points or a CSV (columns CSV_COLUMNS),
    projected with the network's projection. Every bad feature or row is reported (row-level errors naming it),
    nothing is half-read."""
    feats, name = _point_features(path)
    pois: list[Poi] = []
    cams: list[Camera] = []
    errors = RowErrors(name)
    for k, f in enumerate(feats):
        try:
            props, label, fid, x, y = _feature_xy(f, k, projection)
            if props.get("camera") in (True, "yes", "true", 1):
                cams.append(_camera(fid, props, x, y))
            else:
                kind = str(props.get("kind", "poi"))
                mandatory = props.get("mandatory")
                pois.append(Poi(f"p{fid}", kind if kind in POI_KINDS else "poi", str(props.get("name", "")), x, y,
                                parse_weight(props.get("weight"), label),
                                None if mandatory is None else mandatory in (True, "yes", "true", 1)))
        except SitingInputError as exc:
            errors.add(exc)
    errors.raise_if_any()
    return pois, cams


@dataclass
class Site:
    """A candidate site the planner gives (a pole, a wall he may use): position and, for a fixed camera, heading."""

    id: str
    kind: str
    x: float
    y: float
    heading: float | None = None


def read_sites(path: str | Path, projection: Projection) -> list[Site]:
    """The planner's own candidate sites from a GeoJSON of Points or a CSV (id, lon, lat, optional kind and heading
    in degrees from north). Ids must be unique; row-level errors name the feature or row."""
    feats, name = _point_features(path)
    sites: list[Site] = []
    seen: set[str] = set()
    errors = RowErrors(name)
    for k, f in enumerate(feats):
        try:
            props, label, sid, x, y = _feature_xy(f, k, projection)
            if sid in seen:
                raise SitingInputError(f"{label}: 编号重复 / duplicate id {sid!r}")
            heading = _float_prop(props, "heading", None, label)
            seen.add(sid)
            sites.append(Site(sid, str(props.get("kind", "given")) or "given", x, y,
                              None if heading is None else heading % 360))
        except SitingInputError as exc:
            errors.add(exc)
    errors.raise_if_any()
    if not sites:
        raise SitingInputError(f"候选点位文件中没有点 / no sites in {name}")
    return sites
