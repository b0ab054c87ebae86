"""Persona's feature definitions: entities, sources, feature views, on-demand views, services.

Plain module-level objects in dependency order, as in Feast's own templates. Each view's fields
come from the one feature schema (`persona.core.schema`) and each service's name from the model
catalogue (`persona.core.catalog`). Importing this module reads no environment and names no
home: a source's path is relative to the offline store's `root`, which each home's
`feature_store.yaml` sets. `persona ingest` writes the Parquet these sources read;
`persona apply` (or `feast apply`) registers them.
"""

from datetime import timedelta

from feast import Entity, FeatureService, FeatureView, Field, FileSource, RequestSource, ValueType
from feast.data_format import ParquetFormat
from feast.on_demand_feature_view import on_demand_feature_view
from feast.types import Array, Float64, Int64, String

from feature_repo import transforms
from persona.core.catalog import (
    CONVERSION_SERVICE,
    CONVERSION_V2_SERVICE,
    PROFILE_SERVICE,
    PROPENSITY_SERVICE,
    PROPENSITY_V2_SERVICE,
    RECOMMEND_SERVICE,
)
from persona.core.schema import ALL_TABLES, REQUEST_TIME, TIMESTAMP, Kind

OWNER = "ml-platform@persona.dev"
DTYPES = {Kind.STRING: String, Kind.COUNT: Int64, Kind.AMOUNT: Float64, Kind.RATE: Float64,
          Kind.INSTANT: Float64, Kind.FLAG: Int64, Kind.TEXT_LIST: Array(String),
          Kind.NUMBER_LIST: Array(Float64)}


def _source(view: str, writer: str = "persona ingest") -> FileSource:
    """Every Parquet partition of a view published by `writer`, relative to the offline
    store's root (the home's published version)."""
    return FileSource(
        name=f"{view}_source",
        path=f"{view}/**/*.parquet",
        file_format=ParquetFormat(),
        timestamp_field=TIMESTAMP,
        description=f"Point-in-time snapshots of {view}, written by {writer}.",
    )


def _fields(view: str) -> list[Field]:
    """The view's feature fields, in the schema's order."""
    return [Field(name=c.name, dtype=DTYPES[c.kind], description=c.description)
            for c in ALL_TABLES[view].columns]


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
    schema=_fields("user_profile"),
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
    schema=_fields("user_activity"),
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
    schema=_fields("item_catalog"),
    source=_source("item_catalog"),
    owner=OWNER,
    tags={"team": "catalogue", "kind": "attributes"},
    description="Item catalogue attributes.",
)

# Whether an item can be bought: stamped at creation by `persona ingest` (the items table's
# optional `available`), then at each `persona availability` update; valid until changed.
item_availability = FeatureView(
    name="item_availability",
    entities=[item],
    ttl=timedelta(0),
    schema=_fields("item_availability"),
    source=_source("item_availability", "persona ingest and persona availability"),
    owner=OWNER,
    tags={"team": "catalogue", "kind": "attributes"},
    description="Whether the item can be bought (the rules leave out the others).",
)

# How much shoppers want an item lately; stale after two days like user_activity.
item_popularity = FeatureView(
    name="item_popularity",
    entities=[item],
    ttl=timedelta(days=2),
    schema=_fields("item_popularity"),
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
    schema=_fields("user_category_affinity"),
    source=_source("user_category_affinity"),
    owner=OWNER,
    tags={"team": "profiling", "kind": "behaviour"},
    description="User x category affinity as of each snapshot.",
)




def _lifetime(name: str, entities: list[Entity], description: str) -> FeatureView:
    """A lifetime view (persona/data/lifetime.py): rows only when the entity changes, each the
    history strictly before its timestamp, never expiring."""
    return FeatureView(
        name=name,
        entities=entities,
        ttl=timedelta(0),
        schema=_fields(name),
        source=_source(name),
        owner=OWNER,
        tags={"team": "profiling", "kind": "lifetime"},
        description=description,
    )


user_lifetime = _lifetime("user_lifetime", [user],
                          "The user's whole history: lifetime counts, spend, smoothed "
                          "conversion prior, purchase rhythm and the instants of recency.")
item_lifetime = _lifetime("item_lifetime", [item],
                          "The item's whole history: lifetime counts, buyers and smoothed "
                          "conversion prior.")
user_category_lifetime = _lifetime("user_category_lifetime", [user, category],
                                   "The user's whole history in a category, with a smoothed "
                                   "conversion prior.")
user_item_history = _lifetime("user_item_history", [user, item],
                              "The user's own views, cart adds and purchases of an item; only "
                              "pairs with an event have rows.")



def _retrieval(name: str, entities: list[Entity], description: str) -> FeatureView:
    """A view of retrieval's lists (persona.core.schema.RETRIEVAL_TABLES), a row per entity at
    each `persona train --task retrieval`; lists older than RETRIEVAL_TTL are served as
    missing (a user then gets the cold-start answer)."""
    return FeatureView(
        name=name,
        entities=entities,
        ttl=RETRIEVAL_TTL,
        schema=_fields(name),
        source=_source(name, "persona train --task retrieval"),
        owner=OWNER,
        tags={"team": "recommendations", "kind": "retrieval"},
        description=description,
    )


RETRIEVAL_TTL = timedelta(days=30)
user_candidates = _retrieval("user_candidates", [user],
                             "The user's candidate items from the whole catalogue, with each "
                             "generator's score and rank.")
item_neighbours = _retrieval("item_neighbours", [item],
                             "The items nearest each item by behaviour (item2vec).")

# The moment a request is about: the training row's time offline (training.retrieval adds it),
# the request's arrival online. Recency is computed from it, the same function in both.
request_time = RequestSource(
    name="request_time",
    schema=[Field(name=REQUEST_TIME, dtype=Float64,
                  description="The request's moment, seconds since the Unix epoch (UTC)")],
    description="When the features are asked for.",
)


def _model_inputs(view: str) -> list[str]:
    """The view's model inputs in the schema's order (FeatureView.schema's order varies between
    processes): neither strings nor instants."""
    return [c.name for c in ALL_TABLES[view].columns if c.kind.model_input]


_NUMERIC_ACTIVITY = _model_inputs("user_activity")


# Computed at request time from the user's and the item's features (feature_repo/transforms.py).
user_item_context = on_demand_feature_view(
    sources=[user_activity[["aov_90d", "favourite_category"]],
             item_catalog[["category", "list_price"]]],
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


user_recency = on_demand_feature_view(
    sources=[user_lifetime[["signup_at", "first_event_at", "last_event_at", "first_purchase_at",
                            "last_purchase_at", "mean_purchase_gap_days"]], request_time],
    schema=[Field(name=name, dtype=Float64) for name in (
        "days_since_signup", "days_since_first_event", "days_since_latest_event",
        "days_since_first_purchase", "days_since_latest_purchase", "recency_to_gap_ratio")],
    mode="pandas",
    owner=OWNER,
    tags={"team": "profiling", "kind": "on-demand"},
    description="Tenure and recency as of the request (feature_repo/transforms.py): days since "
                "sign-up, the first and latest event and purchase, and the days since the latest "
                "purchase over the user's mean gap between purchase days.",
)(transforms.user_recency)

user_item_recency = on_demand_feature_view(
    sources=[user_item_history[["pair_last_view_at", "pair_last_cart_at",
                                "pair_last_purchase_at"]], request_time],
    schema=[Field(name=f"days_since_pair_{kind}", dtype=Float64)
            for kind in ("view", "cart", "purchase")],
    mode="pandas",
    owner=OWNER,
    tags={"team": "profiling", "kind": "on-demand"},
    description="Days since the user's latest view, cart add and purchase of the item, as of the "
                "request (feature_repo/transforms.py).",
)(transforms.user_item_recency)


# Exactly the features the conversion (view -> purchase within the label horizon) model uses.
conversion_v1 = FeatureService(
    name=CONVERSION_SERVICE,
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
    name=PROPENSITY_SERVICE,
    features=[user_activity[_NUMERIC_ACTIVITY]],
    owner=OWNER,
    tags={"model": "propensity"},
    description="Features of the user purchase-propensity model, version 1.",
)

# Version 2: v1's features, the lifetime views and their recency, the user x item history and
# the categorical attributes (native categories in XGBoost; training stores the categories).
conversion_v2 = FeatureService(
    name=CONVERSION_V2_SERVICE,
    features=[
        user_activity[_NUMERIC_ACTIVITY],
        user_lifetime[_model_inputs("user_lifetime")],
        user_recency,
        user_profile,
        item_catalog,
        item_popularity,
        item_lifetime,
        user_category_affinity,
        user_category_lifetime,
        user_item_history[_model_inputs("user_item_history")],
        user_item_recency,
        user_item_context,
    ],
    owner=OWNER,
    tags={"model": "conversion"},
    description="Features of the view -> purchase conversion ranking model, version 2.",
)

propensity_v2 = FeatureService(
    name=PROPENSITY_V2_SERVICE,
    features=[
        user_activity[_NUMERIC_ACTIVITY],
        user_lifetime[_model_inputs("user_lifetime")],
        user_recency,
        user_profile,
    ],
    owner=OWNER,
    tags={"model": "propensity"},
    description="Features of the user purchase-propensity model, version 2.",
)

# What the recommendation ranker reads beside retrieval's scores and ranks of each candidate: the
# numbers stored per user, item, user x category and user x item (the user's own history with the
# candidate), none computed from the request's time, so /recommend reads them in one round trip.
# The rules read two of them too: the item's availability and the user's purchases of it.
recommend_v1 = FeatureService(
    name=RECOMMEND_SERVICE,
    features=[
        user_activity[_NUMERIC_ACTIVITY],
        user_lifetime[_model_inputs("user_lifetime")],
        item_catalog[["list_price"]],
        item_availability,
        item_popularity,
        item_lifetime,
        user_category_affinity,
        user_category_lifetime,
        user_item_history[_model_inputs("user_item_history")],
        user_item_context,
    ],
    owner=OWNER,
    tags={"model": "recommend"},
    description="Features of the recommendation ranker, version 1.",
)

# What the profile of a user is made of (attributes and behaviour), for profile lookups.
user_profile_v1 = FeatureService(
    name=PROFILE_SERVICE,
    features=[user_profile, user_activity],
    owner=OWNER,
    tags={"use": "profile"},
    description="A user's attributes and behaviour.",
)

OBJECTS = [user, item, category, user_profile, user_activity, item_catalog, item_availability,
           item_popularity, user_category_affinity, user_lifetime, item_lifetime,
           user_category_lifetime, user_item_history, user_candidates, item_neighbours,
           request_time, user_item_context, user_recency, user_item_recency, conversion_v1,
           propensity_v1, conversion_v2, propensity_v2, recommend_v1, user_profile_v1]
