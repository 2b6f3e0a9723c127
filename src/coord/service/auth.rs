//! etcd `Auth`: users, roles and permissions changed through the log; Authenticate
//! checks the password against the replicated (salted, hashed) one and issues a
//! token that every member learns from the log.

use tonic::{Request, Response, Status};

use super::CoordContext;
use crate::coord::auth::{hash_password, Access};
use crate::coord::errors::CoordError;
use crate::proto::auth_command::Op as AuthOp;
use crate::proto::coord_answer::Answer;
use crate::proto::coord_command::Op;
use crate::proto::etcdserverpb::auth_server::Auth;
use crate::proto::etcdserverpb::*;
use crate::proto::{AuthCommand, CoordCommand, IssuedToken, StoredUser};

pub struct AuthService {
    ctx: CoordContext,
}

impl AuthService {
    pub fn new(ctx: CoordContext) -> Self {
        AuthService { ctx }
    }

    /// Proposes an auth change on behalf of an administrator.
    async fn change<T>(&self, request: &Request<T>, op: AuthOp) -> Result<ResponseHeader, Status> {
        self.ctx.authorize(request, Access::Admin)?;
        let op = Op::Auth(AuthCommand { op: Some(op) });
        self.propose(self.ctx.command(request, op)?).await
    }

    async fn propose(&self, cmd: CoordCommand) -> Result<ResponseHeader, Status> {
        let answer = self.ctx.proposer.propose(cmd).await?;
        match answer {
            Answer::Done(h) => Ok(self.ctx.stamp(Some(h)).unwrap_or_default()),
            other => Err(Status::internal(format!("unexpected answer {other:?}"))),
        }
    }

    /// An administrator's linearizable read of the auth store.
    async fn admin_read<T>(&self, request: &Request<T>) -> Result<ResponseHeader, Status> {
        self.ctx.authorize(request, Access::Admin)?;
        self.ctx.linearizable_barrier().await?;
        Ok(self.ctx.header())
    }
}

/// Random characters for salts and tokens.
fn random_text(len: usize) -> String {
    const ALPHABET: &[u8] = b"abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ";
    (0..len)
        .map(|_| ALPHABET[madsim::rand::random::<usize>() % ALPHABET.len()] as char)
        .collect()
}

fn stored_user(name: String, password: &str, no_password: bool) -> StoredUser {
    let salt = random_text(16);
    StoredUser {
        password_hash: if no_password {
            String::new()
        } else {
            hash_password(password, &salt)
        },
        salt,
        name,
        no_password,
        roles: Vec::new(),
    }
}

#[tonic::async_trait]
impl Auth for AuthService {
    async fn auth_enable(
        &self,
        request: Request<AuthEnableRequest>,
    ) -> Result<Response<AuthEnableResponse>, Status> {
        let header = self
            .change(&request, AuthOp::Enable(AuthEnableRequest {}))
            .await?;
        Ok(Response::new(AuthEnableResponse {
            header: Some(header),
        }))
    }

    async fn auth_disable(
        &self,
        request: Request<AuthDisableRequest>,
    ) -> Result<Response<AuthDisableResponse>, Status> {
        let header = self
            .change(&request, AuthOp::Disable(AuthDisableRequest {}))
            .await?;
        Ok(Response::new(AuthDisableResponse {
            header: Some(header),
        }))
    }

    async fn auth_status(
        &self,
        _request: Request<AuthStatusRequest>,
    ) -> Result<Response<AuthStatusResponse>, Status> {
        self.ctx.linearizable_barrier().await?;
        let (enabled, auth_revision) = {
            let state = self.ctx.state.lock();
            (state.auth.enabled(), state.auth.revision())
        };
        Ok(Response::new(AuthStatusResponse {
            header: Some(self.ctx.header()),
            enabled,
            auth_revision,
        }))
    }

    async fn authenticate(
        &self,
        request: Request<AuthenticateRequest>,
    ) -> Result<Response<AuthenticateResponse>, Status> {
        let AuthenticateRequest { name, password } = request.into_inner();
        self.ctx.linearizable_barrier().await?;
        let auth_revision = {
            let state = self.ctx.state.lock();
            if !state.auth.enabled() {
                return Err(CoordError::AuthNotEnabled.into());
            }
            if !state.auth.check_password(&name, &password) {
                return Err(CoordError::AuthFailed.into());
            }
            state.auth.revision()
        };
        let token = format!("{}.{}", random_text(16), auth_revision);
        let issue = AuthOp::IssueToken(IssuedToken {
            token: token.clone(),
            user: name,
            auth_revision,
        });
        let header = self
            .propose(CoordCommand {
                op: Some(Op::Auth(AuthCommand { op: Some(issue) })),
                ..Default::default()
            })
            .await?;
        Ok(Response::new(AuthenticateResponse {
            header: Some(header),
            token,
        }))
    }

    async fn user_add(
        &self,
        request: Request<AuthUserAddRequest>,
    ) -> Result<Response<AuthUserAddResponse>, Status> {
        let r = request.get_ref();
        let no_password = r.options.as_ref().is_some_and(|o| o.no_password);
        let user = stored_user(r.name.clone(), &r.password, no_password);
        let header = self.change(&request, AuthOp::UserAdd(user)).await?;
        Ok(Response::new(AuthUserAddResponse {
            header: Some(header),
        }))
    }

    async fn user_get(
        &self,
        request: Request<AuthUserGetRequest>,
    ) -> Result<Response<AuthUserGetResponse>, Status> {
        let header = self.admin_read(&request).await?;
        let roles = self
            .ctx
            .state
            .lock()
            .auth
            .user(&request.get_ref().name)
            .map(|u| u.roles.clone())
            .ok_or(CoordError::UserNotFound)?;
        Ok(Response::new(AuthUserGetResponse {
            header: Some(header),
            roles,
        }))
    }

    async fn user_list(
        &self,
        request: Request<AuthUserListRequest>,
    ) -> Result<Response<AuthUserListResponse>, Status> {
        let header = self.admin_read(&request).await?;
        let users = self.ctx.state.lock().auth.user_names();
        Ok(Response::new(AuthUserListResponse {
            header: Some(header),
            users,
        }))
    }

    async fn user_delete(
        &self,
        request: Request<AuthUserDeleteRequest>,
    ) -> Result<Response<AuthUserDeleteResponse>, Status> {
        let op = AuthOp::UserDelete(request.get_ref().clone());
        let header = self.change(&request, op).await?;
        Ok(Response::new(AuthUserDeleteResponse {
            header: Some(header),
        }))
    }

    async fn user_change_password(
        &self,
        request: Request<AuthUserChangePasswordRequest>,
    ) -> Result<Response<AuthUserChangePasswordResponse>, Status> {
        let r = request.get_ref();
        let user = stored_user(r.name.clone(), &r.password, false);
        let header = self.change(&request, AuthOp::ChangePassword(user)).await?;
        Ok(Response::new(AuthUserChangePasswordResponse {
            header: Some(header),
        }))
    }

    async fn user_grant_role(
        &self,
        request: Request<AuthUserGrantRoleRequest>,
    ) -> Result<Response<AuthUserGrantRoleResponse>, Status> {
        let op = AuthOp::GrantRole(request.get_ref().clone());
        let header = self.change(&request, op).await?;
        Ok(Response::new(AuthUserGrantRoleResponse {
            header: Some(header),
        }))
    }

    async fn user_revoke_role(
        &self,
        request: Request<AuthUserRevokeRoleRequest>,
    ) -> Result<Response<AuthUserRevokeRoleResponse>, Status> {
        let op = AuthOp::RevokeRole(request.get_ref().clone());
        let header = self.change(&request, op).await?;
        Ok(Response::new(AuthUserRevokeRoleResponse {
            header: Some(header),
        }))
    }

    async fn role_add(
        &self,
        request: Request<AuthRoleAddRequest>,
    ) -> Result<Response<AuthRoleAddResponse>, Status> {
        let op = AuthOp::RoleAdd(request.get_ref().clone());
        let header = self.change(&request, op).await?;
        Ok(Response::new(AuthRoleAddResponse {
            header: Some(header),
        }))
    }

    async fn role_get(
        &self,
        request: Request<AuthRoleGetRequest>,
    ) -> Result<Response<AuthRoleGetResponse>, Status> {
        let header = self.admin_read(&request).await?;
        let perm = self
            .ctx
            .state
            .lock()
            .auth
            .role(&request.get_ref().role)
            .map(|r| r.key_permission.clone())
            .ok_or(CoordError::RoleNotFound)?;
        Ok(Response::new(AuthRoleGetResponse {
            header: Some(header),
            perm,
        }))
    }

    async fn role_list(
        &self,
        request: Request<AuthRoleListRequest>,
    ) -> Result<Response<AuthRoleListResponse>, Status> {
        let header = self.admin_read(&request).await?;
        let roles = self.ctx.state.lock().auth.role_names();
        Ok(Response::new(AuthRoleListResponse {
            header: Some(header),
            roles,
        }))
    }

    async fn role_delete(
        &self,
        request: Request<AuthRoleDeleteRequest>,
    ) -> Result<Response<AuthRoleDeleteResponse>, Status> {
        let op = AuthOp::RoleDelete(request.get_ref().clone());
        let header = self.change(&request, op).await?;
        Ok(Response::new(AuthRoleDeleteResponse {
            header: Some(header),
        }))
    }

    async fn role_grant_permission(
        &self,
        request: Request<AuthRoleGrantPermissionRequest>,
    ) -> Result<Response<AuthRoleGrantPermissionResponse>, Status> {
        let op = AuthOp::GrantPermission(request.get_ref().clone());
        let header = self.change(&request, op).await?;
        Ok(Response::new(AuthRoleGrantPermissionResponse {
            header: Some(header),
        }))
    }

    async fn role_revoke_permission(
        &self,
        request: Request<AuthRoleRevokePermissionRequest>,
    ) -> Result<Response<AuthRoleRevokePermissionResponse>, Status> {
        let op = AuthOp::RevokePermission(request.get_ref().clone());
        let header = self.change(&request, op).await?;
        Ok(Response::new(AuthRoleRevokePermissionResponse {
            header: Some(header),
        }))
    }
}
