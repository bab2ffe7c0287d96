"""PDF documents of the construction room, in Chinese: the acceptance report (验收报告) and the monthly circular
(月度通报) with its charts. Drawn with fpdf2 primitives (no plotting library); the Chinese font is found at run time
as for the door-plate sheets (``core.fonts.find_cjk_font``: ``ANFANG_CJK_FONT`` or an installed CJK font).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from anfang.core import timefmt
from anfang.core.fonts import find_cjk_font

RED = (200, 40, 40)
BLUE = (40, 90, 170)
GREEN = (40, 140, 80)
GREY = (150, 150, 150)
LIGHT = (235, 238, 243)


class Doc:
    """An A4 document with a CJK font, headings, wrapped paragraphs, tables and bar charts."""

    def __init__(self, title: str, landscape: bool = False) -> None:
        from fpdf import FPDF

        path, index = find_cjk_font()
        self.pdf = FPDF(orientation="L" if landscape else "P", unit="mm", format="A4")
        self.pdf.set_title(title)
        self.pdf.set_creator("anfang")
        self.pdf.add_font("cjk", fname=str(path), collection_font_number=index)
        self.pdf.set_auto_page_break(True, margin=15)
        self.pdf.set_margins(15, 15, 15)
        self.pdf.add_page()
        self.width = self.pdf.w - 30

    def title(self, text: str, sub: str = "") -> None:
        p = self.pdf
        p.set_font("cjk", size=17)
        p.multi_cell(self.width, 9, text, align="C", new_x="LMARGIN", new_y="NEXT")
        if sub:
            p.set_font("cjk", size=9)
            p.set_text_color(*GREY)
            p.multi_cell(self.width, 5, sub, align="C", new_x="LMARGIN", new_y="NEXT")
            p.set_text_color(0, 0, 0)
        p.ln(3)

    def heading(self, text: str) -> None:
        self.room(16)
        self.pdf.ln(2)
        self.pdf.set_font("cjk", size=12.5)
        self.pdf.multi_cell(self.width, 7, text, new_x="LMARGIN", new_y="NEXT")
        self.pdf.set_draw_color(*BLUE)
        y = self.pdf.get_y()
        self.pdf.line(15, y, 15 + self.width, y)
        self.pdf.set_draw_color(0, 0, 0)
        self.pdf.ln(1.5)

    def para(self, text: str, size: float = 10, colour: tuple[int, int, int] = (0, 0, 0)) -> None:
        self.pdf.set_font("cjk", size=size)
        self.pdf.set_text_color(*colour)
        self.pdf.multi_cell(self.width, size * 0.55, text, align="L", new_x="LMARGIN", new_y="NEXT")
        self.pdf.set_text_color(0, 0, 0)

    def room(self, mm: float) -> None:
        if self.pdf.get_y() + mm > self.pdf.h - 15:
            self.pdf.add_page()

    def table(self, head: Sequence[str], rows: Sequence[Sequence[Any]], widths: Sequence[float],
              size: float = 8.5, marks: Sequence[bool] | None = None) -> None:
        """A simple grid; ``marks[i]`` shades row ``i`` red (a finding, a laggard)."""
        p = self.pdf
        total = sum(widths)
        scale = self.width / total if total > self.width else 1.0
        widths = [w * scale for w in widths]
        line = size * 0.55

        def draw_head() -> None:
            p.set_font("cjk", size=size)
            p.set_fill_color(*LIGHT)
            for h, w in zip(head, widths, strict=True):
                p.cell(w, line + 2, str(h), border=1, align="C", fill=True)
            p.ln()

        self.room(2 * (line + 2))
        draw_head()
        for i, row in enumerate(rows):
            texts = ["" if v is None else str(v) for v in row]
            lines = max(len(p.multi_cell(w - 1, line, t, dry_run=True, output="LINES") or [""])
                        for t, w in zip(texts, widths, strict=True))
            h = lines * line + 2
            if p.get_y() + h > p.h - 15:
                p.add_page()
                draw_head()
            x0, y0 = p.get_x(), p.get_y()
            shade = bool(marks and marks[i])
            if shade:
                p.set_fill_color(255, 228, 228)
            for t, w in zip(texts, widths, strict=True):
                x = p.get_x()
                p.rect(x, y0, w, h, style="DF" if shade else "D")
                p.set_xy(x + 0.5, y0 + 1)
                p.multi_cell(w - 1, line, t, align="L")
                p.set_xy(x + w, y0)
            p.set_xy(x0, y0 + h)
        p.ln(2)

    def hbars(self, labels: Sequence[str], values: Sequence[float], vmax: float, fmt: str = "{:.1f}",
              reds: Sequence[bool] | None = None, marker: float | None = None, marker_label: str = "",
              bar_h: float = 5.0) -> None:
        """A horizontal bar chart: one bar per label; ``marker`` draws a dashed vertical reference line."""
        p = self.pdf
        label_w, value_w = 28.0, 16.0
        chart_w = self.width - label_w - value_w
        self.room(len(labels) * (bar_h + 1.5) + 10)
        x0, y = 15 + label_w, p.get_y() + 2
        top = y
        p.set_font("cjk", size=8.5 if bar_h >= 4 else 6.5)
        for i, (lab, v) in enumerate(zip(labels, values, strict=True)):
            p.set_xy(15, y)
            if reds and reds[i]:
                p.set_text_color(*RED)
            p.cell(label_w - 2, bar_h, lab, align="R")
            p.set_text_color(0, 0, 0)
            w = max(0.0, min(v / vmax, 1.0)) * chart_w if vmax else 0
            p.set_fill_color(*(RED if reds and reds[i] else BLUE))
            if w > 0:
                p.rect(x0, y, w, bar_h, style="F")
            p.set_xy(x0 + w + 1, y)
            p.cell(value_w, bar_h, fmt.format(v))
            y += bar_h + 1.5
        p.set_draw_color(*GREY)
        p.line(x0, top - 1, x0, y)
        if marker is not None and vmax:
            mx = x0 + min(marker / vmax, 1.0) * chart_w
            p.set_draw_color(*RED)
            p.set_dash_pattern(dash=1.2, gap=1)
            p.line(mx, top - 1, mx, y)
            p.set_dash_pattern()
            p.set_font("cjk", size=7.5)
            p.set_text_color(*RED)
            p.set_xy(mx - 20, y)
            p.cell(40, 4, marker_label, align="C")
            p.set_text_color(0, 0, 0)
            y += 4
        p.set_draw_color(0, 0, 0)
        p.set_xy(15, y + 2)

    def columns(self, labels: Sequence[str], values: Sequence[float], vmax: float, height: float = 40.0,
                reds: Sequence[bool] | None = None, marker: float | None = None, marker_label: str = "",
                every: int = 5) -> None:
        """A vertical column chart (e.g. one column per day), a label every ``every`` columns."""
        p = self.pdf
        self.room(height + 14)
        left = 27.0
        chart_w = self.width - (left - 15) - 4
        x0, top = left, p.get_y() + 3
        base = top + height
        cw = chart_w / max(len(values), 1)
        p.set_draw_color(*GREY)
        p.line(x0, top, x0, base)
        p.line(x0, base, x0 + chart_w, base)
        p.set_font("cjk", size=6.5)
        for frac in (0.0, 0.5, 1.0):
            p.set_xy(15, base - frac * height - 1.5)
            p.cell(left - 16, 3, f"{frac * vmax:g}", align="R")
        for i, (lab, v) in enumerate(zip(labels, values, strict=True)):
            h = max(0.0, min(v / vmax, 1.0)) * height if vmax else 0
            p.set_fill_color(*(RED if reds and reds[i] else BLUE))
            if h > 0:
                p.rect(x0 + i * cw + 0.3, base - h, max(cw - 0.6, 0.3), h, style="F")
            if i % every == 0:
                p.set_xy(x0 + i * cw - 4, base + 0.5)
                p.cell(cw + 8, 3, lab, align="C")
        if marker is not None and vmax:
            my = base - min(marker / vmax, 1.0) * height
            p.set_draw_color(*RED)
            p.set_dash_pattern(dash=1.2, gap=1)
            p.line(x0, my, x0 + chart_w, my)
            p.set_dash_pattern()
            p.set_text_color(*RED)
            p.set_xy(x0 + chart_w - 30, top - 3.5)
            p.cell(30, 3.5, f"- - {marker_label}", align="R")
            p.set_text_color(0, 0, 0)
        p.set_draw_color(0, 0, 0)
        p.set_xy(15, base + 6)

    def paired_bars(self, labels: Sequence[str], a: Sequence[float], b: Sequence[float], names: tuple[str, str],
                    marker: float | None = None, marker_label: str = "") -> None:
        """Two bars per label (shares 0..1, e.g. communities and channels completed) against a reference line."""
        p = self.pdf
        label_w = 28.0
        chart_w = self.width - label_w - 14
        bar_h = 3.2
        self.room(len(labels) * (2 * bar_h + 2) + 14)
        p.set_font("cjk", size=8)
        y = p.get_y() + 1
        for colour, name, dx in ((BLUE, names[0], 0), (GREEN, names[1], 45)):
            p.set_fill_color(*colour)
            p.rect(15 + label_w + dx, y + 0.8, 4, 3, style="F")
            p.set_xy(15 + label_w + dx + 5, y)
            p.cell(38, 4.5, name)
        y += 7
        x0 = 15 + label_w
        top = y
        for lab, va, vb in zip(labels, a, b, strict=True):
            p.set_xy(15, y + 0.5)
            p.cell(label_w - 2, 2 * bar_h, lab, align="R")
            for v, colour, dy in ((va, BLUE, 0.0), (vb, GREEN, bar_h)):
                w = max(0.0, min(v, 1.0)) * chart_w
                p.set_fill_color(*colour)
                if w > 0:
                    p.rect(x0, y + dy, w, bar_h, style="F")
                p.set_xy(x0 + w + 0.8, y + dy - 0.6)
                p.set_font("cjk", size=6.5)
                p.cell(12, bar_h + 1, f"{v:.0%}")
                p.set_font("cjk", size=8)
            y += 2 * bar_h + 2
        p.set_draw_color(*GREY)
        p.line(x0, top, x0, y)
        p.line(x0 + chart_w, top, x0 + chart_w, y)
        if marker is not None:
            mx = x0 + min(max(marker, 0.0), 1.0) * chart_w
            p.set_draw_color(*RED)
            p.set_dash_pattern(dash=1.2, gap=1)
            p.line(mx, top - 1, mx, y)
            p.set_dash_pattern()
            p.set_text_color(*RED)
            p.set_font("cjk", size=7.5)
            p.set_xy(mx - 25, y)
            p.cell(50, 4, marker_label, align="C")
            p.set_text_color(0, 0, 0)
            y += 4
        p.set_draw_color(0, 0, 0)
        p.set_xy(15, y + 2)

    def output(self) -> bytes:
        return bytes(self.pdf.output())


def _pct(v: float | None) -> str:
    return "—" if v is None else f"{v:.1%}"


# ---- the monthly circular -----------------------------------------------------------------------------------
def circular_pdf(standings: Sequence[Any], year: int, month: int, notes: Sequence[str] = (),
                 lagging_share: float = 0.8, early: dict[str, Any] | None = None) -> bytes:
    """The monthly circular: ranking chart (score per county, laggards red), progress against plan (community and
    channel completion vs the pro-rata target), the ranking table and the laggards' reasons."""
    doc = Doc(f"{year}年{month}月建设进展通报")
    doc.title(f"{year}年{month}月 “智慧安防小区”“居安工程”建设进展通报",
              f"三明市委政法委 · 三明市公安局（依据实施方案 六、(五) 每月通报）"
              f"  生成时间 {timefmt.now_text(seconds=False)}")
    for n in notes:
        doc.para(f"注意：{n}", 9, RED)
    ranked = sorted(standings, key=lambda s: (s.rank, s.plan.county_code))
    built = sum(s.progress.communities_built for s in ranked)
    accepted = sum(getattr(s.progress, "communities_accepted", 0) for s in ranked)
    channels = sum(s.progress.channels_built for s in ranked)
    plan_c = sum(s.plan.communities for s in ranked)
    plan_h = sum(s.plan.channels for s in ranked)
    doc.heading("一、总体进展")
    doc.para(f"全市“智慧安防小区”任务 {plan_c} 个，已建成（达到基本型及以上）{built} 个，已验收 {accepted} 个；"
             f"“居安工程”视频监控任务 {plan_h} 路，已建 {channels} 路。"
             + (f"4月底前先行任务 {early['target']} 路，截至 {early['by']} 已建 {early['done']} 路"
                f"（{'已完成' if early['met'] else '未完成'}）。" if early else ""))
    measured = sum(getattr(s.progress, "retention_measured", 0) for s in ranked)
    short = [s for s in ranked if getattr(s.progress, "retention_short", 0)]
    doc.para(f"录像存储（每日查询各摄像机最早录像的实测值）：实测 {measured} 台，不足 30 天 "
             f"{sum(s.progress.retention_short for s in short)} 台"
             + (f"（{'、'.join(f'{s.plan.county} {s.progress.retention_short} 台' for s in short)}，已派运维工单）。"
                if short else "。"))
    doc.heading("二、各县（市、区）得分排名")
    doc.hbars([f"{s.rank}. {s.plan.county}" for s in ranked], [s.score for s in ranked], 100.0,
              reds=[s.lagging for s in ranked])
    doc.para("红色为进度滞后单位（完成率低于时序进度的一定比例，见 supervision_<年>.json）。", 8, GREY)
    expected = lagging_share * month / 12
    doc.heading("三、进度与计划对比")
    doc.paired_bars([s.plan.county for s in ranked], [s.community_share for s in ranked],
                    [s.channel_share for s in ranked], ("小区完成率", "居安工程完成率"),
                    marker=month / 12, marker_label=f"时序进度 {month / 12:.0%}（滞后线 {expected:.0%}）")
    doc.heading("四、排名表")
    doc.table(["排名", "县（市、区）", "小区任务", "已建", "已验收", "完成率", "居安任务(路)", "已建(路)", "完成率",
               "在线率", "得分"],
              [[s.rank, s.plan.county, s.plan.communities, s.progress.communities_built,
                getattr(s.progress, "communities_accepted", 0), f"{s.community_share:.0%}", s.plan.channels,
                s.progress.channels_built, f"{s.channel_share:.0%}", _pct(s.progress.online_rate), f"{s.score:g}"]
               for s in ranked],
              [11, 22, 14, 12, 13, 14, 20, 16, 14, 14, 13], marks=[s.lagging for s in ranked])
    lagging = [s for s in ranked if s.lagging]
    doc.heading("五、进度滞后单位")
    if lagging:
        for s in lagging:
            doc.para(f"{s.plan.county}：{'；'.join(s.lagging_reasons)}。", 9.5)
        doc.para("对进展明显滞后、建设质量不高、消极应付的，将约谈相关领导和责任人（实施方案 六、(五)）。", 9, GREY)
    else:
        doc.para("本月无进度滞后单位。")
    return doc.output()


# ---- the acceptance report ----------------------------------------------------------------------------------
def acceptance_pdf(f: dict[str, Any]) -> bytes:
    """The acceptance report of one community from :func:`facts.acceptance_facts`' dictionary."""
    doc = Doc(f"{f['name']}验收报告")
    doc.title("“智慧安防小区”竣工验收报告",
              f"{f['name']}（{f['community_code']}）  生成时间 {timefmt.fmt(f['generated_at'], seconds=False)}")
    st = f["stability"]
    pr = f.get("project")
    lines = []
    if pr:
        lines.append(f"项目：{pr['name']}（{pr['kind_label']}），目标类型：{pr['target_label']}，"
                     f"当前状态：{pr['state_label']}，设计报审 {pr['design_round']} 次。")
        if pr.get("running_since"):
            lines.append(f"试运行开始：{pr['running_since'][:10]}。")
    tier = f["tier"]
    verdict = "具备" if st["eligible"] else "尚不具备"
    lines.append(f"结论：系统已连续稳定运行 {st['stable_days']} 天（要求 {st['required_days']} 天以上），"
                 f"{verdict}申请竣工验收条件；建设类型核查结果为“{tier['tier_label']}”。")
    doc.heading("概况")
    for ln in lines:
        doc.para(ln)
    doc.heading("一、建设类型核查（实施方案 三、(三)）")
    doc.para(f"已达类型：{tier['tier_label']}。设备 {tier['devices']} 台。")
    if pr:
        check = pr["design_check"]
        doc.para(f"设计方案目标“{pr['target_label']}”：{'设计满足' if check['ok'] else '设计缺项'}"
                 + ("" if check["ok"] else "：" + "、".join(m["label"] for m in check["missing"])))
    if tier.get("next_label"):
        doc.para(f"距“{tier['next_label']}”缺项：")
        doc.table(["序号", "缺项（点位 · 子系统）"], [[i + 1, m["label"]] for i, m in enumerate(tier["missing"])],
                  [15, 150])
    else:
        doc.para("已达最高类型（先进型）。")
    spec = f["specs"]
    doc.heading("二、前端设备规格核查（实施方案 五、(二)）")
    bad = len(spec["non_compliant"])
    doc.para(f"视频监控 {spec['cameras']} 台，符合要求 {spec['compliant']} 台，不符合 {bad} 台。")
    if spec["non_compliant"]:
        doc.table(["设备编码", "名称", "不符合项"],
                  [[c["device_id"], c["name"], "；".join(x["message"] for x in c["findings"])]
                   for c in spec["non_compliant"]], [48, 40, 92], marks=[True] * len(spec["non_compliant"]))
    doc.heading("三、系统稳定运行情况（实施方案 六、(二)）")
    th = st["thresholds"]
    doc.para(f"判定标准：日在线率不低于 {th['min_daily_online_rate']:.0%}，且不少于 {th['min_capturing_share']:.0%} 的"
             f"抓拍摄像机当日有抓拍进入视图库（每台至少 {th['min_captures_per_camera_day']} 张）。"
             f"连续稳定 {st['stable_days']} 天，要求 {st['required_days']} 天。")
    days = st["days"]
    if days:
        doc.para("每日在线率（%，红色为未达稳定标准的日期）：", 9)
        doc.columns([d["day"][5:] for d in days], [(d["online_rate"] or 0) * 100 for d in days], 100.0,
                    reds=[not d["stable"] for d in days], marker=th["min_daily_online_rate"] * 100,
                    marker_label=f"阈值 {th['min_daily_online_rate']:.0%}")
        doc.para("每日抓拍到达（有抓拍的摄像机占比，%）：", 9)
        doc.columns([d["day"][5:] for d in days],
                    [100 * d["capturing"] / d["capture_cameras"] if d["capture_cameras"] else 0 for d in days], 100.0,
                    reds=[not d["stable"] for d in days], marker=th["min_capturing_share"] * 100,
                    marker_label=f"阈值 {th['min_capturing_share']:.0%}")
        doc.table(["日期", "设备", "在线率", "抓拍摄像机", "有抓拍", "抓拍量", "稳定", "说明"],
                  [[d["day"], d["devices"], _pct(d["online_rate"]), d["capture_cameras"], d["capturing"],
                    d["captures"], "是" if d["stable"] else "否", "；".join(d["reasons"])] for d in days],
                  [22, 12, 16, 18, 14, 16, 10, 72], size=7.5, marks=[not d["stable"] for d in days])
    doc.heading("四、“一标三实”基础信息（实施方案 三、(四) 一）")
    m = f.get("metrics")
    if m:
        doc.table(["指标", "数值", "目标", "达标"],
                  [[r["label"], _pct(r["rate"]), f"{r['target']:.0%}", "—" if r["rate"] is None else
                    ("是" if r["rate"] >= r["target"] else "否")] for r in m],
                  [60, 30, 30, 20], marks=[r["rate"] is not None and r["rate"] < r["target"] for r in m])
    else:
        doc.para("该小区暂无“一标三实”登记数据。")
    doc.heading("验收意见")
    doc.para("验收组意见：\n\n\n验收组成员（签字）：                          日期：\n\n公安机关（盖章）：", 10)
    return doc.output()
