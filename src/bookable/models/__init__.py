"""SQLAlchemy tables, one module per domain. Importing this package registers them all."""

from bookable.models.api_keys import ApiKey
from bookable.models.base import Base
from bookable.models.users import User, UserRole

__all__ = ["ApiKey", "Base", "User", "UserRole"]
