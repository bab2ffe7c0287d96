from alembic import context
from sqlalchemy import create_engine, pool

from anfang.store.models import metadata

config = context.config


def include_object(obj, name, type_, reflected, compare_to) -> bool:  # noqa: ANN001
    """Autogenerate ignores the per-day partitions of viid_objects (made at run time, anfang.viid.days)."""
    table = getattr(obj, "table", obj) if type_ != "table" else obj
    tname = getattr(table, "name", name) or ""
    return not (reflected and compare_to is None and tname.startswith("viid_objects_"))


def run_migrations_offline() -> None:
    context.configure(url=config.get_main_option("sqlalchemy.url"), target_metadata=metadata,
                      literal_binds=True, render_as_batch=True)
    with context.begin_transaction():
        context.run_migrations()


def run_migrations_online() -> None:
    engine = create_engine(config.get_main_option("sqlalchemy.url"), poolclass=pool.NullPool)
    with engine.connect() as connection:
        context.configure(connection=connection, target_metadata=metadata, render_as_batch=True,
                          include_object=include_object)
        with context.begin_transaction():
            context.run_migrations()
    engine.dispose()


if context.is_offline_mode():
    run_migrations_offline()
else:
    run_migrations_online()
