"""gpulab's database layer: per-feature Alembic branches, and SQLite writers that serialize."""

from __future__ import annotations

import sys
import threading

from sqlalchemy import inspect, text

from gpulab.db import make_engine
from gpulab.db.migrate import upgrade

REVISION = '''
from alembic import op
import sqlalchemy as sa
revision = "{rev}"
down_revision = None
branch_labels = ("{label}",)
depends_on = None
def upgrade():
    op.create_table("{table}", sa.Column("id", sa.Integer, primary_key=True), sa.Column("n", sa.Integer))
def downgrade():
    op.drop_table("{table}")
'''


def make_branch(root, package, label, table):
    folder = root / package
    folder.mkdir()
    (folder / "__init__.py").write_text("")
    (folder / f"{label}_0001.py").write_text(REVISION.format(rev=f"{label}0001", label=label, table=table))


def test_every_feature_branch_is_upgraded_once(tmp_path, monkeypatch):
    monkeypatch.syspath_prepend(str(tmp_path))
    make_branch(tmp_path, "feature_a_migrations", "alpha", "alpha_things")
    make_branch(tmp_path, "feature_b_migrations", "beta", "beta_things")
    url = f"sqlite:///{tmp_path / 'gpulab.sqlite'}"
    packages = ["gpulab.db.migrations.versions", "feature_a_migrations", "feature_b_migrations"]
    upgrade(url, packages)
    upgrade(url, packages)  # idempotent
    tables = set(inspect(make_engine(url)).get_table_names())
    assert {"alpha_things", "beta_things", "alembic_version"} <= tables
    with make_engine(url).connect() as conn:
        assert sorted(r[0] for r in conn.execute(text("select version_num from alembic_version"))) == ["alpha0001", "beta0001"]
    sys.modules.pop("feature_a_migrations", None)
    sys.modules.pop("feature_b_migrations", None)


def test_read_then_write_transactions_from_many_connections_do_not_lose_updates(tmp_path):
    url = f"sqlite:///{tmp_path / 'counter.sqlite'}"
    engine = make_engine(url)
    with engine.begin() as conn:
        conn.execute(text("create table counter (n integer)"))
        conn.execute(text("insert into counter values (0)"))
    errors = []

    def bump():
        own = make_engine(url)  # a separate engine, as another process would have
        try:
            for _ in range(25):
                with own.begin() as conn:
                    n = conn.execute(text("select n from counter")).scalar_one()
                    conn.execute(text("update counter set n = :n"), {"n": n + 1})
        except Exception as exc:  # "database is locked" would land here
            errors.append(exc)

    threads = [threading.Thread(target=bump) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    with engine.connect() as conn:
        assert conn.execute(text("select n from counter")).scalar_one() == 100
