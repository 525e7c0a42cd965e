"""reelpy: the logic behind reelscore's PL/Python functions, as plain Python.

Inside PostgreSQL these modules are loaded from reelscore.plpy_modules by _loader.py; in
tests they are imported from the plpy/ folder. Functions that query take the server's
`plpy` module as their first argument, so tests can pass a fake one."""
