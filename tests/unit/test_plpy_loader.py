"""The PL/Python loader, run outside the server with a fake plpy."""
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


class FakePlpy:
    def __init__(self, sources):
        self.sources = sources
        self.source_fetches = 0

    def prepare(self, query, types=None):
        return query

    def execute(self, query, args=None):
        import hashlib
        if "md5(string_agg" in query:
            joined = ",".join(hashlib.md5(s.encode()).hexdigest() for _, s in sorted(self.sources.items()))
            return [{"v": hashlib.md5(joined.encode()).hexdigest()}]
        self.source_fetches += 1
        return [{"name": n, "source": s} for n, s in self.sources.items()]


def test_loader_imports_from_stored_sources_and_reloads_on_change():
    loader_src = (ROOT / "plpy" / "reelpy" / "_loader.py").read_text()
    sources = {"reelpy": "", "reelpy.a": "from reelpy import b\nX = b.Y + 1\n", "reelpy.b": "Y = 41\n"}
    plpy = FakePlpy(sources)
    GD: dict = {}
    exec(loader_src, GD)
    mod = GD["reelpy_import"](plpy, GD, "reelpy.a")
    assert mod.X == 42
    GD["reelpy_import"](plpy, GD, "reelpy.a")
    assert plpy.source_fetches == 1  # unchanged sources are not fetched again
    sources["reelpy.b"] = "Y = 99\n"
    assert GD["reelpy_import"](plpy, GD, "reelpy.a").X == 100
    assert plpy.source_fetches == 2
