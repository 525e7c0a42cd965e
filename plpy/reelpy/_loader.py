"""Loads the reelpy package from reelscore.plpy_modules inside a PL/Python session.

Every PL/Python shim starts with the same two lines (see sql/000-header.sql):
    if 'reelpy_import' not in GD: exec(<this module's source>, GD)
    mod = GD['reelpy_import'](plpy, GD, 'reelpy.something')
The loader keeps the loaded modules in sys.modules and checks, on each call, a hash of
all stored sources (one cheap query through a prepared plan), so a session notices an
upgrade instead of running stale code."""
import importlib.abc
import importlib.util
import sys


class _DbFinder(importlib.abc.MetaPathFinder, importlib.abc.Loader):
    """Serves reelpy.* modules from a dict of sources fetched from the database."""

    def __init__(self, sources):
        self.sources = sources

    def find_spec(self, fullname, path=None, target=None):
        if fullname in self.sources:
            is_pkg = fullname == "reelpy"
            return importlib.util.spec_from_loader(fullname, self, is_package=is_pkg)
        return None

    def create_module(self, spec):
        return None

    def exec_module(self, module):
        code = compile(self.sources[module.__name__], "<reelpy:%s>" % module.__name__, "exec")
        exec(code, module.__dict__)


def reelpy_import(plpy, GD, name):
    """Return module `name` of reelpy, reloading every module when the stored sources changed."""
    if "reelpy_version_plan" not in GD:
        GD["reelpy_version_plan"] = plpy.prepare(
            "SELECT md5(string_agg(sha, ',' ORDER BY name)) AS v FROM reelscore.plpy_modules")
    version = plpy.execute(GD["reelpy_version_plan"])[0]["v"]
    if GD.get("reelpy_version") != version:
        rows = plpy.execute("SELECT name, source FROM reelscore.plpy_modules")
        sources = {r["name"]: r["source"] for r in rows}
        for mod_name in [m for m in sys.modules if m == "reelpy" or m.startswith("reelpy.")]:
            del sys.modules[mod_name]
        sys.meta_path[:] = [f for f in sys.meta_path if not isinstance(f, _DbFinder)]
        sys.meta_path.insert(0, _DbFinder(sources))
        GD["reelpy_version"] = version
    __import__(name)
    return sys.modules[name]
