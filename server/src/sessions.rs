//! tower-sessions' `SessionStore` over sea-orm, so sessions live in Hone's
//! own database and share its one connection pool.
//!
//! Only the SHA-256 of a session id is stored: someone who reads the
//! database (or a backup) cannot sign in with what they find there.

use crate::entity::session;
use sea_orm::{ColumnTrait, DatabaseConnection, EntityTrait, QueryFilter, Set};
use sha2::{Digest, Sha256};
use tower_sessions::session::{Id, Record};
use tower_sessions::session_store::{Error, Result, SessionStore};

#[derive(Clone, Debug)]
pub struct DbSessionStore {
    db: DatabaseConnection,
}

impl DbSessionStore {
    pub fn new(db: DatabaseConnection) -> Self {
        DbSessionStore { db }
    }

    /// Deletes expired sessions; the server runs this periodically.
    pub async fn delete_expired(&self) -> Result<u64> {
        let now = time::OffsetDateTime::now_utc().unix_timestamp();
        let res = session::Entity::delete_many()
            .filter(session::Column::ExpiresAt.lte(now))
            .exec(&self.db)
            .await
            .map_err(backend)?;
        Ok(res.rows_affected)
    }

    fn active_model(record: &Record) -> Result<session::ActiveModel> {
        let number = |k: &str| record.data.get(k).and_then(serde_json::Value::as_i64);
        Ok(session::ActiveModel {
            id: Set(key(&record.id)),
            data: Set(
                serde_json::to_string(&record.data).map_err(|e| Error::Encode(e.to_string()))?
            ),
            expires_at: Set(record.expiry_date.unix_timestamp()),
            user_id: Set(number(crate::accounts::USER_KEY)),
            created_at: Set(number(crate::accounts::SIGNED_IN_KEY)),
        })
    }
}

/// The stored key of a session id: its SHA-256, hex.
pub(crate) fn key(id: &Id) -> String {
    hex::encode(Sha256::digest(id.to_string().as_bytes()))
}

fn backend(e: sea_orm::DbErr) -> Error {
    Error::Backend(e.to_string())
}

#[async_trait::async_trait]
impl SessionStore for DbSessionStore {
    async fn create(&self, record: &mut Record) -> Result<()> {
        // A fresh random 128-bit id colliding is astronomically unlikely, but
        // never overwrite someone else's session if it happens.
        for _ in 0..8 {
            let exists = session::Entity::find_by_id(key(&record.id))
                .one(&self.db)
                .await
                .map_err(backend)?
                .is_some();
            if !exists {
                session::Entity::insert(Self::active_model(record)?)
                    .exec(&self.db)
                    .await
                    .map_err(backend)?;
                return Ok(());
            }
            record.id = Id::default();
        }
        Err(Error::Backend("could not find a free session id".into()))
    }

    /// Updates a session that exists; never recreates one. A session
    /// ended elsewhere (signed out from the account page, its password
    /// reset) while one of its requests was in flight stays ended when
    /// that request finishes.
    async fn save(&self, record: &Record) -> Result<()> {
        let mut m = Self::active_model(record)?;
        m.id = sea_orm::ActiveValue::NotSet;
        session::Entity::update_many()
            .set(m)
            .filter(session::Column::Id.eq(key(&record.id)))
            .exec(&self.db)
            .await
            .map_err(backend)?;
        Ok(())
    }

    async fn load(&self, id: &Id) -> Result<Option<Record>> {
        let now = time::OffsetDateTime::now_utc().unix_timestamp();
        let Some(row) = session::Entity::find_by_id(key(id))
            .filter(session::Column::ExpiresAt.gt(now))
            .one(&self.db)
            .await
            .map_err(backend)?
        else {
            return Ok(None);
        };
        let data = serde_json::from_str(&row.data).map_err(|e| Error::Decode(e.to_string()))?;
        let expiry_date = time::OffsetDateTime::from_unix_timestamp(row.expires_at)
            .map_err(|e| Error::Decode(e.to_string()))?;
        Ok(Some(Record {
            id: *id,
            data,
            expiry_date,
        }))
    }

    async fn delete(&self, id: &Id) -> Result<()> {
        session::Entity::delete_by_id(key(id))
            .exec(&self.db)
            .await
            .map_err(backend)?;
        Ok(())
    }
}
