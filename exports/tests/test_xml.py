"""xml columns come back as stored, XML declaration included (COPY's output function
drops it, so ADU reads them as text)."""

import pyarrow.parquet as pq
import pytest

DOCUMENTS = [
    '<?xml version="1.0"?><doc/>',
    '<?xml version="1.0" encoding="UTF-8" standalone="yes"?><doc a="1">é</doc>',
    "<doc>no declaration</doc>",
    "a fragment <b/> of content",
    None,
]


@pytest.mark.django_db(transaction=True)
def test_an_xml_declaration_survives_the_export(owner, source_db, export):
    source_db.execute("CREATE DOMAIN document AS xml")
    source_db.execute("CREATE TABLE papers (id int PRIMARY KEY, body xml, kept document)")
    for i, text in enumerate(DOCUMENTS):
        source_db.execute("INSERT INTO papers VALUES (%s, %s::xml, %s::xml)", (i, text, text))
    job = export(source_db.connection(owner), tables=["public.papers"])
    assert job.status == "complete"
    run = job.tables.get()
    table = pq.read_table([job.folder() / f["path"] for f in run.files]).sort_by("id")
    assert table.column("body").to_pylist() == DOCUMENTS
    assert table.column("kept").to_pylist() == DOCUMENTS
    # What ADU read is what the server stores: the same text by the server's comparison.
    assert source_db.execute("SELECT body::text FROM papers ORDER BY id") == [
        (text,) for text in DOCUMENTS
    ]


@pytest.mark.django_db(transaction=True)
def test_an_xml_column_with_a_hostile_name_is_read_as_a_name(owner, source_db, export):
    """The cast is built around the quoted identifier: a name that looks like SQL stays a
    name, and nothing is written on the source."""
    name = 'x"::text, pg_sleep(0)) --'
    source_db.execute(
        f'CREATE TABLE notes (id int PRIMARY KEY, "{name.replace(chr(34), chr(34) * 2)}" xml)'
    )
    source_db.execute("INSERT INTO notes VALUES (1, '<?xml version=\"1.0\"?><n/>')")
    before = source_db.execute("SELECT n_tup_ins, n_tup_upd, n_tup_del FROM pg_stat_user_tables")
    job = export(source_db.connection(owner), tables=["public.notes"])
    assert job.status == "complete", list(job.errors.values_list("message", flat=True))
    table = pq.read_table([job.folder() / f["path"] for f in job.tables.get().files])
    assert table.column_names == ["id", name]
    assert table.column(name).to_pylist() == ['<?xml version="1.0"?><n/>']
    after = source_db.execute("SELECT n_tup_ins, n_tup_upd, n_tup_del FROM pg_stat_user_tables")
    assert after == before
