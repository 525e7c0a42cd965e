"""Password checks for the admin panel, inside PostgreSQL (reelscore.admin_check_login).

Hashes are written by werkzeug.security.generate_password_hash in the client, in the form
"<method>$<salt>$<hex digest>" with method "scrypt:N:r:p" or "pbkdf2:<hash>:<iterations>";
this module verifies them with the standard library alone (the server has no werkzeug),
following werkzeug's own derivation (salt and password as UTF-8, hex digest compared in
constant time). Unknown users are checked against a dummy hash, so a wrong user name
takes as long as a wrong password."""
import hashlib
import hmac

# A valid pbkdf2 hash of a random secret nobody knows (werkzeug format).
_DUMMY = ("pbkdf2:sha256:600000$reelscoredummy$"
          "0000000000000000000000000000000000000000000000000000000000000000")


def derive(method, salt, password):
    """Hex digest for a werkzeug method string, or None when the method is not supported."""
    parts = method.split(":")
    pw = password.encode("utf-8")
    sb = salt.encode("utf-8")
    if parts[0] == "scrypt" and len(parts) == 4:
        try:
            n, r, p = (int(x) for x in parts[1:])
        except ValueError:
            return None
        return hashlib.scrypt(pw, salt=sb, n=n, r=r, p=p, maxmem=132 * n * r * p).hex()
    if parts[0] == "pbkdf2" and len(parts) in (2, 3):
        name = parts[1]
        try:
            iterations = int(parts[2]) if len(parts) == 3 else 600000
        except ValueError:
            return None
        if name not in hashlib.algorithms_available:
            return None
        return hashlib.pbkdf2_hmac(name, pw, sb, iterations).hex()
    return None


def check_password_hash(pwhash, password):
    """True when `password` matches the werkzeug-format `pwhash`."""
    if pwhash is None or password is None or pwhash.count("$") < 2:
        return False
    method, salt, digest = pwhash.split("$", 2)
    got = derive(method, salt, password)
    return got is not None and hmac.compare_digest(got, digest)


def check_login(plpy, username, password):
    """The role of an active user whose password matches, else None."""
    if "adminauth_plan" not in _PLANS:
        _PLANS["adminauth_plan"] = plpy.prepare(
            "SELECT password_hash, role FROM reelscore.admin_users "
            "WHERE lower(username) = lower($1) AND active", ["text"])
    rows = plpy.execute(_PLANS["adminauth_plan"], [username or ""])
    if not rows:
        check_password_hash(_DUMMY, password or "")
        return None
    if check_password_hash(rows[0]["password_hash"], password or ""):
        return rows[0]["role"]
    return None


_PLANS = {}
