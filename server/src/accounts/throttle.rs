//! Sign-in throttling: a not-before time per account name and per client
//! address, in the `login_throttle` table (so several web servers share
//! it). Each failure in a row doubles the wait, from 1 s to 15 minutes.
//!
//! An attempt *claims* its account's key before any password is checked:
//! one statement records it as a failure unless the key must still wait
//! (an upsert whose update only applies once the not-before time has
//! passed). Parallel guesses therefore count one by one — the first
//! claims, the rest are refused without a password check — and a correct
//! password then clears the key. The client's address is only checked
//! before (a wait is refused) and charged after a wrong password: people
//! behind one address do not hold each other up by signing in. Nobody is
//! locked out for longer than the current wait: there is no hard lock for
//! an attacker to keep an administrator out with.

use crate::error::Result;
use crate::state::Services;
use sea_orm::{ConnectionTrait, DbBackend, Statement};

/// The longest wait between attempts on one key.
pub const MAX_DELAY_MS: i64 = 15 * 60 * 1000;

/// Rows untouched this long are purged (their count restarts at 0).
pub const PURGE_AFTER_MS: i64 = 24 * 60 * 60 * 1000;

/// The throttle key of an account name (normalised, as stored), whether
/// or not such an account exists.
pub fn account_key(name: &str) -> String {
    format!("user:{name}")
}

/// The refusal of an attempt that came `wait_ms` too early (429 with
/// `Retry-After` in whole seconds).
pub fn too_early(wait_ms: i64) -> hone_app::api::AppError {
    hone_app::api::AppError::TooManyAttempts {
        seconds: (wait_ms + 999) / 1000,
    }
}

/// The wait after the `failures`-th failure in a row: 1 s, 2 s, 4 s, …,
/// at most 15 minutes.
pub fn delay_ms(failures: i32) -> i64 {
    let doublings = (failures.max(1) - 1).min(20) as u32;
    (1000_i64 << doublings).min(MAX_DELAY_MS)
}

/// The claim, as one statement. `$1` key, `$2` now (ms); the wait grows
/// with the failures before this one (`1000 << n`, capped), as
/// [`delay_ms`] says.
const CLAIM: &str = "INSERT INTO login_throttle (key, failures, not_before_ms, updated_ms) \
     VALUES ($1, 1, $2 + 1000, $2) \
     ON CONFLICT (key) DO UPDATE SET \
       failures = login_throttle.failures + 1, \
       not_before_ms = $2 + CASE WHEN login_throttle.failures >= 10 THEN 900000 \
                                  ELSE (1000 << login_throttle.failures) END, \
       updated_ms = $2 \
     WHERE login_throttle.not_before_ms <= $2 \
     RETURNING failures";

/// One more failure, whatever the wait (the client's address, after a
/// wrong password).
const CHARGE: &str = "INSERT INTO login_throttle (key, failures, not_before_ms, updated_ms) \
     VALUES ($1, 1, $2 + 1000, $2) \
     ON CONFLICT (key) DO UPDATE SET \
       failures = login_throttle.failures + 1, \
       not_before_ms = $2 + CASE WHEN login_throttle.failures >= 10 THEN 900000 \
                                  ELSE (1000 << login_throttle.failures) END, \
       updated_ms = $2";

fn statement(backend: DbBackend, sql: &str, values: Vec<sea_orm::Value>) -> Statement {
    // SQLite numbers its parameters `?1`, PostgreSQL `$1`.
    let sql = match backend {
        DbBackend::Sqlite => sql.replace('$', "?"),
        _ => sql.to_owned(),
    };
    Statement::from_sql_and_values(backend, sql, values)
}

/// This server's clock, Unix milliseconds (throttling is per server).
pub fn now_ms() -> i64 {
    (time::OffsetDateTime::now_utc().unix_timestamp_nanos() / 1_000_000) as i64
}

impl Services {
    /// Claims an attempt on `key`: `Ok(None)` when it may go ahead (it is
    /// recorded as a failure already), `Ok(Some(ms))` when it must wait
    /// that long first.
    pub(crate) async fn claim_attempt(&self, key: &str) -> Result<Option<i64>> {
        let backend = self.db.get_database_backend();
        let now = now_ms();
        let claimed = self
            .db
            .query_one_raw(statement(backend, CLAIM, vec![key.into(), now.into()]))
            .await?;
        if claimed.is_some() {
            return Ok(None);
        }
        Ok(Some(self.wait_for(key).await?.unwrap_or(1)))
    }

    /// How long `key` must still wait (ms), if at all.
    pub(crate) async fn wait_for(&self, key: &str) -> Result<Option<i64>> {
        let backend = self.db.get_database_backend();
        let row = self
            .db
            .query_one_raw(statement(
                backend,
                "SELECT not_before_ms FROM login_throttle WHERE key = $1",
                vec![key.into()],
            ))
            .await?;
        let Some(row) = row else { return Ok(None) };
        let not_before: i64 = row.try_get_by_index(0)?;
        let left = not_before - now_ms();
        Ok((left > 0).then_some(left))
    }

    /// Charges one failure to `key`.
    pub(crate) async fn charge_failure(&self, key: &str) -> Result<()> {
        let backend = self.db.get_database_backend();
        self.db
            .execute_raw(statement(
                backend,
                CHARGE,
                vec![key.into(), now_ms().into()],
            ))
            .await?;
        Ok(())
    }

    /// A correct password: the account's failures are forgiven.
    pub(crate) async fn clear_throttle(&self, key: &str) -> Result<()> {
        let backend = self.db.get_database_backend();
        self.db
            .execute_raw(statement(
                backend,
                "DELETE FROM login_throttle WHERE key = $1",
                vec![key.into()],
            ))
            .await?;
        Ok(())
    }

    /// Deletes rows untouched for a day (the sessions task runs this).
    pub async fn purge_throttle(&self) -> Result<u64> {
        let backend = self.db.get_database_backend();
        let res = self
            .db
            .execute_raw(statement(
                backend,
                "DELETE FROM login_throttle WHERE updated_ms < $1",
                vec![(now_ms() - PURGE_AFTER_MS).into()],
            ))
            .await?;
        Ok(res.rows_affected())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_wait_doubles_from_one_second_to_fifteen_minutes() {
        let waits: Vec<i64> = (1..=12).map(delay_ms).collect();
        assert_eq!(
            waits,
            [1000, 2000, 4000, 8000, 16000, 32000, 64000, 128000, 256000, 512000, 900000, 900000]
        );
        assert_eq!(delay_ms(i32::MAX), MAX_DELAY_MS);
        // The statement's CASE computes the same: `1000 << n` for the
        // failures before this one, capped from n = 10.
        for n in 0..12 {
            let sql = if n >= 10 { 900000 } else { 1000_i64 << n };
            assert_eq!(sql, delay_ms(n + 1));
        }
    }
}
