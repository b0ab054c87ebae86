"""Persona's feature definitions: entities, sources, feature views, on-demand views, services.

Plain module-level objects in dependency order, as in Feast's own templates. `persona ingest`
writes the Parquet these sources read; `persona apply` (or `feast apply`) registers them.
"""

from datetime import timedelta
from pathlib import Path

from feast import (
    Entity,
    FeatureService,
    FeatureView,
    Field,
    FileSource,
    ValueType,

)
from feast.data_format import ParquetFormat
from feast.on_demand_feature_view import on_demand_feature_view
from feast.types import Float64, Int64, String

from feature_repo import transforms
from persona.core.settings import Settings

OWNER = "ml-platform@persona.dev"


def source_path(offline_current: Path, view: str) -> str:
    """Every Parquet partition of a view in the published offline version."""
    return str(offline_current / view / "**" / "*.parquet")


def _source(view: str) -> FileSource:
    """Partitioned Parquet published by `persona ingest`; absolute, so any working directory works
    (persona re-points it at the configured PERSONA_HOME when it applies)."""
    return FileSource(
        name=f"{view}_source",
        path=source_path(Settings.from_env().offline_current, view),
        file_format=ParquetFormat(),
        timestamp_field="event_timestamp",
        description=f"Point-in-time snapshots of {view}, written by persona ingest.",
    )


def _counts(prefix: str, kinds: tuple[str, ...], windows: tuple[int, ...], what: str) -> list[Field]:
    return [
        Field(name=f"{prefix}{kind}_{w}d", dtype=Int64, description=f"{kind} {what} in the last {w} days")
        for w in windows
        for kind in kinds
    ]


# Shoppers, keyed by the shop's own user id (a string: leading zeros are kept).
user = Entity(name="user", join_keys=["user_id"], value_type=ValueType.STRING,
              description="A shopper", owner=OWNER)
# Catalogue items.
item = Entity(name="item", join_keys=["item_id"], value_type=ValueType.STRING,
              description="A catalogue item", owner=OWNER)
# Item categories; with `user` it keys the user x category affinity.
category = Entity(name="category", join_keys=["category"], value_type=ValueType.STRING,
                  description="An item category", owner=OWNER)

# Attributes users give at sign-up; valid until changed, so no expiry.
user_profile = FeatureView(
    name="user_profile",
    entities=[user],
    ttl=timedelta(0),
    schema=[
        Field(name="age_band", dtype=String, description="Age band given at sign-up"),
        Field(name="gender", dtype=String, description="Gender given at sign-up"),
        Field(name="region", dtype=String, description="Shipping region"),
        Field(name="membership_level", dtype=String, description="Loyalty membership level"),
    ],
    source=_source("user_profile"),
    owner=OWNER,
    tags={"team": "profiling", "kind": "attributes"},
    description="User attributes, stamped at sign-up.",
)

# Rolling behaviour; snapshots are written every interval while the user was active in the last
# 90 days, so a value older than two days is stale and served as missing.
user_activity = FeatureView(
    name="user_activity",
    entities=[user],
    ttl=timedelta(days=2),
    schema=[
        *_counts("", ("views", "carts", "purchases"), (1, 7, 30, 90), "events"),
        *[Field(name=f"spend_{w}d", dtype=Float64, description=f"Purchase value in the last {w} days")
          for w in (1, 7, 30, 90)],
        Field(name="aov_90d", dtype=Float64, description="Average purchase value, 90 days (0 if none)"),
        Field(name="days_since_last_event", dtype=Float64, description="Days from the last event to the snapshot"),
        Field(name="days_since_last_purchase", dtype=Float64, description="Days from the last purchase (null if never)"),
        Field(name="view_to_purchase_rate_90d", dtype=Float64, description="Purchases per view, 90 days, capped at 1"),
        Field(name="cart_to_purchase_rate_90d", dtype=Float64, description="Purchases per cart add, 90 days, capped at 1"),
        Field(name="distinct_categories_90d", dtype=Int64, description="Categories touched in 90 days"),
        Field(name="favourite_category", dtype=String, description="Category with most events in 90 days"),
    ],
    source=_source("user_activity"),
    owner=OWNER,
    tags={"team": "profiling", "kind": "behaviour"},
    description="Rolling 1/7/30/90-day user behaviour as of each snapshot.",
)

# Catalogue attributes, stamped at item creation.
item_catalog = FeatureView(
    name="item_catalog",
    entities=[item],
    ttl=timedelta(0),
    schema=[
        Field(name="category", dtype=String, description="Item category"),
        Field(name="brand", dtype=String, description="Item brand"),
        Field(name="list_price", dtype=Float64, description="Catalogue price"),
    ],
    source=_source("item_catalog"),
    owner=OWNER,
    tags={"team": "catalogue", "kind": "attributes"},
    description="Item catalogue attributes.",
)

# How much shoppers want an item lately; stale after two days like user_activity.
item_popularity = FeatureView(
    name="item_popularity",
    entities=[item],
    ttl=timedelta(days=2),
    schema=[
        *_counts("", ("views",), (7, 30), "views of the item"),
        Field(name="carts_30d", dtype=Int64, description="Cart adds of the item in 30 days"),
        *_counts("", ("purchases",), (7, 30), "purchases of the item"),
        Field(name="conversion_rate_30d", dtype=Float64,
              description="Smoothed purchases per view over 30 days: (p + 1) / (max(v, p) + 50)"),
        Field(name="unique_buyers_30d", dtype=Int64, description="Distinct buyers in 30 days"),
    ],
    source=_source("item_popularity"),
    owner=OWNER,
    tags={"team": "catalogue", "kind": "behaviour"},
    description="Rolling item demand as of each snapshot.",
)

# The user's taste for a category, joined on the candidate item's category.
user_category_affinity = FeatureView(
    name="user_category_affinity",
    entities=[user, category],
    ttl=timedelta(days=2),
    schema=[
        Field(name="category_events_90d", dtype=Int64, description="User's events in the category, 90 days"),
        Field(name="category_event_share_90d", dtype=Float64, description="Share of the user's events in the category"),
        Field(name="category_purchase_share_90d", dtype=Float64, description="Share of the user's purchases in the category"),
    ],
    source=_source("user_category_affinity"),
    owner=OWNER,
    tags={"team": "profiling", "kind": "behaviour"},
    description="User x category affinity as of each snapshot.",
)


# Declared order (FeatureView.schema's order varies between processes); strings are not model inputs.
_NUMERIC_ACTIVITY = [f.name for f in user_activity.features if f.dtype != String]


# Computed at request time from the user's and the item's features (feature_repo/transforms.py).
user_item_context = on_demand_feature_view(
    sources=[user_activity[["aov_90d", "favourite_category"]], item_catalog[["category", "list_price"]]],
    schema=[
        Field(name="price_to_aov_ratio", dtype=Float64),
        Field(name="is_favourite_category", dtype=Int64),
    ],
    mode="pandas",
    owner=OWNER,
    tags={"team": "profiling", "kind": "on-demand"},
    # Feast compares inferred fields with these, descriptions included, so they live here instead.
    description="User x item context computed at request time: price_to_aov_ratio (item price / "
                "the user's average order value) and is_favourite_category (1 if the item's "
                "category is the user's favourite).",
)(transforms.user_item_context)


# Exactly the features the conversion (view -> purchase within 7 days) model uses.
conversion_v1 = FeatureService(
    name="conversion_v1",
    features=[
        user_activity[_NUMERIC_ACTIVITY],
        item_catalog[["list_price"]],
        item_popularity,
        user_category_affinity,
        user_item_context,
    ],
    owner=OWNER,
    tags={"model": "conversion"},
    description="Features of the view -> purchase conversion ranking model, version 1.",
)

# Exactly the features the user-level purchase propensity model uses.
propensity_v1 = FeatureService(
    name="propensity_v1",
    features=[user_activity[_NUMERIC_ACTIVITY]],
    owner=OWNER,
    tags={"model": "propensity"},
    description="Features of the user purchase-propensity model, version 1.",
)

# What the profile of a user is made of (attributes and behaviour), for profile lookups.
user_profile_v1 = FeatureService(
    name="user_profile_v1",
    features=[user_profile, user_activity],
    owner=OWNER,
    tags={"use": "profile"},
    description="A user's attributes and behaviour.",
)

OBJECTS = [user, item, category, user_profile, user_activity, item_catalog, item_popularity,
           user_category_affinity, user_item_context, conversion_v1, propensity_v1, user_profile_v1]
