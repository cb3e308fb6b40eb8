"""Privilege escalation inside a tenant (issue 17, item 3), end to end on a real server.

The delegation rule: nobody grants, through a key, a role, a role edit or an assignment, a
permission they do not hold, nor changes a user who holds permissions they lack. Sessions end
on a password change, DisableUser and role changes; permissions come from the current roles,
never from the token."""

from __future__ import annotations

import time
import uuid

import grpc
import jwt
import pytest
from google.protobuf import field_mask_pb2
from serverproc import TEST_ADMIN_KEY, TEST_SECURITY, start_server
from tenant_rpc import TenantApi, login, refused
from wework.v1 import tenant_pb2 as pb

pytestmark = [pytest.mark.e2e, pytest.mark.mariadb, pytest.mark.redis]

PASSWORD = "correct horse"
DENIED = grpc.StatusCode.PERMISSION_DENIED


@pytest.fixture(scope="module")
def channel(platform):
    with grpc.insecure_channel(platform.server.target) as ch:
        yield ch


class Tenant:
    """A new tenant, its admin API key, and helpers to make roles, users and tokens in it."""

    def __init__(self, platform, channel: grpc.Channel) -> None:
        self.tenant, key, self.roles = platform.new_tenant()
        self.code, self.channel, self.platform = self.tenant.tenant_code, channel, platform
        self.admin = TenantApi(channel, key=key)

    def role(self, *permissions: str) -> pb.Role:
        return self.admin.CreateRole(pb.CreateRoleRequest(role=pb.Role(
            role_code=f"r{uuid.uuid4().hex[:10]}", role_name="custom", permissions=list(permissions))))

    def key(self, role_id: str) -> TenantApi:
        return TenantApi(self.channel, key=self.platform.key_for_role(self.tenant.id, role_id))

    def user(self, *role_ids: str) -> pb.User:
        user = self.admin.CreateUser(pb.CreateUserRequest(user=pb.User(
            username=f"u{uuid.uuid4().hex[:10]}", email=f"{uuid.uuid4().hex[:10]}@example.com",
            password=PASSWORD)))
        for role_id in role_ids:
            self.admin.AssignRole(pb.AssignRoleRequest(user_id=user.id, role_id=role_id))
        return user

    def token(self, user: pb.User, password: str = PASSWORD) -> str:
        return login(self.channel, self.code, user.username, password).access_token

    def as_user(self, user: pb.User) -> TenantApi:
        return TenantApi(self.channel, token=self.token(user))

    def get_user(self, user_id: str) -> pb.User:
        return self.admin.GetUser(pb.GetUserRequest(id=user_id))


def _password_change(user_id: str, password: str) -> pb.UpdateUserRequest:
    return pb.UpdateUserRequest(user=pb.User(id=user_id, password=password),
                                update_mask=field_mask_pb2.FieldMask(paths=["password"]))


def _missing(failure) -> set[str]:
    return set(failure.metadata["missing_permissions"].split(","))


# ---- grants ----------------------------------------------------------------------------------------


def test_api_keys_write_cannot_mint_a_key_stronger_than_itself(platform, channel):
    t = Tenant(platform, channel)
    minter_role = t.role("api_keys.write", "api_keys.read", "roles.read")
    minter = t.key(minter_role.id)
    keys_before = len(t.admin.ListApiKeys(pb.ListApiKeysRequest(page_size=100)).api_keys)
    for stronger in (t.roles["admin"], t.roles["viewer"]):
        failure = refused(minter.CreateApiKey, pb.CreateApiKeyRequest(
            api_key=pb.ApiKey(display_name="escalate", role_id=stronger)))
        assert failure.code == DENIED and failure.reason == "PERMISSION_DENIED"
        assert failure.metadata["subject"] == f"roles/{stronger}"
    assert "users.write" in _missing(refused(minter.CreateApiKey, pb.CreateApiKeyRequest(
        api_key=pb.ApiKey(display_name="escalate", role_id=t.roles["admin"]))))
    assert len(t.admin.ListApiKeys(pb.ListApiKeysRequest(page_size=100)).api_keys) == keys_before
    # Within its own permissions it may.
    same = minter.CreateApiKey(pb.CreateApiKeyRequest(api_key=pb.ApiKey(display_name="peer",
                                                                        role_id=minter_role.id)))
    assert same.secret


def test_roles_write_cannot_make_grow_or_take_a_role_beyond_itself(platform, channel):
    t = Tenant(platform, channel)
    editor = t.user(t.role("roles.write", "roles.read").id)
    as_editor = t.as_user(editor)
    failure = refused(as_editor.CreateRole, pb.CreateRoleRequest(role=pb.Role(
        role_code="everything", role_name="Everything", permissions=["*"])))
    assert failure.code == DENIED and "users.write" in _missing(failure)
    assert "everything" not in {r.role_code for r in t.admin.ListRoles(pb.ListRolesRequest()).roles}
    small = as_editor.CreateRole(pb.CreateRoleRequest(role=pb.Role(
        role_code="small", role_name="Small", permissions=["roles.read"])))
    grow = pb.UpdateRoleRequest(role=pb.Role(id=small.id, permissions=["roles.read", "users.*"]),
                                update_mask=field_mask_pb2.FieldMask(paths=["permissions"]))
    assert refused(as_editor.UpdateRole, grow).code == DENIED
    assert list(t.admin.GetRole(pb.GetRoleRequest(id=small.id)).permissions) == ["roles.read"]
    # A role stronger than the editor cannot be edited either, not even its name.
    strong = t.role("messages.*", "roles.read")
    assert refused(as_editor.UpdateRole, pb.UpdateRoleRequest(
        role=pb.Role(id=strong.id, role_name="renamed"),
        update_mask=field_mask_pb2.FieldMask(paths=["role_name"]))).code == DENIED
    for role_id in (t.roles["admin"], strong.id):
        assert refused(as_editor.AssignRole, pb.AssignRoleRequest(user_id=editor.id, role_id=role_id)).code == DENIED
    assert t.roles["admin"] not in t.get_user(editor.id).role_ids


def test_roles_write_cannot_change_the_roles_of_a_stronger_user(platform, channel):
    t = Tenant(platform, channel)
    boss = t.user(t.roles["admin"])
    as_editor = t.as_user(t.user(t.role("roles.write", "roles.read").id))
    failure = refused(as_editor.UnassignRole, pb.UnassignRoleRequest(user_id=boss.id, role_id=t.roles["admin"]))
    assert failure.code == DENIED and failure.metadata["subject"] in (f"roles/{t.roles['admin']}",
                                                                      f"users/{boss.id}")
    assert list(t.get_user(boss.id).role_ids) == [t.roles["admin"]]


def test_create_user_cannot_grant_roles_beyond_the_creator(platform, channel):
    t = Tenant(platform, channel)
    hr = t.key(t.role("users.write", "users.read", "roles.write", "roles.read").id)
    failure = refused(hr.CreateUser, pb.CreateUserRequest(user=pb.User(
        username="sidekick", email="sidekick@example.com", password=PASSWORD, role_ids=[t.roles["admin"]])))
    assert failure.code == DENIED and failure.metadata["subject"] == f"roles/{t.roles['admin']}"
    assert "sidekick" not in {u.username for u in t.admin.ListUsers(pb.ListUsersRequest(page_size=100)).users}


def test_users_write_cannot_take_over_a_stronger_user(platform, channel):
    t = Tenant(platform, channel)
    boss = t.user(t.roles["admin"])
    boss_token = t.token(boss)
    helpdesk = t.as_user(t.user(t.role("users.write", "users.read").id))
    for call, request in ((helpdesk.UpdateUser, _password_change(boss.id, "attacker pw 1")),
                          (helpdesk.DisableUser, pb.DisableUserRequest(id=boss.id)),
                          (helpdesk.UpdateUser, pb.UpdateUserRequest(
                              user=pb.User(id=boss.id, email="attacker@example.com"),
                              update_mask=field_mask_pb2.FieldMask(paths=["email"])))):
        failure = refused(call, request)
        assert failure.code == DENIED and failure.metadata["subject"] == f"users/{boss.id}"
    assert refused(login, channel, t.code, boss.username, "attacker pw 1").code == grpc.StatusCode.UNAUTHENTICATED
    assert TenantApi(channel, token=boss_token).ListUsers(pb.ListUsersRequest()).users  # untouched
    assert t.get_user(boss.id).status == pb.USER_STATUS_ACTIVE
    # A user holding nothing more than the helpdesk can be helped.
    plain = t.user(t.role("users.read").id)
    helpdesk.UpdateUser(_password_change(plain.id, "a new password"))
    assert t.token(plain, "a new password")


def test_the_platform_admin_keeps_full_power(platform, channel):
    t = Tenant(platform, channel)
    boss = t.user(t.roles["admin"])
    platform_admin = TenantApi(channel, key=TEST_ADMIN_KEY, tenant_id=t.tenant.id)
    platform_admin.UpdateUser(_password_change(boss.id, "reset by the operator"))
    assert t.token(boss, "reset by the operator")
    assert platform_admin.CreateApiKey(pb.CreateApiKeyRequest(api_key=pb.ApiKey(
        display_name="ops", role_id=t.roles["admin"]))).secret


# ---- sessions ----------------------------------------------------------------------------------------


def _works(api: TenantApi) -> bool:
    try:
        api.ListUsers(pb.ListUsersRequest())
        return True
    except grpc.RpcError as exc:
        assert exc.code() == grpc.StatusCode.UNAUTHENTICATED, exc
        return False


def test_a_password_reset_ends_earlier_sessions(platform, channel):
    t = Tenant(platform, channel)
    user = t.user(t.roles["viewer"])
    before = t.as_user(user)
    assert _works(before)
    t.admin.UpdateUser(_password_change(user.id, "the new password"))
    assert not _works(before)
    assert refused(before.ListUsers, pb.ListUsersRequest()).message.startswith("this session has ended")
    assert _works(TenantApi(channel, token=t.token(user, "the new password")))


def test_disable_and_role_changes_end_earlier_sessions(platform, channel):
    t = Tenant(platform, channel)
    user = t.user(t.roles["viewer"])
    session = t.as_user(user)
    t.admin.AssignRole(pb.AssignRoleRequest(user_id=user.id, role_id=t.roles["operator"]))
    assert not _works(session)
    session = t.as_user(user)
    t.admin.UnassignRole(pb.UnassignRoleRequest(user_id=user.id, role_id=t.roles["operator"]))
    assert not _works(session)
    session = t.as_user(user)
    t.admin.DisableUser(pb.DisableUserRequest(id=user.id))
    t.admin.EnableUser(pb.EnableUserRequest(id=user.id))
    assert not _works(session)  # enabling again does not bring the old session back
    assert _works(t.as_user(user))


def test_permissions_come_from_the_current_roles(platform, channel):
    t = Tenant(platform, channel)
    role = t.role("users.read", "roles.read")
    session = t.as_user(t.user(role.id))
    session.ListUsers(pb.ListUsersRequest())
    t.admin.UpdateRole(pb.UpdateRoleRequest(role=pb.Role(id=role.id, permissions=["roles.read"]),
                                            update_mask=field_mask_pb2.FieldMask(paths=["permissions"])))
    failure = refused(session.ListUsers, pb.ListUsersRequest())  # the same token, no new login
    assert failure.code == DENIED and failure.metadata["permission"] == "users.read"
    session.ListRoles(pb.ListRolesRequest())


def test_forged_token_claims_grant_nothing(platform, channel):
    t = Tenant(platform, channel)
    other = Tenant(platform, channel)
    user = t.user(t.roles["viewer"])
    claims = jwt.decode(t.token(user), options={"verify_signature": False})
    secret = TEST_SECURITY["token_secret"]

    def forged(**changes) -> TenantApi:
        return TenantApi(channel, token=jwt.encode({**claims, **changes}, secret, algorithm="HS256"))

    # Signed with the real secret, yet the claims are checked against the user's current state.
    assert refused(forged(perms=["*"]).CreateUser, pb.CreateUserRequest(user=pb.User(
        username="mallory", email="mallory@example.com", password=PASSWORD))).code == DENIED
    assert refused(forged(tid=other.tenant.id).ListUsers,
                   pb.ListUsersRequest()).code == grpc.StatusCode.UNAUTHENTICATED
    assert refused(forged(sv=claims["sv"] + 1).ListUsers,
                   pb.ListUsersRequest()).code == grpc.StatusCode.UNAUTHENTICATED
    assert forged().ListUsers(pb.ListUsersRequest()).users  # unchanged claims still work


def test_an_ended_session_is_refused_by_every_process_at_once(platform, channel):
    """Both processes cache the user (L1 for 30 s); only the pub/sub invalidation explains a prompt refusal."""
    t = Tenant(platform, channel)
    user = t.user(t.roles["viewer"])
    token = t.token(user)
    second = start_server(platform.workdir, platform.config_path, name="second-sessions")
    try:
        with grpc.insecure_channel(second.target) as other_channel:
            elsewhere = TenantApi(other_channel, token=token)
            assert _works(elsewhere)  # now cached in the second process
            t.admin.UpdateUser(_password_change(user.id, "changed elsewhere"))
            deadline = time.monotonic() + 3
            while _works(elsewhere):
                assert time.monotonic() < deadline, "the second process still accepts the ended session"
                time.sleep(0.05)
    finally:
        second.stop()
