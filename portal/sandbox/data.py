"""Demo data the sandbox platforms serve: the same three people everywhere, with the pages,
organizations, channels, boards, locations and servers each of them manages."""

from __future__ import annotations

from dataclasses import dataclass

from portal.sandbox import ACCOUNTS_BY_ID, DEMO_ACCOUNTS, DemoAccount

__all__ = ["ACCOUNTS_BY_ID", "DEMO_ACCOUNTS", "DemoAccount", "SubItem", "SUB_ACCOUNTS", "platform_user_id",
           "sub_accounts_for"]


@dataclass(frozen=True)
class SubItem:
    id: str
    name: str
    handle: str = ""
    detail: str = ""
    linked_instagram: str | None = None  # Facebook Pages: the Instagram business account behind it


SUB_ACCOUNTS: dict[str, dict[str, tuple[SubItem, ...]]] = {
    # account id -> kind -> items
    "sbx-1001": {
        "page": (SubItem("9001001", "Blue Bottle Bakery", "bluebottlebakery", linked_instagram="17841401001"),
                 SubItem("9001002", "Blue Bottle Catering", "bluebottlecatering")),
        "organization": (SubItem("71001", "Blue Bottle Bakery Ltd", "blue-bottle-bakery"),),
        "channel": (SubItem("UCbluebottle0001", "Blue Bottle Bakes", "@bluebottlebakes"),),
        "board": (SubItem("pb-1001-1", "Sourdough Recipes"), SubItem("pb-1001-2", "Shop Window Ideas"),
                  SubItem("pb-1001-3", "Seasonal Specials")),
        "location": (SubItem("locations/51001", "Blue Bottle Bakery Downtown", detail="123 Main St, Springfield"),
                     SubItem("locations/51002", "Blue Bottle Bakery Harbor", detail="8 Quay Rd, Springfield"),
                     SubItem("locations/51003", "Blue Bottle Bakery Uptown", detail="789 Pine Rd, Springfield")),
        "guild": (SubItem("881001", "Blue Bottle Regulars"), SubItem("881002", "Bakery Staff Room")),
    },
    "sbx-1002": {
        "page": (SubItem("9002001", "Northwind Outfitters", "northwind", linked_instagram="17841402001"),),
        "organization": (SubItem("72001", "Northwind Outfitters Inc", "northwind-outfitters"),
                         SubItem("72002", "Northwind Trail Club", "northwind-trail")),
        "channel": (SubItem("UCnorthwind00002", "Northwind on the Trail", "@northwindtrail"),),
        "board": (SubItem("pb-1002-1", "Trail Gear"), SubItem("pb-1002-2", "Camp Recipes")),
        "location": (SubItem("locations/52001", "Northwind Flagship", detail="1 Summit Ave, Boulder"),),
        "guild": (SubItem("882001", "Northwind Hikers"),),
    },
    "sbx-1003": {
        "page": (),  # a user with no Pages: the flow must say so plainly
        "organization": (),
        "channel": (SubItem("UCcasaaurora0003", "Casa Aurora Studio", "@casaaurora"),),
        "board": (SubItem("pb-1003-1", "Interiors"),),
        "location": (),
        "guild": (),
    },
}


def sub_accounts_for(account_id: str, kind: str) -> tuple[SubItem, ...]:
    return SUB_ACCOUNTS.get(account_id, {}).get(kind, ())


def platform_user_id(platform: str, account: DemoAccount) -> str:
    """Each platform numbers its users its own way; keep the ids distinct per platform."""
    number = account.id.removeprefix("sbx-")
    return {"facebook": f"10{number}", "instagram": f"10{number}", "threads": f"30{number}",
            "instagram-standalone": f"178414{number}", "x": f"14{number}", "tiktok": f"tt-open-{number}",
            "linkedin": f"li-{number}", "linkedin-page": f"li-{number}", "google": f"1170{number}",
            "pinterest": account.handle.replace(".", "_"), "discord": f"2290{number}",
            "mastodon": f"10{number}", "bluesky": f"did:plc:sbx{number}"}.get(platform, account.id)
