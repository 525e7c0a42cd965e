"""reelpy.adminauth verifies werkzeug's password hashes with the standard library alone
(the server has no werkzeug): checked against werkzeug's own generate_password_hash."""
import pytest
from reelpy import adminauth
from werkzeug.security import generate_password_hash


@pytest.mark.parametrize("method", ["scrypt", "pbkdf2", "pbkdf2:sha256:1000", "pbkdf2:sha512:2000",
                                    "scrypt:16384:8:1"])
def test_matches_werkzeug(method):
    pw = "pässwörd with ünicode"
    h = generate_password_hash(pw, method=method)
    assert adminauth.check_password_hash(h, pw)
    assert not adminauth.check_password_hash(h, pw + "x")
    assert not adminauth.check_password_hash(h, "")


@pytest.mark.parametrize("bad", [None, "", "nohash", "md5$salt$abc", "pbkdf2:nosuchhash:10$s$00",
                                 "scrypt:a:b:c$s$00", "pbkdf2:sha256:x$s$00"])
def test_malformed_hashes_never_match(bad):
    assert adminauth.check_password_hash(bad, "anything") is False


class FakePlpy:
    def __init__(self, rows):
        self.rows = rows

    def prepare(self, query, types):
        assert "active" in query and "lower(username) = lower($1)" in query
        return query

    def execute(self, plan, args):
        return [r for r in self.rows if r["username"].lower() == args[0].lower()]


def test_check_login_returns_the_role_only_for_the_right_password():
    adminauth._PLANS.clear()
    plpy = FakePlpy([{"username": "Ada", "password_hash": generate_password_hash("pw-123456", method="pbkdf2:sha256:1000"),
                      "role": "admin"}])
    assert adminauth.check_login(plpy, "ada", "pw-123456") == "admin"
    assert adminauth.check_login(plpy, "ada", "wrong") is None
    assert adminauth.check_login(plpy, "nobody", "pw-123456") is None
    assert adminauth.check_login(plpy, None, None) is None
