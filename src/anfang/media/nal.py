"""H.264 / H.265 NAL units in Annex B byte streams: split, types, keyframes, parameter sets, SPS size.

Small and hand-written on purpose: PyAV exposes no bitstream-level parser for these (its parsers give whole
packets, not NAL types or SPS fields), and the media node must inspect every access unit it passes through
without decoding it.
"""

from __future__ import annotations

from collections.abc import Iterator

START = b"\x00\x00\x01"

# H.264 (ITU-T H.264 table 7-1)
H264_SLICE = 1
H264_IDR = 5
H264_SEI = 6
H264_SPS = 7
H264_PPS = 8
H264_AUD = 9
H264_FILLER = 12
# H.265 (ITU-T H.265 table 7-1)
H265_IRAP_FIRST = 16  # BLA_W_LP .. RSV_IRAP_VCL23 are random access points
H265_IRAP_LAST = 23
H265_VPS = 32
H265_SPS = 33
H265_PPS = 34
H265_AUD = 35
H265_FILLER = 38

CODECS = ("h264", "h265")


def iter_nals(data: bytes) -> Iterator[bytes]:
    """NAL units of an Annex B stream, without start codes (3- or 4-byte) and trailing zero bytes."""
    n = len(data)
    i = data.find(START)
    while 0 <= i < n:
        start = i + 3
        j = data.find(START, start)
        end = n if j < 0 else j
        k = end
        while k > start and data[k - 1] == 0:  # trailing_zero_8bits / the 4th byte of the next start code
            k -= 1
        if k > start:
            yield bytes(data[start:k])
        i = j


def split_annexb(data: bytes) -> list[bytes]:
    return list(iter_nals(data))


def nal_type(nal: bytes, codec: str) -> int:
    if not nal:
        return -1
    if codec == "h264":
        return nal[0] & 0x1F
    if codec == "h265":
        return (nal[0] >> 1) & 0x3F
    raise ValueError(f"unknown video codec {codec!r}")


def _is_vcl(t: int, codec: str) -> bool:
    return 1 <= t <= 5 if codec == "h264" else 0 <= t <= 31


def is_keyframe(au: bytes, codec: str) -> bool:
    """True when the access unit's first slice is an IDR (H.264) or IRAP (H.265) picture."""
    for nal in iter_nals(au):
        t = nal_type(nal, codec)
        if _is_vcl(t, codec):
            if codec == "h264":
                return t == H264_IDR
            return H265_IRAP_FIRST <= t <= H265_IRAP_LAST
    return False


def guess_codec(au: bytes) -> str:
    """H.264 or H.265 from the NAL headers alone (for a PS stream whose PSM has not been seen yet).

    An H.265 NAL header is two bytes with nuh_layer_id 0 and nuh_temporal_id_plus1 1 (second byte 0x01 in
    every stream we know); it is called H.265 only when every NAL of the unit looks like that."""
    seen = 0
    for nal in iter_nals(au):
        if len(nal) < 2 or nal[0] & 0x81 or nal[1] != 0x01:
            return "h264"
        t = (nal[0] >> 1) & 0x3F
        if not (t <= 21 or 32 <= t <= 40):
            return "h264"
        seen += 1
        if seen >= 4:
            break
    return "h265" if seen else "h264"


def parameter_sets(au: bytes, codec: str) -> dict[str, list[bytes]]:
    """The VPS/SPS/PPS NAL units (with their NAL headers) found in an access unit: {"vps", "sps", "pps"}."""
    out: dict[str, list[bytes]] = {"vps": [], "sps": [], "pps": []}
    if codec == "h264":
        names = {H264_SPS: "sps", H264_PPS: "pps"}
    elif codec == "h265":
        names = {H265_VPS: "vps", H265_SPS: "sps", H265_PPS: "pps"}
    else:
        raise ValueError(f"unknown video codec {codec!r}")
    for nal in iter_nals(au):
        name = names.get(nal_type(nal, codec))
        if name:
            out[name].append(nal)
    return out


def to_length_prefixed(au: bytes, *, codec: str = "h264", drop_parameter_sets: bool = False,
                       length_size: int = 4) -> bytes:
    """Annex B access unit -> length-prefixed NAL units (the ISO 14496-15 sample format used in MP4).

    AUDs and filler NALs are dropped; parameter sets too when asked (they live in avcC/hvcC then)."""
    drop = {H264_AUD, H264_FILLER} if codec == "h264" else {H265_AUD, H265_FILLER}
    if drop_parameter_sets:
        drop |= {H264_SPS, H264_PPS} if codec == "h264" else {H265_VPS, H265_SPS, H265_PPS}
    parts = []
    for nal in iter_nals(au):
        if nal_type(nal, codec) not in drop:
            parts.append(len(nal).to_bytes(length_size, "big"))
            parts.append(nal)
    return b"".join(parts)


def unescape_rbsp(nal: bytes) -> bytes:
    """Remove emulation prevention bytes (00 00 03 -> 00 00)."""
    if b"\x00\x00\x03" not in nal:
        return bytes(nal)
    out = bytearray()
    zeros = 0
    for b in nal:
        if zeros >= 2 and b == 3:
            zeros = 0
            continue
        out.append(b)
        zeros = zeros + 1 if b == 0 else 0
    return bytes(out)


class BitReader:
    """MSB-first bit reader with exp-Golomb codes; raises ValueError past the end."""

    def __init__(self, data: bytes) -> None:
        self.data = data
        self.pos = 0
        self.size = len(data) * 8

    def u(self, n: int) -> int:
        if self.pos + n > self.size:
            raise ValueError("bitstream truncated")
        v = 0
        for _ in range(n):
            v = (v << 1) | ((self.data[self.pos >> 3] >> (7 - (self.pos & 7))) & 1)
            self.pos += 1
        return v

    def ue(self) -> int:
        zeros = 0
        while self.u(1) == 0:
            zeros += 1
            if zeros > 31:
                raise ValueError("exp-Golomb code too long")
        return (1 << zeros) - 1 + self.u(zeros)

    def se(self) -> int:
        k = self.ue()
        return (k + 1) // 2 if k & 1 else -(k // 2)


_HIGH_PROFILES = {100, 110, 122, 244, 44, 83, 86, 118, 128, 138, 139, 134, 135}


def _skip_scaling_list(r: BitReader, size: int) -> None:
    last = nxt = 8
    for _ in range(size):
        if nxt:
            nxt = (last + r.se() + 256) % 256
        last = nxt or last


def h264_sps_info(sps: bytes) -> tuple[int, int, int, int, int]:
    """(width, height, profile_idc, constraint_flags, level_idc) of an H.264 SPS (with or without NAL header).

    Raises ValueError on a truncated or malformed SPS."""
    if sps and (sps[0] & 0x9F) == H264_SPS:
        sps = sps[1:]
    r = BitReader(unescape_rbsp(sps))
    profile, constraints, level = r.u(8), r.u(8), r.u(8)
    r.ue()  # seq_parameter_set_id
    chroma_format_idc, separate_planes = 1, 0
    if profile in _HIGH_PROFILES:
        chroma_format_idc = r.ue()
        if chroma_format_idc > 3:
            raise ValueError("bad chroma_format_idc")
        if chroma_format_idc == 3:
            separate_planes = r.u(1)
        r.ue()  # bit_depth_luma_minus8
        r.ue()  # bit_depth_chroma_minus8
        r.u(1)  # qpprime_y_zero_transform_bypass_flag
        if r.u(1):  # seq_scaling_matrix_present_flag
            for i in range(8 if chroma_format_idc != 3 else 12):
                if r.u(1):
                    _skip_scaling_list(r, 16 if i < 6 else 64)
    r.ue()  # log2_max_frame_num_minus4
    poc_type = r.ue()
    if poc_type == 0:
        r.ue()
    elif poc_type == 1:
        r.u(1)
        r.se()
        r.se()
        for _ in range(min(r.ue(), 255)):
            r.se()
    r.ue()  # max_num_ref_frames
    r.u(1)  # gaps_in_frame_num_value_allowed_flag
    width_mbs = r.ue() + 1
    height_units = r.ue() + 1
    frame_mbs_only = r.u(1)
    if not frame_mbs_only:
        r.u(1)  # mb_adaptive_frame_field_flag
    r.u(1)  # direct_8x8_inference_flag
    crop = (0, 0, 0, 0)
    if r.u(1):
        crop = (r.ue(), r.ue(), r.ue(), r.ue())
    chroma_array_type = 0 if separate_planes else chroma_format_idc
    if chroma_array_type == 0:
        crop_x, crop_y = 1, 2 - frame_mbs_only
    else:
        crop_x = 1 if chroma_array_type == 3 else 2
        crop_y = (2 if chroma_array_type == 1 else 1) * (2 - frame_mbs_only)
    width = width_mbs * 16 - crop_x * (crop[0] + crop[1])
    height = (2 - frame_mbs_only) * height_units * 16 - crop_y * (crop[2] + crop[3])
    if width <= 0 or height <= 0:
        raise ValueError("SPS cropping exceeds the picture")
    return width, height, profile, constraints, level


def h264_codec_string(sps: bytes) -> str:
    """RFC 6381 codec string for MSE, e.g. "avc1.64001F"."""
    _, _, profile, constraints, level = h264_sps_info(sps)
    return f"avc1.{profile:02X}{constraints:02X}{level:02X}"
