"""Database time accounting: statements run while a DbTime is current are counted, others not."""

from sqlalchemy import create_engine, text

from app.observability.db_timing import DbTime, db_time_var, instrument


def test_statements_count_only_while_a_request_holder_is_current():
    engine = create_engine("sqlite://")
    instrument(engine)
    holder = DbTime()
    with engine.connect() as conn:
        conn.execute(text("SELECT 1"))  # no holder: not counted anywhere
        token = db_time_var.set(holder)
        try:
            conn.execute(text("SELECT 1"))
            conn.execute(text("WITH RECURSIVE c(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM c "
                              "WHERE x < 20000) SELECT count(*) FROM c"))
        finally:
            db_time_var.reset(token)
        conn.execute(text("SELECT 1"))
    assert holder.statements == 2
    assert 0 < holder.seconds < 10
