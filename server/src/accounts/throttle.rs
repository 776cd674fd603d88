//! Sign-in throttling: failures counted per account name and per client
//! address in the `login_throttle` table (so several web servers share
//! it); the arithmetic is plain functions over values.

use crate::entity::login_throttle;
use crate::error::Result;
use crate::state::{now, Services};
use sea_orm::sea_query::OnConflict;
use sea_orm::{EntityTrait, Set};

/// Failed sign-ins allowed per account name within one window…
pub const ACCOUNT_FAILURES: i32 = 5;
/// …and per client address (several people may share one address).
pub const IP_FAILURES: i32 = 20;
/// The window, in seconds.
pub const WINDOW_SECS: i64 = 15 * 60;

/// Throttle state for one key: failures counted since `window_start`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Throttle {
    pub failures: i32,
    pub window_start: i64,
}

impl Throttle {
    /// `Some(minutes to wait)` when this key is locked at `now`.
    pub fn locked(self, limit: i32, now: i64) -> Option<i64> {
        let ends = self.window_start + WINDOW_SECS;
        (self.failures >= limit && now < ends).then(|| ((ends - now) + 59) / 60)
    }

    /// The state after one more failure at `now` (a new window once the old one is over).
    pub fn after_failure(state: Option<Throttle>, now: i64) -> Throttle {
        match state {
            Some(t) if now < t.window_start + WINDOW_SECS => Throttle {
                failures: t.failures + 1,
                ..t
            },
            _ => Throttle {
                failures: 1,
                window_start: now,
            },
        }
    }
}

impl Services {
    /// Records one failed sign-in against each key.
    pub(crate) async fn record_failure(&self, keys: &[String]) -> Result<()> {
        let t = now();
        for key in keys {
            let old = login_throttle::Entity::find_by_id(key.clone())
                .one(&self.db)
                .await?
                .map(|r| Throttle {
                    failures: r.failures,
                    window_start: r.window_start,
                });
            let next = Throttle::after_failure(old, t);
            login_throttle::Entity::insert(login_throttle::ActiveModel {
                key: Set(key.clone()),
                failures: Set(next.failures),
                window_start: Set(next.window_start),
            })
            .on_conflict(
                OnConflict::column(login_throttle::Column::Key)
                    .update_columns([
                        login_throttle::Column::Failures,
                        login_throttle::Column::WindowStart,
                    ])
                    .to_owned(),
            )
            .exec(&self.db)
            .await?;
        }
        Ok(())
    }

    /// `Some(minutes to wait)` while `key` is locked.
    pub(crate) async fn locked_for(&self, key: &str, limit: i32) -> Result<Option<i64>> {
        Ok(login_throttle::Entity::find_by_id(key.to_owned())
            .one(&self.db)
            .await?
            .and_then(|r| {
                Throttle {
                    failures: r.failures,
                    window_start: r.window_start,
                }
                .locked(limit, now())
            }))
    }

    pub(crate) async fn clear_throttle(&self, key: String) -> Result<()> {
        login_throttle::Entity::delete_by_id(key)
            .exec(&self.db)
            .await?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn throttle_locks_after_the_limit_and_reopens_after_the_window() {
        let mut t = None;
        for i in 0..ACCOUNT_FAILURES {
            let next = Throttle::after_failure(t, 1000 + i64::from(i));
            t = Some(next);
        }
        let t = t.unwrap();
        assert_eq!(t.failures, ACCOUNT_FAILURES);
        assert_eq!(t.locked(ACCOUNT_FAILURES, 1010), Some(15));
        assert_eq!(t.locked(ACCOUNT_FAILURES, 1000 + WINDOW_SECS), None);
        assert_eq!(
            Throttle::after_failure(Some(t), 1000 + WINDOW_SECS).failures,
            1
        );
    }
}
