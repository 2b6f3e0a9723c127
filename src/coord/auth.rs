//! The replicated auth store: users (salted password hashes), roles with key-range
//! permissions, whether auth is on, and the tokens `Authenticate` issued. Pure and
//! deterministic: salts and tokens are chosen by the member that proposes them and
//! reach every replica through the log.

use std::collections::{BTreeMap, VecDeque};

use sha2::{Digest, Sha256};

use super::errors::CoordError;
use crate::proto::authpb::{permission, Permission, Role};
use crate::proto::{auth_command::Op, AuthSnapshot, IssuedToken, StoredUser};

pub const ROOT: &str = "root";
/// Tokens kept; the oldest is forgotten first (its holder authenticates again).
const MAX_TOKENS: usize = 4096;
/// Hash rounds: makes offline guessing slower without slowing the simulator much.
const HASH_ROUNDS: usize = 1024;

/// The salted, iterated SHA-256 of a password, hex-encoded.
pub fn hash_password(password: &str, salt: &str) -> String {
    let mut digest = Sha256::new()
        .chain_update(salt.as_bytes())
        .chain_update(password.as_bytes())
        .finalize();
    for _ in 1..HASH_ROUNDS {
        digest = Sha256::new()
            .chain_update(salt.as_bytes())
            .chain_update(digest)
            .finalize();
    }
    digest.iter().map(|b| format!("{b:02x}")).collect()
}

/// What a request needs to be allowed.
#[derive(Debug, Clone, Copy)]
pub enum Access<'a> {
    Read {
        key: &'a [u8],
        range_end: &'a [u8],
    },
    Write {
        key: &'a [u8],
        range_end: &'a [u8],
    },
    /// User and role management, auth enable/disable, compaction.
    Admin,
}

#[derive(Debug, Clone, Default, PartialEq)]
pub struct AuthStore {
    enabled: bool,
    revision: u64,
    users: BTreeMap<String, StoredUser>,
    roles: BTreeMap<String, Role>,
    tokens: BTreeMap<String, IssuedToken>,
    token_order: VecDeque<String>,
}

impl AuthStore {
    pub fn enabled(&self) -> bool {
        self.enabled
    }

    pub fn revision(&self) -> u64 {
        self.revision
    }

    pub fn user(&self, name: &str) -> Option<&StoredUser> {
        self.users.get(name)
    }

    pub fn user_names(&self) -> Vec<String> {
        self.users.keys().cloned().collect()
    }

    pub fn role(&self, name: &str) -> Option<&Role> {
        self.roles.get(name)
    }

    pub fn role_names(&self) -> Vec<String> {
        self.roles.keys().cloned().collect()
    }

    /// Whether `password` is `name`'s.
    pub fn check_password(&self, name: &str, password: &str) -> bool {
        self.users
            .get(name)
            .is_some_and(|u| !u.no_password && hash_password(password, &u.salt) == u.password_hash)
    }

    /// The user a token authenticates, if it is still valid.
    pub fn user_of_token(&self, token: &str) -> Option<&str> {
        let t = self.tokens.get(token)?;
        self.users.contains_key(&t.user).then_some(t.user.as_str())
    }

    /// Whether `user` may do `access` (auth off: everyone may).
    pub fn permits(&self, user: &str, access: Access<'_>) -> bool {
        if !self.enabled {
            return true;
        }
        let Some(u) = self.users.get(user) else {
            return false;
        };
        if u.roles.iter().any(|r| r == ROOT) {
            return true;
        }
        let (key, range_end, write) = match access {
            Access::Admin => return false,
            Access::Read { key, range_end } => (key, range_end, false),
            Access::Write { key, range_end } => (key, range_end, true),
        };
        u.roles
            .iter()
            .filter_map(|r| self.roles.get(r))
            .flat_map(|r| r.key_permission.iter())
            .any(|p| grants(p, key, range_end, write))
    }

    /// Applies a replicated auth change.
    pub fn apply(&mut self, op: Op) -> Result<(), CoordError> {
        match op {
            Op::Enable(_) => {
                let root = self.users.get(ROOT).ok_or(CoordError::RootUserNotExist)?;
                if !root.roles.iter().any(|r| r == ROOT) {
                    return Err(CoordError::RootRoleNotExist);
                }
                self.enabled = true;
            }
            Op::Disable(_) => self.enabled = false,
            Op::UserAdd(u) => {
                if u.name.is_empty() {
                    return Err(CoordError::UserEmpty);
                }
                if self.users.contains_key(&u.name) {
                    return Err(CoordError::UserAlreadyExist);
                }
                self.users.insert(u.name.clone(), u);
            }
            Op::UserDelete(d) => {
                if self.enabled && d.name == ROOT {
                    return Err(CoordError::InvalidAuthMgmt);
                }
                self.users.remove(&d.name).ok_or(CoordError::UserNotFound)?;
            }
            Op::ChangePassword(u) => {
                let user = self
                    .users
                    .get_mut(&u.name)
                    .ok_or(CoordError::UserNotFound)?;
                user.password_hash = u.password_hash;
                user.salt = u.salt;
                user.no_password = u.no_password;
                let name = u.name;
                self.tokens.retain(|_, t| t.user != name);
            }
            Op::GrantRole(g) => {
                // etcd looks for the user first, then the role.
                let user = self
                    .users
                    .get_mut(&g.user)
                    .ok_or(CoordError::UserNotFound)?;
                if g.role != ROOT && !self.roles.contains_key(&g.role) {
                    return Err(CoordError::RoleNotFound);
                }
                if !user.roles.contains(&g.role) {
                    user.roles.push(g.role);
                    user.roles.sort();
                }
            }
            Op::RevokeRole(r) => {
                if self.enabled && r.name == ROOT && r.role == ROOT {
                    return Err(CoordError::InvalidAuthMgmt);
                }
                let user = self
                    .users
                    .get_mut(&r.name)
                    .ok_or(CoordError::UserNotFound)?;
                let before = user.roles.len();
                user.roles.retain(|x| *x != r.role);
                if user.roles.len() == before {
                    return Err(CoordError::RoleNotGranted);
                }
            }
            Op::RoleAdd(r) => {
                if r.name.is_empty() {
                    return Err(CoordError::RoleEmpty);
                }
                if self.roles.contains_key(&r.name) {
                    return Err(CoordError::RoleAlreadyExist);
                }
                self.roles.insert(
                    r.name.clone(),
                    Role {
                        name: r.name.into_bytes(),
                        key_permission: Vec::new(),
                    },
                );
            }
            Op::RoleDelete(r) => {
                if self.enabled && r.role == ROOT {
                    return Err(CoordError::InvalidAuthMgmt);
                }
                self.roles.remove(&r.role).ok_or(CoordError::RoleNotFound)?;
                for u in self.users.values_mut() {
                    u.roles.retain(|x| *x != r.role);
                }
            }
            Op::GrantPermission(g) => {
                let perm = g.perm.ok_or(CoordError::PermissionNotGiven)?;
                let role = self
                    .roles
                    .get_mut(&g.name)
                    .ok_or(CoordError::RoleNotFound)?;
                role.key_permission
                    .retain(|p| !(p.key == perm.key && p.range_end == perm.range_end));
                role.key_permission.push(perm);
                role.key_permission
                    .sort_by(|a, b| (&a.key, &a.range_end).cmp(&(&b.key, &b.range_end)));
            }
            Op::RevokePermission(r) => {
                let role = self
                    .roles
                    .get_mut(&r.role)
                    .ok_or(CoordError::RoleNotFound)?;
                let before = role.key_permission.len();
                role.key_permission
                    .retain(|p| !(p.key == r.key && p.range_end == r.range_end));
                if role.key_permission.len() == before {
                    return Err(CoordError::PermissionNotGranted);
                }
            }
            Op::IssueToken(t) => {
                if !self.users.contains_key(&t.user) {
                    return Err(CoordError::AuthFailed);
                }
                self.token_order.push_back(t.token.clone());
                self.tokens.insert(t.token.clone(), t);
                while self.token_order.len() > MAX_TOKENS {
                    if let Some(old) = self.token_order.pop_front() {
                        self.tokens.remove(&old);
                    }
                }
                // Issuing a token is not an auth change: no revision bump.
                return Ok(());
            }
        }
        self.revision += 1;
        Ok(())
    }

    pub fn snapshot(&self) -> AuthSnapshot {
        AuthSnapshot {
            enabled: self.enabled,
            revision: self.revision,
            users: self.users.values().cloned().collect(),
            roles: self.roles.values().cloned().collect(),
            tokens: self
                .token_order
                .iter()
                .filter_map(|t| self.tokens.get(t).cloned())
                .collect(),
        }
    }

    pub fn restore(snap: AuthSnapshot) -> Self {
        let mut store = AuthStore {
            enabled: snap.enabled,
            revision: snap.revision,
            users: snap
                .users
                .into_iter()
                .map(|u| (u.name.clone(), u))
                .collect(),
            roles: snap
                .roles
                .into_iter()
                .map(|r| (String::from_utf8_lossy(&r.name).into_owned(), r))
                .collect(),
            ..Default::default()
        };
        for t in snap.tokens {
            store.token_order.push_back(t.token.clone());
            store.tokens.insert(t.token.clone(), t);
        }
        store
    }
}

/// Whether permission `p` covers `[key, range_end)` for a read or a write.
fn grants(p: &Permission, key: &[u8], range_end: &[u8], write: bool) -> bool {
    let kind_ok = match permission::Type::try_from(p.perm_type) {
        Ok(permission::Type::Readwrite) => true,
        Ok(permission::Type::Write) => write,
        Ok(permission::Type::Read) => !write,
        Err(_) => false,
    };
    if !kind_ok {
        return false;
    }
    if p.range_end.is_empty() {
        return range_end.is_empty() && p.key == key;
    }
    let upper_ok = |end: &[u8]| p.range_end == [0] || (!end.is_empty() && end <= &p.range_end[..]);
    if range_end.is_empty() {
        // One key: inside [p.key, p.range_end).
        key >= &p.key[..] && (p.range_end == [0] || key < &p.range_end[..])
    } else if range_end == [0] {
        key >= &p.key[..] && p.range_end == [0]
    } else {
        key >= &p.key[..] && upper_ok(range_end)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::proto::etcdserverpb as pb;

    fn user(name: &str, password: &str) -> Op {
        Op::UserAdd(StoredUser {
            name: name.into(),
            password_hash: hash_password(password, "salt"),
            salt: "salt".into(),
            ..Default::default()
        })
    }

    #[test]
    fn enable_needs_root_with_root_role() {
        let mut a = AuthStore::default();
        assert_eq!(
            a.apply(Op::Enable(pb::AuthEnableRequest {})),
            Err(CoordError::RootUserNotExist)
        );
        a.apply(user(ROOT, "pw")).unwrap();
        assert_eq!(
            a.apply(Op::Enable(pb::AuthEnableRequest {})),
            Err(CoordError::RootRoleNotExist)
        );
        a.apply(Op::RoleAdd(pb::AuthRoleAddRequest { name: ROOT.into() }))
            .unwrap();
        a.apply(Op::GrantRole(pb::AuthUserGrantRoleRequest {
            user: ROOT.into(),
            role: ROOT.into(),
        }))
        .unwrap();
        a.apply(Op::Enable(pb::AuthEnableRequest {})).unwrap();
        assert!(a.enabled());
        assert!(a.check_password(ROOT, "pw"));
        assert!(!a.check_password(ROOT, "wrong"));
        assert!(a.permits(ROOT, Access::Admin));
    }

    #[test]
    fn granting_a_role_looks_for_the_user_first() {
        // `etcdctl user grant-role nobody nosuch`: etcd says the user is missing.
        let mut a = AuthStore::default();
        let grant = |user: &str, role: &str| {
            Op::GrantRole(pb::AuthUserGrantRoleRequest {
                user: user.into(),
                role: role.into(),
            })
        };
        assert_eq!(
            a.apply(grant("nobody", "nosuch")),
            Err(CoordError::UserNotFound)
        );
        a.apply(user("u", "p")).unwrap();
        assert_eq!(a.apply(grant("u", "nosuch")), Err(CoordError::RoleNotFound));
    }

    #[test]
    fn permissions_cover_key_ranges() {
        let mut a = AuthStore::default();
        a.apply(user(ROOT, "r")).unwrap();
        a.apply(Op::RoleAdd(pb::AuthRoleAddRequest { name: ROOT.into() }))
            .unwrap();
        a.apply(Op::GrantRole(pb::AuthUserGrantRoleRequest {
            user: ROOT.into(),
            role: ROOT.into(),
        }))
        .unwrap();
        a.apply(user("app", "a")).unwrap();
        a.apply(Op::RoleAdd(pb::AuthRoleAddRequest { name: "cfg".into() }))
            .unwrap();
        a.apply(Op::GrantPermission(pb::AuthRoleGrantPermissionRequest {
            name: "cfg".into(),
            perm: Some(Permission {
                perm_type: permission::Type::Read as i32,
                key: b"cfg/".to_vec(),
                range_end: b"cfg0".to_vec(),
            }),
        }))
        .unwrap();
        a.apply(Op::GrantRole(pb::AuthUserGrantRoleRequest {
            user: "app".into(),
            role: "cfg".into(),
        }))
        .unwrap();
        a.apply(Op::Enable(pb::AuthEnableRequest {})).unwrap();
        let read = |key: &'static [u8], range_end: &'static [u8]| Access::Read { key, range_end };
        assert!(a.permits("app", read(b"cfg/x", b"")));
        assert!(a.permits("app", read(b"cfg/", b"cfg0")));
        assert!(!a.permits("app", read(b"other", b"")));
        assert!(!a.permits("app", read(b"cfg/", &[0])));
        assert!(!a.permits(
            "app",
            Access::Write {
                key: b"cfg/x",
                range_end: b""
            }
        ));
        assert!(!a.permits("app", Access::Admin));
        assert_eq!(
            a.apply(Op::UserDelete(pb::AuthUserDeleteRequest {
                name: ROOT.into()
            })),
            Err(CoordError::InvalidAuthMgmt)
        );
    }

    #[test]
    fn tokens_die_with_password_changes_and_survive_snapshots() {
        let mut a = AuthStore::default();
        a.apply(user("u", "p")).unwrap();
        a.apply(Op::IssueToken(IssuedToken {
            token: "t1".into(),
            user: "u".into(),
            auth_revision: 1,
        }))
        .unwrap();
        assert_eq!(a.user_of_token("t1"), Some("u"));
        let copy = AuthStore::restore(a.snapshot());
        assert_eq!(copy, a);
        a.apply(Op::ChangePassword(StoredUser {
            name: "u".into(),
            password_hash: hash_password("q", "s2"),
            salt: "s2".into(),
            ..Default::default()
        }))
        .unwrap();
        assert_eq!(a.user_of_token("t1"), None);
        assert!(a.check_password("u", "q"));
    }
}
