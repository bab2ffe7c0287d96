"""Every string of the web console, zh-CN first, English second, in one place.

Record labels (verification states, house uses, ...) come from anfang.registry.vocab and role names from
anfang.security.roles; this table holds only the console's own words.
"""

from __future__ import annotations

from anfang.core.errors import pick as pick_language

LANGUAGES = ("zh-CN", "en")
DEFAULT_LANGUAGE = "zh-CN"

STRINGS: dict[str, tuple[str, str]] = {
    # frame
    "app_title": ("三明市智慧安防小区平台", "Sanming smart-security community platform"),
    "app_short": ("智慧安防小区", "Smart-security community"),
    "app_sub": ("居安工程 · 一标三实", "Ju'an project · standard address & three actuals"),
    "nav": ("导航", "Navigation"),
    "colon": ("：", ": "),
    "nav_dashboard": ("工作台", "Dashboard"),
    "nav_metrics": ("一标三实指标", "Registry figures"),
    "nav_addresses": ("标准地址", "Standard addresses"),
    "nav_persons": ("实有人口", "Actual population"),
    "nav_houses": ("实有房屋", "Actual housing"),
    "nav_units": ("实有单位", "Work units"),
    "nav_vehicles": ("车辆", "Vehicles"),
    "nav_me": ("本人信息", "My record"),
    "jurisdiction": ("辖区", "Jurisdiction"),
    "whole_city": ("三明市（全市）", "Sanming (whole city)"),
    "self_only": ("本人信息", "own record only"),
    "logout": ("退出", "Log out"),
    "language": ("语言", "Language"),
    "lang_zh": ("中文", "中文"),
    "lang_en": ("English", "English"),
    "footer": ("三明市公安局 · 居安工程 · 数据仅限辖区内工作使用，所有查询均记入审计",
               "Sanming Public Security Bureau · Ju'an project · data for work within your jurisdiction only; "
               "every query is audited"),
    # login
    "login_title": ("用户登录", "Log in"),
    "username": ("用户名", "Username"),
    "password": ("密码", "Password"),
    "login_button": ("登录", "Log in"),
    "login_failed": ("用户名或密码错误", "Wrong username or password"),
    "login_hint": ("请使用分配的账号登录。本系统运行于公安内网，不依赖互联网。",
                   "Log in with the account you were given. The console runs on the police network and needs no "
                   "internet."),
    # common
    "search": ("查询", "Search"),
    "reset": ("重置", "Reset"),
    "results": ("查询结果", "Results"),
    "no_results": ("没有符合条件的记录", "No matching records"),
    "page_n": ("第 {n} 页", "Page {n}"),
    "prev_page": ("上一页", "Previous"),
    "next_page": ("下一页", "Next"),
    "detail": ("详情", "Details"),
    "view": ("查看", "View"),
    "back": ("返回", "Back"),
    "home": ("首页", "Home"),
    "all": ("全部", "All"),
    "yes": ("是", "yes"),
    "no": ("否", "no"),
    "none": ("无", "none"),
    "id": ("编号", "ID"),
    "address": ("地址", "Address"),
    "address_prefix": ("地址（前缀）", "Address (prefix)"),
    "address_prefix_ph": ("如：三明市三元区列东街道", "e.g. 三明市三元区列东街道"),
    "verification": ("核实状态", "Verification"),
    "verified_by": ("核实人", "Verified by"),
    "verified_at": ("核实时间", "Verified at"),
    "verify_title": ("核实操作", "Verification"),
    "verify_verified": ("核实无误", "Mark verified"),
    "verify_disputed": ("标记存疑", "Mark disputed"),
    "verify_unverified": ("重置为未核实", "Reset to unverified"),
    "verify_confirm": ("确认修改核实状态？", "Change the verification state?"),
    "verify_done": ("核实状态已更新", "Verification state updated"),
    "verify_hint": ("核实操作将记入审计日志。", "Verification changes are written to the audit log."),
    "masked_note": ("部分字段已按角色脱敏显示。", "Some fields are masked for your role."),
    # dashboard and metrics
    "dashboard_title": ("一标三实工作台", "Registry dashboard"),
    "dashboard_lead": ("辖区内一标三实指标：门牌安装率、准确率、标注率目标100%；"
                       "实有人口、实有房屋、实有单位核实率目标95%以上。",
                       "Figures for your jurisdiction: door-plate installation, accuracy and labelling target "
                       "100%; population, housing and work-unit verification target 95% or more."),
    "metrics_title": ("一标三实指标", "Registry figures"),
    "level": ("统计层级", "Level"),
    "level_community": ("社区/村", "Community"),
    "level_town": ("乡镇/街道", "Town / street"),
    "level_county": ("县（市、区）", "County"),
    "level_city": ("市", "City"),
    "region": ("区划", "Region"),
    "target": ("目标", "target"),
    "below_target": ("未达标", "below target"),
    "no_data": ("无数据", "no data"),
    "chart_lowest": ("仅显示最低的 {n} 项（共 {total} 项）", "showing the {n} lowest of {total}"),
    "cells_below": ("红色单元格低于目标，点击查看未达标记录。", "Red cells are below target; click for the records."),
    "total_addresses": ("门牌地址", "Plated addresses"),
    "total_persons": ("实有人口", "Persons"),
    "total_houses": ("实有房屋", "Houses"),
    "total_units": ("实有单位", "Work units"),
    "overall": ("辖区合计", "Jurisdiction total"),
    "below_title": ("未达标记录", "Records below target"),
    "below_lead": ("以下记录使该指标低于目标（最多显示 {n} 条）。", "These records keep the figure below target "
                   "(at most {n} shown)."),
    "metric": ("指标", "Figure"),
    "record": ("记录", "Record"),
    "entity_address": ("地址", "address"),
    "entity_person": ("人员", "person"),
    "entity_house": ("房屋", "house"),
    "entity_unit": ("单位", "work unit"),
    "plate_missing": ("门牌未达标", "plate not OK"),
    "resident_lead": ("您可以查看本人的登记信息。如信息有误，请联系社区民警或网格员核实更正。",
                      "You can view your own registration. If anything is wrong, ask your community police "
                      "officer or grid worker to correct it."),
    # addresses
    "addresses_title": ("标准地址", "Standard addresses"),
    "address_search": ("地址检索", "Address search"),
    "address_tree": ("地址树", "Address tree"),
    "regions": ("行政区划", "Regions"),
    "communities": ("小区/村（地址根节点）", "Communities / villages (address roots)"),
    "children": ("下级地址", "Child addresses"),
    "code": ("编码", "Code"),
    "name": ("名称", "Name"),
    "full_name": ("完整地址", "Full address"),
    "addr_level": ("层级", "Level"),
    "plate_installed": ("门牌安装", "Plate installed"),
    "plate_accurate": ("门牌准确", "Plate accurate"),
    "plate_labelled": ("门牌标注", "Plate labelled"),
    "plate_state": ("门牌状态", "Door plate"),
    "plate_save": ("保存门牌状态", "Save plate state"),
    "plate_done": ("门牌状态已更新", "Plate state updated"),
    "coordinates": ("坐标", "Coordinates"),
    "house_here": ("该地址房屋", "House at this address"),
    "persons_here": ("该地址人员", "Persons at this address"),
    "units_here": ("该地址单位", "Work units at this address"),
    "police_area": ("警务区", "Police area"),
    "grid": ("网格", "Grid"),
    # persons
    "persons_title": ("实有人口", "Actual population"),
    "person_title": ("人员信息", "Person"),
    "id_number": ("公民身份号码", "ID number"),
    "person_name": ("姓名", "Name"),
    "gender": ("性别", "Gender"),
    "birth_date": ("出生日期", "Date of birth"),
    "phone": ("联系电话", "Phone"),
    "plate": ("车牌号", "Plate"),
    "hukou_address": ("户籍地址", "Registered (hukou) address"),
    "population_type": ("人口类型", "Population type"),
    "labels": ("管理类别", "Categories"),
    "residences": ("居住信息", "Residences"),
    "residence_role": ("关系", "Role"),
    "since": ("起始日期", "Since"),
    "until": ("截止日期", "Until"),
    "vehicles": ("名下车辆", "Vehicles"),
    # houses
    "houses_title": ("实有房屋", "Actual housing"),
    "house_title": ("房屋信息", "House"),
    "house_use": ("房屋用途", "Use"),
    "owner": ("产权人", "Owner"),
    "owner_phone": ("产权人电话", "Owner's phone"),
    "area_m2": ("面积（㎡）", "Area (m²)"),
    "residents": ("居住人员", "Residents"),
    # units
    "units_title": ("实有单位", "Work units"),
    "unit_title": ("单位信息", "Work unit"),
    "unit_name": ("单位名称", "Name"),
    "credit_code": ("统一社会信用代码", "Unified social credit code"),
    "unit_kind": ("单位类型", "Kind"),
    "legal_person": ("法定代表人", "Legal representative"),
    "staff_count": ("从业人数", "Staff"),
    # vehicles
    "vehicles_title": ("车辆", "Vehicles"),
    "plate_prefix_ph": ("完整车牌或前缀，如：闽G", "full plate or prefix, e.g. 闽G"),
    "plate_color": ("号牌颜色", "Plate colour"),
    "brand": ("品牌", "Brand"),
    "color": ("车身颜色", "Colour"),
    "owner_name": ("车主", "Owner"),
    # errors
    "error_title": ("无法完成请求", "The request could not be completed"),
    "error_400": ("请求有误", "Bad request"),
    "error_401": ("请先登录", "Please log in"),
    "error_403": ("无权访问", "Access denied"),
    "error_404": ("记录不存在", "Not found"),
    "error_409": ("数据冲突", "Conflict"),
    "error_422": ("输入有误", "Invalid input"),
    "csrf_failed": ("表单已过期或来源无效，请刷新页面后重试。", "The form has expired or did not come from this "
                    "console; reload the page and try again."),
    "invalid_request": ("请求参数有误：{detail}", "Invalid request: {detail}"),
    "bad_state": ("核实状态无效：{state}", "Invalid verification state: {state}"),
    # federation (级联汇聚, anfang.federation)
    "nav_federation": ("级联汇聚", "Federation"),
    "fed_title": ("级联汇聚", "Tiered platforms"),
    "fed_node": ("本节点", "This node"),
    "fed_role_community": ("社区（小区）平台", "community platform"),
    "fed_role_county": ("县级平台", "county platform"),
    "fed_role_city": ("市级平台", "city platform"),
    "fed_schema": ("数据规范版本", "Schema version"),
    "fed_uplinks": ("上联状态", "Uplinks"),
    "fed_no_parent": ("本节点没有上级（最高一级）。", "This node has no parent (top tier)."),
    "fed_parent": ("上级节点", "Parent"),
    "fed_transport": ("传输方式", "Transport"),
    "fed_connected": ("连接", "Connected"),
    "fed_yes": ("已连接", "connected"),
    "fed_no": ("未连接", "not connected"),
    "fed_backlog": ("待发积压", "Backlog"),
    "fed_oldest": ("最早待发", "Oldest pending"),
    "fed_lag": ("延迟", "Lag"),
    "fed_sent": ("已发送", "Sent"),
    "fed_rate": ("速率（条/秒）", "Rate (records/s)"),
    "fed_error": ("最近错误", "Last error"),
    "fed_children": ("下级节点汇总", "Nodes below"),
    "fed_no_children": ("尚无下级节点上报数据。", "No node below has sent data yet."),
    "fed_child": ("节点", "Node"),
    "fed_via": ("经由", "Via"),
    "fed_direct": ("直连", "direct"),
    "fed_online": ("在线", "Online"),
    "fed_last_seen": ("最近上报", "Last seen"),
    "fed_events": ("事件数", "Events"),
    "fed_devices": ("设备（在线/总数）", "Devices (online/total)"),
    "fed_online_rate": ("设备在线率", "Device online rate"),
    "fed_warnings": ("预警（按等级）", "Warnings by level"),
    "fed_child_backlog": ("其上联积压", "Its backlog"),
    "fed_totals": ("合计", "Totals"),
    "fed_subtotal": ("及其下级小计", "and the nodes below it"),
    "fed_level": ("{n}级", "level {n}"),
}

# Message keys that may be passed in ?msg= after a POST/redirect (anything else is ignored).
FLASH_KEYS = frozenset({"verify_done", "plate_done"})


def pick(message: str | None, lang: str = DEFAULT_LANGUAGE) -> str | None:
    """The half of a bilingual domain message for lang (see anfang.core.errors.pick)."""
    return pick_language(message, lang)


def normalize(lang: str | None) -> str | None:
    if not lang:
        return None
    if lang.lower().startswith("zh"):
        return "zh-CN"
    if lang.lower().startswith("en"):
        return "en"
    return None


def translate(key: str, lang: str = DEFAULT_LANGUAGE, **kwargs: object) -> str:
    pair = STRINGS.get(key)
    if pair is None:
        return key
    text = pair[0] if lang.startswith("zh") else pair[1]
    return text.format(**kwargs) if kwargs else text
