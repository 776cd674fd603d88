//! API keys at the door: making one (shown once, stored as a hash) and
//! recognising one on a request (`Authorization: Bearer …`).
//!
//! A key is 256 random bits, so SHA-256 is enough to store it: there is
//! no dictionary to guess from, and a slow password hash on every API
//! request would cost ~19 MiB and tens of milliseconds each.

use super::error::ApiError;
use crate::entity::{api_key, project, user};
use crate::state::{now, Services};
use axum::extract::{FromRef, FromRequestParts};
use axum::http::header;
use rand::RngCore;
use sea_orm::sea_query::Expr;
use sea_orm::{ColumnTrait, Condition, EntityTrait, QueryFilter};
use sha2::{Digest, Sha256};
use std::sync::Arc;

/// What every key starts with (OpenAI's keys start `sk-` too).
pub const KEY_PREFIX: &str = "sk-hone-";

/// How many characters of a key are kept to tell keys apart.
const SHOWN: usize = KEY_PREFIX.len() + 6;

/// `last_used_at` is written at most this often per key (seconds), so a
/// busy script does not turn every read into a write.
const LAST_USED_EVERY: i64 = 60;

/// A new key: the secret (shown once), what is stored of it.
pub struct NewSecret {
    pub key: String,
    pub prefix: String,
    pub hash: String,
}

pub fn new_secret() -> NewSecret {
    let mut bytes = [0u8; 32];
    rand::rngs::OsRng.fill_bytes(&mut bytes);
    let key = format!("{KEY_PREFIX}{}", hex::encode(bytes));
    NewSecret {
        prefix: key[..SHOWN].to_owned(),
        hash: hash(&key),
        key,
    }
}

/// The stored form of a key.
pub fn hash(key: &str) -> String {
    hex::encode(Sha256::digest(key.as_bytes()))
}

/// The caller of an API request: a live key, its owner (not disabled) and
/// the key's project. Authorisation in the project is still checked per
/// action ([`crate::policy`]), with the owner's role and teams as they are
/// now.
#[derive(Clone, Debug)]
pub struct ApiCaller {
    pub key: api_key::Model,
    pub user: user::Model,
    pub project: project::Model,
}

impl<S> FromRequestParts<S> for ApiCaller
where
    S: Send + Sync,
    Arc<Services>: FromRef<S>,
{
    type Rejection = ApiError;

    async fn from_request_parts(
        parts: &mut axum::http::request::Parts,
        state: &S,
    ) -> Result<Self, Self::Rejection> {
        let s = Arc::<Services>::from_ref(state);
        let given = parts
            .headers
            .get(header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.strip_prefix("Bearer "))
            .map(str::trim)
            .ok_or_else(|| {
                ApiError::unauthenticated(
                    "You didn't provide an API key. Send it as `Authorization: Bearer sk-hone-…`; an API key is made on Hone's API keys page.",
                )
            })?;
        s.caller(given).await
    }
}

impl Services {
    /// The caller a key stands for; every refusal is the same 401, so a
    /// revoked key and a made-up one look alike.
    pub async fn caller(&self, given: &str) -> Result<ApiCaller, ApiError> {
        let refuse = || {
            ApiError::unauthenticated(
                "Incorrect API key provided. Make a new one on Hone's API keys page.",
            )
        };
        if !given.starts_with(KEY_PREFIX) || given.len() > 200 {
            return Err(refuse());
        }
        let key = api_key::Entity::find()
            .filter(api_key::Column::SecretHash.eq(hash(given)))
            .filter(api_key::Column::RevokedAt.is_null())
            .one(&self.db)
            .await
            .map_err(ApiError::from_internal)?
            .ok_or_else(refuse)?;
        let user = user::Entity::find_by_id(key.user_id)
            .one(&self.db)
            .await
            .map_err(ApiError::from_internal)?
            .filter(|u| u.disabled_at.is_none())
            .ok_or_else(refuse)?;
        let project = project::Entity::find_by_id(key.project_id)
            .one(&self.db)
            .await
            .map_err(ApiError::from_internal)?
            .filter(|p| p.deleted_at.is_none())
            .ok_or_else(refuse)?;
        let t = now();
        if key.last_used_at.is_none_or(|at| at < t - LAST_USED_EVERY) {
            api_key::Entity::update_many()
                .col_expr(api_key::Column::LastUsedAt, Expr::value(t))
                .filter(api_key::Column::Id.eq(key.id))
                .filter(
                    Condition::any()
                        .add(api_key::Column::LastUsedAt.is_null())
                        .add(api_key::Column::LastUsedAt.lt(t - LAST_USED_EVERY)),
                )
                .exec(&self.db)
                .await
                .map_err(ApiError::from_internal)?;
        }
        Ok(ApiCaller { key, user, project })
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn keys_are_random_and_stored_only_as_their_hash() {
        let a = super::new_secret();
        let b = super::new_secret();
        assert_ne!(a.key, b.key);
        assert!(a.key.starts_with(super::KEY_PREFIX) && a.key.len() == 8 + 64);
        assert!(a.key.starts_with(&a.prefix) && a.prefix.len() < 20);
        assert_eq!(a.hash, super::hash(&a.key));
        assert!(!a.hash.contains(&a.key[8..]));
    }
}
