"""Claim mapping (SPEC §3.4) and set_user_root_attributes (SPEC §2.2): chalicelib.login.mapping."""
from __future__ import annotations

import json

import pytest

from chalicelib.login.mapping import (
    MAX_PROFILE_BYTES,
    MAX_STRING_CHARS,
    ROOT_ATTRIBUTES,
    apply_root_attribute_policy,
    map_claims,
    needs_userinfo,
    upstream_scope,
)

ID_CLAIMS = {
    "iss": "https://idp.example.com", "sub": "u-1", "aud": "client-1", "exp": 2000000000,
    "iat": 1700000000, "nbf": 1700000000, "nonce": "n-0S6", "at_hash": "x", "c_hash": "y",
    "s_hash": "z", "azp": "client-1", "auth_time": 1700000000, "sid": "s-1", "jti": "j-1",
    "acr": "1", "amr": ["pwd"], "typ": "ID", "cnf": {"jkt": "k"},
    "email": "ada@example.com", "email_verified": True, "name": "Ada Lovelace",
    "given_name": "Ada", "family_name": "Lovelace", "nickname": "ada",
    "picture": "https://example.com/ada.png", "preferred_username": "ada.l",
    "groups": ["admins", "staff"], "is_admin": True, "level": 3,
    "address": {"country": "UK", "locality": "London"}, "urn:ex.dept": "R&D",
}
SECRETISH = "SECRET-VALUE-do-not-log"


def conn(mode=None, attributes=None, userinfo_scope=None, scope="openid profile email", **extra):
    mapping = {}
    if mode is not None:
        mapping["mapping_mode"] = mode
    if attributes is not None:
        mapping["attributes"] = attributes
    if userinfo_scope is not None:
        mapping["userinfo_scope"] = userinfo_scope
    options = {"scope": scope, "attribute_map": mapping, **extra}
    return {"id": "con_abcdefghijklmnop", "name": "acme-oidc", "strategy": "oidc",
            "options": options}


# --------------------------------------------------------------------------- basic_profile


def test_basic_profile_is_the_default_and_takes_only_the_basic_claims():
    for connection in (conn(), {"id": "c", "name": "n", "strategy": "oidc", "options": {}}):
        profile, warnings = map_claims(connection, ID_CLAIMS, None)
        assert profile == {
            "email": "ada@example.com", "email_verified": True, "name": "Ada Lovelace",
            "given_name": "Ada", "family_name": "Lovelace", "nickname": "ada",
            "picture": "https://example.com/ada.png", "username": "ada.l",
        }
        assert warnings == []


def test_basic_profile_userinfo_wins_on_conflict_but_null_does_not_erase():
    userinfo = {"sub": "u-1", "email": "new@example.com", "name": None, "nickname": "lady-ada",
                "preferred_username": "ada.new", "groups": ["x"]}
    profile, _ = map_claims(conn("basic_profile"), ID_CLAIMS, userinfo)
    assert profile["email"] == "new@example.com"
    assert profile["nickname"] == "lady-ada"
    assert profile["username"] == "ada.new"
    assert profile["name"] == "Ada Lovelace"
    assert "groups" not in profile and "preferred_username" not in profile


def test_basic_profile_with_minimal_id_token_and_userinfo():
    profile, _ = map_claims(conn(), {"sub": "u-1", "iss": "i"},
                            {"sub": "u-1", "email": "a@b.c", "email_verified": "true"})
    assert profile == {"email": "a@b.c", "email_verified": True}


def test_basic_profile_skips_absent_and_null_claims():
    profile, warnings = map_claims(conn(), {"sub": "u", "email": None, "name": "N"}, None)
    assert profile == {"name": "N"}
    assert warnings == []


# --------------------------------------------------------------------------- bind_all


def test_bind_all_copies_everything_but_registered_claims():
    profile, warnings = map_claims(conn("bind_all"), ID_CLAIMS, None)
    for registered in ("iss", "sub", "aud", "exp", "iat", "nbf", "nonce", "at_hash", "c_hash",
                       "s_hash", "azp", "auth_time", "sid", "jti", "acr", "amr", "cnf", "typ"):
        assert registered not in profile
    assert profile["groups"] == ["admins", "staff"]
    assert profile["is_admin"] is True
    assert profile["address"] == {"country": "UK", "locality": "London"}
    assert profile["urn:ex.dept"] == "R&D"
    assert profile["preferred_username"] == "ada.l"
    assert profile["username"] == "ada.l"
    assert profile["email"] == "ada@example.com"
    assert warnings == []


def test_bind_all_merges_userinfo_which_wins():
    userinfo = {"sub": "u-1", "email": "new@example.com", "department": "eng", "iss": "x",
                "updated_at": 5, "user_id": "evil", "identities": []}
    profile, _ = map_claims(conn("bind_all"), ID_CLAIMS, userinfo)
    assert profile["email"] == "new@example.com"
    assert profile["department"] == "eng"
    for own in ("iss", "sub", "updated_at", "user_id", "identities"):
        assert own not in profile


def test_bind_all_preferred_username_beats_a_username_claim():
    profile, _ = map_claims(conn("bind_all"), {"sub": "u", "username": "raw",
                                               "preferred_username": "pref"}, None)
    assert profile["username"] == "pref"
    profile, _ = map_claims(conn("bind_all"), {"sub": "u", "username": "raw"}, None)
    assert profile["username"] == "raw"


# --------------------------------------------------------------------------- use_map


def test_use_map_takes_only_the_mapped_attributes():
    profile, warnings = map_claims(conn("use_map", {"email": "${context.tokenset.email}"}),
                                   ID_CLAIMS, None)
    assert profile == {"email": "ada@example.com"}
    assert warnings == []


def test_use_map_with_no_attributes_is_empty():
    assert map_claims(conn("use_map"), ID_CLAIMS, None) == ({}, [])


@pytest.mark.parametrize("template,expected", [
    ("${context.tokenset.groups}", ["admins", "staff"]),
    ("${context.tokenset.is_admin}", True),
    ("${context.tokenset.level}", 3),
    ("${context.tokenset.address}", {"country": "UK", "locality": "London"}),
    ("${ context.tokenset.email }", "ada@example.com"),
    ("${context.tokenset.address.country}", "UK"),
    ("${context.tokenset.urn:ex.dept}", "R&D"),
    ("${context.userinfo.roles}", ["r1", "r2"]),
    ("${context.userinfo.active}", False),
    ("${context.connection.id}", "con_abcdefghijklmnop"),
    ("${context.connection.name}", "acme-oidc"),
    ("${context.connection.strategy}", "oidc"),
    ("a literal", "a literal"),
    ("", ""),
    ("groups: ${context.tokenset.groups}", "groups: admins,staff"),
    ("${context.tokenset.groups}!", "admins,staff!"),
    ("admin=${context.tokenset.is_admin};level=${context.tokenset.level}", "admin=true;level=3"),
    ("active=${context.userinfo.active}", "active=false"),
    ("${context.tokenset.given_name} ${context.tokenset.family_name}", "Ada Lovelace"),
    ("${context.connection.name}|${context.tokenset.sub}", "acme-oidc|u-1"),
    ("${context.tokenset.address}/x", '{"country":"UK","locality":"London"}/x'),
    ("m:${context.userinfo.mixed}", 'm:a,1,true,{"k":"v"}'),
])
def test_use_map_templates(template, expected):
    userinfo = {"sub": "u-1", "roles": ["r1", "r2"], "active": False,
                "mixed": ["a", 1, True, {"k": "v"}]}
    profile, warnings = map_claims(conn("use_map", {"target": template}), ID_CLAIMS, userinfo)
    assert warnings == []
    assert profile["target"] == expected
    assert type(profile["target"]) is type(expected)


@pytest.mark.parametrize("template", [
    "${context.tokenset.missing}",
    "x ${context.tokenset.missing} y",
    "${context.userinfo.email}",  # userinfo not called
    "${context.tokenset.address.planet}",
    "${context.tokenset.email.deeper}",
    "${context.tokenset.nothing_here}",
])
def test_missing_claim_leaves_the_attribute_out_with_a_warning(template):
    claims = {**ID_CLAIMS, "nothing_here": None, "secret": SECRETISH}
    profile, warnings = map_claims(
        conn("use_map", {"ok": "${context.tokenset.email}", "broken": template}), claims, None)
    assert profile == {"ok": "ada@example.com"}
    assert len(warnings) == 1
    assert "broken" in warnings[0]
    assert "ada@example.com" not in warnings[0]


def test_missing_userinfo_claim_with_userinfo_present():
    profile, warnings = map_claims(conn("use_map", {"dept": "${context.userinfo.dept}"}),
                                   ID_CLAIMS, {"sub": "u-1"})
    assert profile == {}
    assert warnings == ["attribute dept: claim context.userinfo.dept is missing; attribute left out"]


def test_warnings_never_contain_claim_values():
    claims = {"sub": "u", "secret": SECRETISH, "big": "s" + SECRETISH * 200}
    mapping = {"a": "${context.tokenset.secret} ${context.tokenset.nope}",
               "big": "${context.tokenset.big}", "iss": "${context.tokenset.secret}",
               "bad": "${context.env.secret}"}
    profile, warnings = map_claims(conn("use_map", mapping), claims, None)
    assert profile == {}
    assert len(warnings) == 4
    assert all(SECRETISH not in w for w in warnings)


def test_unsupported_expression_at_runtime_is_skipped():
    profile, warnings = map_claims(conn("use_map", {"x": "${context.secrets.key}", "y": "lit"}),
                                   ID_CLAIMS, None)
    assert profile == {"y": "lit"}
    assert "x" in warnings[0] and "unsupported" in warnings[0]


@pytest.mark.parametrize("target", ["sub", "iss", "aud", "user_id", "identities", "nonce",
                                    "created_at", "logins_count", "typ", "bad-name", "1abc"])
def test_registered_or_invalid_targets_are_skipped(target):
    profile, warnings = map_claims(conn("use_map", {target: "literal", "ok": "fine"}),
                                   ID_CLAIMS, None)
    assert profile == {"ok": "fine"}
    assert len(warnings) == 1 and target in warnings[0]


def test_attributes_apply_on_top_of_basic_profile():
    mapping = {"email": "${context.userinfo.work_email}", "dept": "${context.tokenset.urn:ex.dept}",
               "name": "${context.tokenset.nope}"}
    profile, warnings = map_claims(conn("basic_profile", mapping), ID_CLAIMS,
                                   {"sub": "u-1", "work_email": "ada@work.example"})
    assert profile["email"] == "ada@work.example"
    assert profile["dept"] == "R&D"
    assert "name" not in profile  # a template owns its attribute: no fallback to the mode's value
    assert profile["username"] == "ada.l"
    assert len(warnings) == 1 and "name" in warnings[0]


def test_attributes_apply_on_top_of_bind_all():
    profile, _ = map_claims(conn("bind_all", {"groups": "${context.tokenset.groups}x"}),
                            ID_CLAIMS, None)
    assert profile["groups"] == "admins,staffx"
    assert profile["is_admin"] is True


# --------------------------------------------------------------------------- limits


def test_string_attribute_over_the_cap_is_dropped():
    ok = "a" * MAX_STRING_CHARS
    claims = {"sub": "u", "ok": ok, "long": ok + "b", "nested": {"x": ["y", ok + "c"]},
              "name": ok + "d"}
    profile, warnings = map_claims(conn("bind_all"), claims, None)
    assert profile == {"ok": ok}
    assert sorted(w.split()[1].rstrip(":") for w in warnings) == ["long", "name", "nested"]


def test_mixed_text_over_the_cap_is_dropped():
    claims = {"sub": "u", "part": "a" * (MAX_STRING_CHARS - 1)}
    profile, warnings = map_claims(
        conn("use_map", {"fits": "${context.tokenset.part}x", "over": "${context.tokenset.part}xy"}),
        claims, None)
    assert list(profile) == ["fits"]
    assert "over" in warnings[0]


def test_profile_is_capped_at_64_kb_keeping_root_attributes_first():
    claims = {"sub": "u"}
    for index in range(40):
        claims[f"c{index:02d}"] = "v" * 2000
    claims["email"] = "ada@example.com"  # last in the claims, but a root attribute
    profile, warnings = map_claims(conn("bind_all"), claims, None)
    size = len(json.dumps(profile, separators=(",", ":"), ensure_ascii=False).encode())
    assert size <= MAX_PROFILE_BYTES
    assert profile["email"] == "ada@example.com"
    assert 0 < len(warnings) < 40
    dropped = {w.split()[1].rstrip(":") for w in warnings}
    assert dropped.isdisjoint(profile)
    assert len(dropped) + len(profile) == 41
    assert all("64" in w or str(MAX_PROFILE_BYTES) in w for w in warnings)


def test_profile_cap_counts_utf8_bytes():
    claims = {"sub": "u", **{f"c{index:02d}": "é" * 2000 for index in range(20)}}
    profile, warnings = map_claims(conn("bind_all"), claims, None)
    assert len(json.dumps(profile, ensure_ascii=False, separators=(",", ":")).encode()) \
        <= MAX_PROFILE_BYTES
    assert warnings and len(profile) < 20


def test_non_json_values_are_dropped():
    profile, warnings = map_claims(conn("bind_all"), {"sub": "u", "n": float("nan"), "ok": 1},
                                   None)
    assert profile == {"ok": 1}
    assert "n" in warnings[0]


# --------------------------------------------------------------------------- root attribute policy

NEW_MAPPED = {"email": "new@example.com", "name": "New Name", "groups": ["g2"], "dept": "eng"}
EXISTING = {"email": "old@example.com", "name": "Old Name", "picture": "https://old/p.png",
            "groups": ["g1"], "stale": "gone"}


def test_on_each_login_overwrites_root_attributes():
    assert apply_root_attribute_policy(EXISTING, NEW_MAPPED, "on_each_login") == NEW_MAPPED
    assert apply_root_attribute_policy(None, NEW_MAPPED, "on_each_login") == NEW_MAPPED


def test_default_policy_is_on_each_login():
    assert apply_root_attribute_policy(EXISTING, NEW_MAPPED, None) == NEW_MAPPED


def test_on_first_login_sets_root_attributes_for_a_new_user_only():
    assert apply_root_attribute_policy(None, NEW_MAPPED, "on_first_login") == NEW_MAPPED
    result = apply_root_attribute_policy(EXISTING, NEW_MAPPED, "on_first_login")
    assert result == {"email": "old@example.com", "name": "Old Name",
                      "picture": "https://old/p.png", "groups": ["g2"], "dept": "eng"}


def test_never_on_login_never_sets_root_attributes():
    assert apply_root_attribute_policy(None, NEW_MAPPED, "never_on_login") == {
        "groups": ["g2"], "dept": "eng"}
    assert apply_root_attribute_policy(EXISTING, NEW_MAPPED, "never_on_login") == {
        "email": "old@example.com", "name": "Old Name", "picture": "https://old/p.png",
        "groups": ["g2"], "dept": "eng"}


def test_policy_ignores_broker_fields_and_does_not_mutate_inputs():
    existing = {**EXISTING, "user_id": "oidc|x|y", "identities": [1], "logins_count": 3}
    before = json.dumps([existing, NEW_MAPPED], sort_keys=True)
    for policy in ("on_each_login", "on_first_login", "never_on_login"):
        result = apply_root_attribute_policy(existing, {**NEW_MAPPED, "sub": "u"}, policy)
        assert not {"user_id", "identities", "logins_count", "sub", "stale"} & set(result)
    assert json.dumps([existing, NEW_MAPPED], sort_keys=True) == before


def test_unknown_policy_is_refused():
    with pytest.raises(ValueError):
        apply_root_attribute_policy(None, {}, "sometimes")


def test_root_attributes_constant():
    assert ROOT_ATTRIBUTES == ("email", "email_verified", "name", "given_name", "family_name",
                               "nickname", "picture", "username")


# --------------------------------------------------------------------------- scope and userinfo


@pytest.mark.parametrize("scope,userinfo_scope,expected", [
    ("openid profile email", None, "openid profile email"),
    ("openid profile email", "groups email offline_access", "openid profile email groups offline_access"),
    ("openid", "groups,roles  groups", "openid groups roles"),
    (None, "groups", "openid profile email groups"),
    (["openid", "email"], "email", "openid email"),
    ("profile", "openid", "profile openid"),
    ("profile", None, "openid profile"),
])
def test_upstream_scope(scope, userinfo_scope, expected):
    connection = conn(userinfo_scope=userinfo_scope, scope=scope)
    if scope is None:
        del connection["options"]["scope"]
    assert upstream_scope(connection) == expected


def test_upstream_scope_accepts_scopes_spelling():
    connection = {"options": {"scopes": "openid email", "attribute_map": {}}}
    assert upstream_scope(connection) == "openid email"


@pytest.mark.parametrize("connection,expected", [
    (conn(), False),
    ({"options": {}}, False),
    (conn("bind_all"), False),
    (conn("use_map", {"a": "${context.tokenset.email}", "b": "lit"}), False),
    (conn(userinfo_scope="groups"), True),
    (conn(userinfo_scope=""), False),
    (conn("bind_all", userinfo_scope="openid"), True),
    (conn("use_map", {"a": "x-${context.userinfo.dept}"}), True),
    (conn("use_map", {"a": "${ context.userinfo.dept }"}), True),
    (conn("basic_profile", {"a": "${context.userinfo.dept}"}), True),
    (conn("use_map", {"a": "context.userinfo.dept"}), False),  # a literal, not an expression
])
def test_needs_userinfo(connection, expected):
    assert needs_userinfo(connection) is expected
