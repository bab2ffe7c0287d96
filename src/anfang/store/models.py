"""Imports every room's tables so that metadata (and Alembic) sees all of them."""

from anfang.construction import models as construction_models  # noqa: F401
from anfang.devices import models as devices_models  # noqa: F401
from anfang.doorplates import models as doorplates_models  # noqa: F401
from anfang.faces import models as faces_models  # noqa: F401
from anfang.federation import models as federation_models  # noqa: F401
from anfang.gb28181 import models as gb28181_models  # noqa: F401
from anfang.registry import models as registry_models  # noqa: F401
from anfang.rollups import models as rollups_models  # noqa: F401
from anfang.security import models as security_models  # noqa: F401
from anfang.security import records as security_records  # noqa: F401
from anfang.store import eventlog  # noqa: F401
from anfang.store.base import Base
from anfang.viid import models as viid_models  # noqa: F401
from anfang.warnings import models as warnings_models  # noqa: F401

metadata = Base.metadata
