"""GB/T 2260 codes of Sanming (三明市, 350400) and its county-level divisions.

Source: GB/T 2260 as amended by the State Council's 2021 approval (梅列区 merged into 三元区, 沙县 became 沙县区);
the seed (明公综〔2021〕106号) names the programme's area as Sanming and its 县（市、区）.
Town / street names below are the real ones for the urban and a few rural towns; the demo generator adds
further towns where a county needs more at a larger scale.
"""

from __future__ import annotations

CITY_CODE = "350400"
CITY_NAME = "三明市"
PROVINCE_NAME = "福建省"

# county code -> (name, real town/street names in that county)
COUNTIES: dict[str, tuple[str, tuple[str, ...]]] = {
    "350404": ("三元区", ("列东街道", "列西街道", "徐碧街道", "城关街道", "白沙街道", "富兴堡街道", "荆西街道",
                        "岩前镇", "莘口镇", "洋溪镇", "陈大镇", "中村乡")),
    "350405": ("沙县区", ("凤岗街道", "虬江街道", "夏茂镇", "高砂镇", "高桥镇", "青州镇", "湖源乡", "南霞乡")),
    "350421": ("明溪县", ("雪峰镇", "盖洋镇", "胡坊镇", "瀚仙镇", "城关乡", "沙溪乡", "夏阳乡", "枫溪乡")),
    "350423": ("清流县", ("龙津镇", "嵩溪镇", "嵩口镇", "灵地镇", "长校镇", "林畲镇", "赖坊镇", "田源乡")),
    "350424": ("宁化县", ("翠江镇", "泉上镇", "湖村镇", "石壁镇", "曹坊镇", "安远镇", "淮土镇", "城郊镇")),
    "350425": ("大田县", ("均溪镇", "石牌镇", "上京镇", "广平镇", "桃源镇", "太华镇", "建设镇", "奇韬镇")),
    "350426": ("尤溪县", ("城关镇", "梅仙镇", "西滨镇", "洋中镇", "新阳镇", "管前镇", "西城镇", "尤溪口镇")),
    "350428": ("将乐县", ("古镛镇", "万安镇", "高唐镇", "白莲镇", "黄潭镇", "水南镇", "光明镇", "漠源乡")),
    "350429": ("泰宁县", ("杉城镇", "朱口镇", "下渠镇", "开善乡", "上青乡", "大田乡", "梅口乡", "新桥乡")),
    "350430": ("建宁县", ("濉溪镇", "里心镇", "溪源乡", "均口镇", "伊家乡", "黄坊乡", "溪口镇", "客坊乡")),
    "350481": ("永安市", ("燕东街道", "燕西街道", "燕南街道", "燕北街道", "西洋镇", "贡川镇", "安砂镇", "小陶镇")),
}


def county_name(code: str) -> str:
    return COUNTIES[code[:6]][0]
