"""Imports every room's tables so that metadata (and Alembic) sees all of them."""

from anfang.devices import models as devices_models  # noqa: F401
from anfang.registry import models as registry_models  # noqa: F401
from anfang.security import models as security_models  # noqa: F401
from anfang.store.base import Base

metadata = Base.metadata
