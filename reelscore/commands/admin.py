"""reelscore admin: serve the admin panel, and manage its users.

    reelscore admin [--port 8000] [--host 127.0.0.1]      serve http://HOST:PORT
    reelscore admin create-user NAME --role admin         prompt for a password (twice)
    reelscore admin create-user NAME --password-stdin     read it from standard input
    reelscore admin set-password NAME [--password-stdin]
    reelscore admin set-role NAME viewer|admin [--inactive]
    reelscore admin list-users

Passwords are hashed here with werkzeug.security and stored through the SQL functions of
sql/750-admin.sql; the plain password never reaches the database."""
from __future__ import annotations

import getpass
import sys


def register(sub) -> None:
    p = sub.add_parser("admin", help="serve the admin panel (default http://127.0.0.1:8000) or manage its users")
    p.add_argument("--port", type=int, default=8000, help="port to listen on (default 8000)")
    p.add_argument("--host", default="127.0.0.1", help="address to listen on (default 127.0.0.1)")
    p.add_argument("--debug", action="store_true", help="Flask debug mode (reloader; never in production)")
    p.set_defaults(func=serve)
    actions = p.add_subparsers(dest="admin_action", metavar="ACTION")

    c = actions.add_parser("create-user", help="create a panel user (prompts for the password)")
    c.add_argument("name")
    c.add_argument("--role", choices=["viewer", "admin"], default="viewer")
    c.add_argument("--password-stdin", action="store_true", help="read the password from standard input")
    c.set_defaults(func=create_user)

    s = actions.add_parser("set-password", help="change a panel user's password")
    s.add_argument("name")
    s.add_argument("--password-stdin", action="store_true", help="read the password from standard input")
    s.set_defaults(func=set_password)

    r = actions.add_parser("set-role", help="change a panel user's role, or deactivate it")
    r.add_argument("name")
    r.add_argument("role", choices=["viewer", "admin"])
    r.add_argument("--inactive", action="store_true", help="deactivate the user (it can no longer log in)")
    r.set_defaults(func=set_role)

    l_ = actions.add_parser("list-users", help="list panel users and their roles")
    l_.set_defaults(func=list_users)


def read_password(from_stdin: bool) -> str:
    from reelscore.cli import CommandError
    if from_stdin:
        pw = sys.stdin.readline().rstrip("\r\n")
    else:
        if not sys.stdin.isatty():
            raise CommandError("no terminal to prompt on: use --password-stdin")
        pw = getpass.getpass("Password: ")
        if getpass.getpass("Repeat password: ") != pw:
            raise CommandError("the passwords differ")
    if len(pw) < 8:
        raise CommandError("the password must have at least 8 characters")
    return pw


def create_user(args) -> int:
    from werkzeug.security import generate_password_hash

    from reelscore.db import connect, set_actor
    pw_hash = generate_password_hash(read_password(args.password_stdin))
    with connect() as conn:
        set_actor(conn, getpass.getuser(), "reelscore admin create-user")
        conn.execute("SELECT reelscore.admin_create_user(%s, %s, %s)", (args.name, pw_hash, args.role))
    print(f"created {args.role} {args.name}")
    return 0


def set_password(args) -> int:
    from werkzeug.security import generate_password_hash

    from reelscore.db import connect
    pw_hash = generate_password_hash(read_password(args.password_stdin))
    with connect() as conn:
        conn.execute("SELECT reelscore.admin_set_password(%s, %s)", (args.name, pw_hash))
    print(f"password of {args.name} changed")
    return 0


def set_role(args) -> int:
    from reelscore.db import connect
    with connect() as conn:
        conn.execute("SELECT reelscore.admin_set_role(%s, %s, %s)", (args.name, args.role, not args.inactive))
    print(f"{args.name} is now {args.role}{' (inactive)' if args.inactive else ''}")
    return 0


def list_users(args) -> int:
    from reelscore.db import connect
    with connect() as conn:
        rows = conn.execute("SELECT username, role, active, created_at FROM reelscore.admin_list_users()").fetchall()
    for name, role, active, created in rows:
        print(f"{name:<24} {role:<7} {'active' if active else 'inactive':<9} {created:%Y-%m-%d %H:%M}")
    if not rows:
        print("no users: reelscore admin create-user NAME --role admin")
    return 0


def serve(args) -> int:
    from reelscore.cli import CommandError
    from reelscore.db import connect
    with connect() as conn:
        ok = conn.execute("SELECT to_regprocedure('reelscore.admin_check_login(text, text)') IS NOT NULL").fetchone()[0]
        users = conn.execute("SELECT count(*) FROM reelscore.admin_list_users()").fetchone()[0] if ok else 0
    if not ok:
        raise CommandError("the schema is not installed: run 'reelscore migrate' (or 'make demo')")
    from admin import create_app
    from admin.db import close_pool
    app = create_app()
    print(f"reelscore admin on http://{args.host}:{args.port}/  (Ctrl-C stops)", flush=True)
    if users == 0:
        print("no panel users yet: reelscore admin create-user NAME --role admin", flush=True)
    try:
        app.run(host=args.host, port=args.port, debug=args.debug, threaded=True, use_reloader=args.debug)
    finally:
        close_pool(app)
    return 0
