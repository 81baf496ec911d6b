"""Reading run files: JSON lines, plain or gzipped."""
import json


def test_a_gzipped_copy_reads_like_the_file(tmp_path):
    """Committed runs keep large JSON lines gzipped (rows.jsonl.gz): every loader reads them as they are."""
    import gzip

    from ssmscope.microbench.rows import load_rows, numbered_jsonl, stored

    rows = [{"op": "x", "impl": "a", "status": "ok"}, {"op": "x", "impl": "b", "status": "ok"}]
    (tmp_path / "rows.jsonl.gz").write_bytes(gzip.compress("".join(json.dumps(r) + "\n" for r in rows).encode()))
    assert stored(tmp_path / "rows.jsonl") == tmp_path / "rows.jsonl.gz"
    assert load_rows(tmp_path) == rows
    assert [n for n, _ in numbered_jsonl(tmp_path / "rows.jsonl")] == [1, 2]
    (tmp_path / "rows.jsonl").write_text(json.dumps(rows[0]) + "\n")  # a plain file wins over its .gz copy
    assert load_rows(tmp_path) == rows[:1]
    assert stored(tmp_path / "missing.jsonl") is None and numbered_jsonl(tmp_path / "missing.jsonl") == []
