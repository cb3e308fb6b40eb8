"""TenantService end to end: a real wework-server process over MariaDB shards and Redis,
driven through the generated client facade."""

from __future__ import annotations

import time
import uuid
import zlib

import pytest
from google.protobuf import field_mask_pb2
from serverproc import start_server
from wework.client import (
    AbortedError,
    AlreadyExistsError,
    FailedPreconditionError,
    InvalidArgumentError,
    NotFoundError,
    PermissionDeniedError,
    UnauthenticatedError,
)
from wework.v1 import account_pb2 as apb
from wework.v1 import message_pb2 as mpb
from wework.v1 import tenant_pb2 as pb

pytestmark = [pytest.mark.e2e, pytest.mark.mariadb, pytest.mark.redis]


def _code() -> str:
    return f"t{uuid.uuid4().hex[:12]}"


def _tenant_codes(platform) -> set[str]:
    with platform.admin() as admin:
        return {t.tenant_code for t in admin.tenants.iter_tenants(page_size=100)}


# ---- tenants ---------------------------------------------------------------------------------


def test_create_tenant_retry_with_same_request_id_returns_the_first(platform):
    code, request_id = _code(), str(uuid.uuid4())
    request = pb.CreateTenantRequest(tenant=pb.Tenant(tenant_code=code, tenant_name="Acme", max_accounts=3),
                                     request_id=request_id)
    with platform.admin() as admin:
        first = admin.tenants.create_tenant(request)
        again = admin.tenants.create_tenant(request)
        assert again.id == first.id and again.etag == first.etag
        assert first.status == pb.TENANT_STATUS_ACTIVE and first.max_accounts == 3
        assert sorted(r.role_code for r in platform.admin(first.id).tenants.iter_roles()) == [
            "admin", "operator", "viewer"]
        with pytest.raises(AlreadyExistsError) as err:
            admin.tenants.create_tenant(pb.CreateTenantRequest(
                tenant=pb.Tenant(tenant_code=code, tenant_name="Other")))
        assert err.value.reason == "ALREADY_EXISTS" and err.value.metadata["field"] == "tenant_code"
    assert sum(1 for c in _tenant_codes(platform) if c == code) == 1


@pytest.mark.parametrize(
    ("field", "value", "path"),
    [
        ("tenant_code", "Bad Code!", "tenant.tenant_code"),
        ("tenant_code", "", "tenant.tenant_code"),
        ("tenant_name", "", "tenant.tenant_name"),
        ("tenant_name", "x" * 101, "tenant.tenant_name"),
        # Control characters in a name: NUL, a terminal escape code, a line break, a Unicode line separator.
        ("tenant_name", "Acme\x00", "tenant.tenant_name"),
        ("tenant_name", "\x1b[31mAcme", "tenant.tenant_name"),
        ("tenant_name", "Acme\nInc", "tenant.tenant_name"),
        ("contact_person", "Ann\u2028Lee", "tenant.contact_person"),
        ("contact_email", "not-an-email", "tenant.contact_email"),
        ("contact_phone", "12ab", "tenant.contact_phone"),
        ("max_accounts", -1, "tenant.max_accounts"),
        ("max_daily_messages", -5, "tenant.max_daily_messages"),
        ("webhook_url", "ftp://example.com/hook", "tenant.webhook_url"),
    ],
)
def test_each_invalid_tenant_field_is_named_and_nothing_is_written(platform, field, value, path):
    code = _code()
    fields = {"tenant_code": code, "tenant_name": "Valid", field: value}
    with platform.admin() as admin, pytest.raises(InvalidArgumentError) as err:
        admin.tenants.create_tenant(pb.CreateTenantRequest(tenant=pb.Tenant(**fields)))
    assert [v.field for v in err.value.field_violations] == [path]
    assert err.value.reason == "INVALID_ARGUMENT"
    assert code not in _tenant_codes(platform)


def test_update_tenant_with_field_mask_and_etag(platform):
    tenant, _, _ = platform.new_tenant(max_accounts=5, tenant_name="Before")
    with platform.admin() as admin:
        updated = admin.tenants.update_tenant(pb.UpdateTenantRequest(
            tenant=pb.Tenant(id=tenant.id, max_accounts=7, tenant_name="ignored", etag=tenant.etag),
            update_mask=field_mask_pb2.FieldMask(paths=["max_accounts"])))
        assert updated.max_accounts == 7 and updated.tenant_name == "Before" and updated.etag != tenant.etag
        with pytest.raises(AbortedError) as err:  # the first etag is stale now
            admin.tenants.update_tenant(pb.UpdateTenantRequest(
                tenant=pb.Tenant(id=tenant.id, max_accounts=9, etag=tenant.etag),
                update_mask=field_mask_pb2.FieldMask(paths=["max_accounts"])))
        assert err.value.reason == "ETAG_MISMATCH"
        with pytest.raises(InvalidArgumentError) as err:
            admin.tenants.update_tenant(pb.UpdateTenantRequest(
                tenant=pb.Tenant(id=tenant.id, tenant_code="renamed"),
                update_mask=field_mask_pb2.FieldMask(paths=["tenant_code"])))
        assert err.value.field_violations[0].field == "update_mask"
        assert admin.tenants.get_tenant(pb.GetTenantRequest(id=tenant.id)).max_accounts == 7


def test_list_tenants_pages_with_opaque_tokens(platform):
    for _ in range(3):
        platform.new_tenant()
    with platform.admin() as admin:
        everything = [t.id for t in admin.tenants.iter_tenants(page_size=1000)]
        paged = [t.id for t in admin.tenants.iter_tenants(page_size=2)]
        first = admin.tenants.list_tenants(pb.ListTenantsRequest(page_size=2))
        assert first.next_page_token and len(first.tenants) == 2
        with pytest.raises(InvalidArgumentError) as err:
            admin.tenants.list_tenants(pb.ListTenantsRequest(page_token="garbage"))
        assert err.value.field_violations[0].field == "page_token"
    assert paged == everything == sorted(everything)  # UUIDv7 ids: creation order


def test_suspended_tenant_credentials_stop_working_until_resumed(platform):
    tenant, key, _ = platform.new_tenant()
    with platform.client(api_key=key) as client, platform.admin() as admin:
        assert client.tenants.get_tenant(pb.GetTenantRequest(id=tenant.id)).id == tenant.id
        admin.tenants.suspend_tenant(pb.SuspendTenantRequest(id=tenant.id))
        with pytest.raises(FailedPreconditionError) as err:
            client.tenants.list_users(pb.ListUsersRequest())
        assert err.value.reason == "TENANT_SUSPENDED"
        with pytest.raises(FailedPreconditionError):  # suspended twice: illegal transition
            admin.tenants.suspend_tenant(pb.SuspendTenantRequest(id=tenant.id))
        admin.tenants.resume_tenant(pb.ResumeTenantRequest(id=tenant.id))
        client.tenants.list_users(pb.ListUsersRequest())
        deleted = admin.tenants.delete_tenant(pb.DeleteTenantRequest(id=tenant.id))
        assert deleted.status == pb.TENANT_STATUS_DELETED
        with pytest.raises(UnauthenticatedError):
            client.tenants.list_users(pb.ListUsersRequest())


# ---- credentials and permissions --------------------------------------------------------------


def test_calls_without_or_with_bad_credentials_are_unauthenticated(platform):
    with platform.client() as anonymous, pytest.raises(UnauthenticatedError):
        anonymous.tenants.list_tenants(pb.ListTenantsRequest())
    bogus = f"wwk_{uuid.uuid4().hex}_{uuid.uuid4().hex}_notthesecret"
    for key in ("garbage", bogus):
        with platform.client(api_key=key) as client, pytest.raises(UnauthenticatedError):
            client.tenants.list_users(pb.ListUsersRequest())
    with platform.client(access_token="not.a.token") as client, pytest.raises(UnauthenticatedError):
        client.tenants.list_users(pb.ListUsersRequest())


def test_missing_permission_is_denied_and_names_the_permission(platform):
    tenant, admin_key, roles = platform.new_tenant()
    viewer_key = platform.key_for_role(tenant.id, roles["viewer"])
    with platform.client(api_key=viewer_key) as viewer:
        assert viewer.tenants.list_users(pb.ListUsersRequest()).users == []
        with pytest.raises(PermissionDeniedError) as err:
            viewer.tenants.create_user(pb.CreateUserRequest(user=pb.User(
                username="bob", email="bob@example.com", password="long enough pw")))
        assert err.value.metadata["permission"] == "users.write"
    with platform.client(api_key=admin_key) as tenant_admin, pytest.raises(PermissionDeniedError):
        tenant_admin.tenants.list_tenants(pb.ListTenantsRequest())  # platform-only


def test_another_tenants_resources_answer_not_found(platform):
    tenant_a, key_a, roles_a = platform.new_tenant()
    _, key_b, _ = platform.new_tenant()
    with platform.client(api_key=key_a) as a, platform.client(api_key=key_b) as b:
        user = a.tenants.create_user(pb.CreateUserRequest(user=pb.User(
            username="alice", email="alice@a.example", password="long enough pw")))
        key_a_id = a.tenants.iter_api_keys().__next__().id
        calls = [
            lambda: b.tenants.get_tenant(pb.GetTenantRequest(id=tenant_a.id)),
            lambda: b.tenants.get_user(pb.GetUserRequest(id=user.id)),
            lambda: b.tenants.disable_user(pb.DisableUserRequest(id=user.id)),
            lambda: b.tenants.get_role(pb.GetRoleRequest(id=roles_a["viewer"])),
            lambda: b.tenants.assign_role(pb.AssignRoleRequest(user_id=user.id, role_id=roles_a["viewer"])),
            lambda: b.tenants.get_api_key(pb.GetApiKeyRequest(id=key_a_id)),
            lambda: b.tenants.revoke_api_key(pb.RevokeApiKeyRequest(id=key_a_id)),
            lambda: b.tenants.update_user(pb.UpdateUserRequest(
                user=pb.User(id=user.id, real_name="x"), update_mask=field_mask_pb2.FieldMask(paths=["real_name"]))),
        ]
        for call in calls:
            with pytest.raises(NotFoundError):
                call()
        # ...and B's listings never show A's rows.
        assert [u.id for u in b.tenants.iter_users()] == []
        # A is untouched.
        assert a.tenants.get_user(pb.GetUserRequest(id=user.id)).status == pb.USER_STATUS_ACTIVE
        assert a.tenants.get_api_key(pb.GetApiKeyRequest(id=key_a_id)).HasField("revoke_time") is False


# ---- users, roles, login ----------------------------------------------------------------------


def test_users_are_unique_per_tenant_and_invalid_fields_are_named(platform):
    _, key, _ = platform.new_tenant()
    with platform.client(api_key=key) as client:
        client.tenants.create_user(pb.CreateUserRequest(user=pb.User(
            username="carol", email="Carol@Example.com", password="long enough pw")))
        with pytest.raises(AlreadyExistsError) as err:
            client.tenants.create_user(pb.CreateUserRequest(user=pb.User(
                username="carol", email="other@example.com", password="long enough pw")))
        assert err.value.metadata["field"] == "username"
        with pytest.raises(AlreadyExistsError) as err:  # emails compare case-insensitively
            client.tenants.create_user(pb.CreateUserRequest(user=pb.User(
                username="carol2", email="carol@example.com", password="long enough pw")))
        assert err.value.metadata["field"] == "email"
        with pytest.raises(InvalidArgumentError) as err:
            client.tenants.create_user(pb.CreateUserRequest(user=pb.User(
                username="x", email="nope", password="short")))
        assert {v.field for v in err.value.field_violations} == {"user.username", "user.email", "user.password"}
        assert [u.username for u in client.tenants.iter_users()] == ["carol"]
    # The same username in another tenant is fine.
    _, other_key, _ = platform.new_tenant()
    with platform.client(api_key=other_key) as other:
        other.tenants.create_user(pb.CreateUserRequest(user=pb.User(
            username="carol", email="carol@example.com", password="long enough pw")))


def test_login_issues_a_token_and_locks_after_five_failures(platform):
    tenant, key, roles = platform.new_tenant()
    with platform.client(api_key=key) as client:
        user = client.tenants.create_user(pb.CreateUserRequest(user=pb.User(
            username="dave", email="dave@example.com", password="correct horse")))
        client.tenants.assign_role(pb.AssignRoleRequest(user_id=user.id, role_id=roles["viewer"]))
    with platform.client() as anonymous:
        login = anonymous.tenants.login(pb.LoginRequest(
            tenant_code=tenant.tenant_code, username="dave", password="correct horse"))
        assert login.user.id == user.id and login.access_token
        with platform.client(access_token=login.access_token) as as_dave:
            assert as_dave.tenants.get_user(pb.GetUserRequest(id=user.id)).last_login_ip == "127.0.0.1"
            with pytest.raises(PermissionDeniedError):  # viewer cannot write
                as_dave.tenants.disable_user(pb.DisableUserRequest(id=user.id))
        for _ in range(5):
            with pytest.raises(UnauthenticatedError):
                anonymous.tenants.login(pb.LoginRequest(
                    tenant_code=tenant.tenant_code, username="dave", password="wrong"))
        with pytest.raises(UnauthenticatedError) as locked:  # locked: even the right password
            anonymous.tenants.login(pb.LoginRequest(
                tenant_code=tenant.tenant_code, username="dave", password="correct horse"))
        with pytest.raises(UnauthenticatedError) as unknown:  # an unknown user answers the same
            anonymous.tenants.login(pb.LoginRequest(
                tenant_code=tenant.tenant_code, username="nobody", password="whatever"))
        assert locked.value.message == unknown.value.message
    with platform.client(api_key=key) as client:
        locked = client.tenants.get_user(pb.GetUserRequest(id=user.id))
        assert locked.status == pb.USER_STATUS_LOCKED and locked.failed_login_count == 5
        assert locked.HasField("locked_until")
        client.tenants.enable_user(pb.EnableUserRequest(id=user.id))
    with platform.client() as anonymous:
        anonymous.tenants.login(pb.LoginRequest(
            tenant_code=tenant.tenant_code, username="dave", password="correct horse"))


def test_disabled_user_token_stops_working(platform):
    tenant, key, roles = platform.new_tenant()
    with platform.client(api_key=key) as client:
        user = client.tenants.create_user(pb.CreateUserRequest(user=pb.User(
            username="erin", email="erin@example.com", password="correct horse")))
        client.tenants.assign_role(pb.AssignRoleRequest(user_id=user.id, role_id=roles["viewer"]))
        token = platform.client().tenants.login(pb.LoginRequest(
            tenant_code=tenant.tenant_code, username="erin", password="correct horse")).access_token
        with platform.client(access_token=token) as as_erin:
            as_erin.tenants.list_users(pb.ListUsersRequest())
            client.tenants.disable_user(pb.DisableUserRequest(id=user.id))
            with pytest.raises(UnauthenticatedError):
                as_erin.tenants.list_users(pb.ListUsersRequest())


def test_roles_assign_and_system_roles_are_read_only(platform):
    _, key, roles = platform.new_tenant()
    with platform.client(api_key=key) as client:
        role = client.tenants.create_role(pb.CreateRoleRequest(role=pb.Role(
            role_code="support", role_name="Support", permissions=["users.read", "messages.*"])))
        with pytest.raises(InvalidArgumentError) as err:
            client.tenants.create_role(pb.CreateRoleRequest(role=pb.Role(
                role_code="bad", role_name="Bad", permissions=["users.read", "platform.tenants.write"])))
        assert err.value.field_violations[0].field == "role.permissions[1]"
        with pytest.raises(FailedPreconditionError):
            client.tenants.update_role(pb.UpdateRoleRequest(
                role=pb.Role(id=roles["admin"], role_name="Mine"),
                update_mask=field_mask_pb2.FieldMask(paths=["role_name"])))
        user = client.tenants.create_user(pb.CreateUserRequest(user=pb.User(
            username="frank", email="frank@example.com", password="correct horse")))
        assigned = client.tenants.assign_role(pb.AssignRoleRequest(user_id=user.id, role_id=role.id))
        assert list(assigned.user.role_ids) == [role.id]
        with pytest.raises(FailedPreconditionError):  # in use
            client.tenants.delete_role(pb.DeleteRoleRequest(id=role.id))
        client.tenants.unassign_role(pb.UnassignRoleRequest(user_id=user.id, role_id=role.id))
        client.tenants.delete_role(pb.DeleteRoleRequest(id=role.id))
        with pytest.raises(NotFoundError):
            client.tenants.get_role(pb.GetRoleRequest(id=role.id))


def test_names_with_control_characters_are_refused_with_the_field_named(platform):
    _, key, roles = platform.new_tenant()
    bad = "Red \x1b[31mname"
    with platform.client(api_key=key) as client:
        attempts = {
            "user.real_name": lambda: client.tenants.create_user(pb.CreateUserRequest(user=pb.User(
                username="dora", email="dora@example.com", password="long enough pw", real_name=bad))),
            "role.role_name": lambda: client.tenants.create_role(pb.CreateRoleRequest(role=pb.Role(
                role_code="support", role_name=bad, permissions=["users.read"]))),
            "api_key.display_name": lambda: client.tenants.create_api_key(pb.CreateApiKeyRequest(
                api_key=pb.ApiKey(display_name=bad, role_id=roles["viewer"]))),
            "account.account_name": lambda: client.accounts.create_account(apb.Account(account_name="tab\there")),
            "template.template_name": lambda: client.messages.create_template(mpb.MessageTemplate(
                template_name="nul\x00", template_type=mpb.MESSAGE_TYPE_TEXT,
                template_content=mpb.MessageContent(text=mpb.TextContent(text="hello")))),
        }
        for path, attempt in attempts.items():
            with pytest.raises(InvalidArgumentError) as err:
                attempt()
            assert [v.field for v in err.value.field_violations] == [path], path
            assert "control characters" in err.value.field_violations[0].description
        # Nothing was written, and an update is refused the same way.
        assert [u.username for u in client.tenants.iter_users()] == []
        with pytest.raises(InvalidArgumentError) as err:
            client.tenants.update_role(pb.UpdateRoleRequest(
                role=pb.Role(id=client.tenants.create_role(pb.CreateRoleRequest(role=pb.Role(
                    role_code="ops", role_name="Ops", permissions=["users.read"]))).id, role_name="Ops\n"),
                update_mask=field_mask_pb2.FieldMask(paths=["role_name"])))
        assert [v.field for v in err.value.field_violations] == ["role.role_name"]


def test_api_key_create_is_idempotent_and_revocation_is_immediate(platform):
    _, key, roles = platform.new_tenant()
    request_id = str(uuid.uuid4())
    with platform.client(api_key=key) as client:
        request = pb.CreateApiKeyRequest(api_key=pb.ApiKey(display_name="svc", role_id=roles["viewer"]),
                                         request_id=request_id)
        first = client.tenants.create_api_key(request)
        retry = client.tenants.create_api_key(request)
        assert retry.api_key.id == first.api_key.id and first.secret and retry.secret == ""
        assert first.secret.startswith(first.api_key.prefix)
        with platform.client(api_key=first.secret) as svc:
            svc.tenants.list_users(pb.ListUsersRequest())
            client.tenants.revoke_api_key(pb.RevokeApiKeyRequest(id=first.api_key.id))
            with pytest.raises(UnauthenticatedError):
                svc.tenants.list_users(pb.ListUsersRequest())
        listed = {k.id: k for k in client.tenants.iter_api_keys(show_revoked=True)}
        assert listed[first.api_key.id].HasField("revoke_time")
        assert listed[first.api_key.id].HasField("last_used_time")  # it made one call
        assert first.api_key.id not in {k.id for k in client.tenants.iter_api_keys()}


def test_a_known_key_id_with_another_secret_stays_refused(platform):
    # The authenticator remembers verified keys; that must never let a guessed secret through.
    _, key, _ = platform.new_tenant()
    forged = key[:-1] + ("A" if key[-1] != "A" else "B")
    with platform.client(api_key=key) as client:
        client.tenants.list_users(pb.ListUsersRequest())
    with platform.client(api_key=forged) as forger, pytest.raises(UnauthenticatedError):
        forger.tenants.list_users(pb.ListUsersRequest())
    with platform.client(api_key=key) as client:
        client.tenants.list_users(pb.ListUsersRequest())


# ---- storage: shards and encryption -------------------------------------------------------------


def _physical(platform, db: str, tenant_id: str) -> str:
    bucket = zlib.crc32(tenant_id.encode()) % platform.config.bucket_count
    for shard in platform.config.shards:
        for part in shard.buckets.split(","):
            lo, _, hi = part.partition("-")
            if int(lo) <= bucket <= int(hi or lo):
                return shard.dsn_for(db).rsplit("/", 1)[1]
    raise AssertionError("no shard")


def test_tenant_rows_live_on_the_routed_shard_with_sensitive_columns_encrypted(platform, mariadb_server):
    tenants = [platform.new_tenant(contact_email=f"boss{i}@example.com", contact_phone="+8613800000000")
               for i in range(6)]
    all_user_dbs = {s.dsn_for("user").rsplit("/", 1)[1] for s in platform.config.shards}
    conn = mariadb_server.sync_connect()
    try:
        with conn.cursor() as cur:
            for tenant, key, _ in tenants:
                home = _physical(platform, "user", tenant.id)
                for dbname in all_user_dbs:
                    cur.execute(f"SELECT contact_email, contact_phone FROM `{dbname}`.tenants WHERE id=%s",
                                (tenant.id,))
                    rows = cur.fetchall()
                    assert len(rows) == (1 if dbname == home else 0)
                    if rows:
                        email, phone = rows[0]
                        assert "example.com" not in email and email.startswith("v1:")
                        assert "13800000000" not in phone
            # A user's email too, and the tenant code sits in the global directory.
            tenant, key, _ = tenants[0]
            with platform.client(api_key=key) as client:
                client.tenants.create_user(pb.CreateUserRequest(user=pb.User(
                    username="gina", email="gina@example.com", password="correct horse")))
            cur.execute(f"SELECT email, email_hash FROM `{_physical(platform, 'user', tenant.id)}`.users "
                        "WHERE tenant_id=%s", (tenant.id,))
            email, email_hash = cur.fetchone()
            assert "gina" not in email and len(email_hash) == 64
            directory = platform.config.directory_dsn.rsplit("/", 1)[1]
            cur.execute(f"SELECT tenant_id FROM `{directory}`.tenant_codes WHERE tenant_code=%s",
                        (tenant.tenant_code,))
            assert cur.fetchone()[0] == tenant.id
    finally:
        conn.close()


# ---- two processes --------------------------------------------------------------------------------


def test_revocation_in_one_process_is_seen_by_another_at_once(platform):
    """Both processes cache the key (L1 for 30 s); only the pub/sub invalidation explains a prompt refusal."""
    tenant, key, roles = platform.new_tenant()
    second = start_server(platform.workdir, platform.config_path, name="second")
    try:
        with _client_at(platform.server.target, key) as a, _client_at(second.target, key) as b:
            svc_key = a.tenants.create_api_key(pb.CreateApiKeyRequest(
                api_key=pb.ApiKey(display_name="shared", role_id=roles["viewer"])))
            with _client_at(platform.server.target, svc_key.secret) as svc_a, \
                    _client_at(second.target, svc_key.secret) as svc_b:
                svc_a.tenants.list_users(pb.ListUsersRequest())
                svc_b.tenants.list_users(pb.ListUsersRequest())  # now cached in B's L1
                a.tenants.revoke_api_key(pb.RevokeApiKeyRequest(id=svc_key.api_key.id))
                deadline = time.monotonic() + 3
                while True:
                    try:
                        svc_b.tenants.list_users(pb.ListUsersRequest())
                    except UnauthenticatedError:
                        break
                    assert time.monotonic() < deadline, "process B still accepts the revoked key"
                    time.sleep(0.05)
            assert b.tenants.get_tenant(pb.GetTenantRequest(id=tenant.id)).id == tenant.id
    finally:
        second.stop()


def _client_at(target: str, key: str):
    from wework.client import ClientOptions, WeworkClient

    return WeworkClient(ClientOptions(target=target, api_key=key))


def test_database_rows_are_the_truth_after_a_restart(platform):
    """Nothing acknowledged lives only in memory: a new process sees every tenant."""
    tenant, key, _ = platform.new_tenant()
    restarted = start_server(platform.workdir, platform.config_path, name="restarted")
    try:
        with _client_at(restarted.target, key) as client:
            assert client.tenants.get_tenant(pb.GetTenantRequest(id=tenant.id)).tenant_code == tenant.tenant_code
    finally:
        restarted.stop()


def test_sigterm_stops_the_server_cleanly(platform):
    extra = start_server(platform.workdir, platform.config_path, name="sigterm")
    assert extra.stop() == 0
