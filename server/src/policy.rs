//! Who may do what: Hone's authorisation rules as one plain function over
//! values, checked by every backend and route (never by the pages, which
//! only show what the server allows). The table test below is the rulebook;
//! ARCHITECTURE.md's matrix and `tests/server/authz.rs` follow it.
//!
//! Something owned by a team the person is not in is "not found", never
//! "forbidden", so its existence does not leak.

use hone_app::api::{AppError, Role};

/// What a person wants to do.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Action {
    /// See a project of their team: its files, datasets and jobs.
    Read,
    /// Create projects, upload files, save dataset versions.
    Write,
    /// Launch and cancel training jobs.
    Train,
    /// Rate a model version's answers and approve or reject it (never
    /// one's own: see [`may_decide_on`]).
    Review,
    /// Manage people, roles and teams (not scoped to a team).
    Administer,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Decision {
    Allow,
    Forbidden,
    NotFound,
}

/// May someone with `role` do `action` to something of a team they are
/// (`member`) or are not in? For [`Action::Administer`] membership does
/// not matter.
pub fn decide(role: Role, member: bool, action: Action) -> Decision {
    let writer = matches!(role, Role::Expert | Role::Admin);
    match action {
        Action::Administer if role == Role::Admin => Decision::Allow,
        Action::Administer => Decision::Forbidden,
        _ if !member => Decision::NotFound,
        Action::Read => Decision::Allow,
        Action::Write | Action::Train if writer => Decision::Allow,
        Action::Write | Action::Train => Decision::Forbidden,
        Action::Review if matches!(role, Role::Reviewer | Role::Admin) => Decision::Allow,
        Action::Review => Decision::Forbidden,
    }
}

/// Whether a person who may review (`Action::Review`) may rate and decide
/// on a version whose training job `launcher` started: nobody signs off
/// their own work.
pub fn may_decide_on(user_id: i64, launcher: i64) -> Result<(), AppError> {
    if user_id == launcher {
        return Err(AppError::Forbidden);
    }
    Ok(())
}

/// [`decide`] as a result: `what` names the thing in a "not found" message.
pub fn check(role: Role, member: bool, action: Action, what: &str) -> Result<(), AppError> {
    match decide(role, member, action) {
        Decision::Allow => Ok(()),
        Decision::Forbidden => Err(AppError::Forbidden),
        Decision::NotFound => Err(AppError::NotFound(what.to_owned())),
    }
}

/// Whether `role` may write in its own teams (pages show the forms then).
pub fn may(role: Role, action: Action) -> bool {
    decide(role, true, action) == Decision::Allow
}

#[cfg(test)]
mod tests {
    use super::*;
    use Decision::*;

    #[test]
    fn the_rulebook() {
        // (action, member?) → expert, reviewer, admin
        let table: [(Action, bool, [Decision; 3]); 10] = [
            (Action::Read, true, [Allow, Allow, Allow]),
            (Action::Read, false, [NotFound, NotFound, NotFound]),
            (Action::Write, true, [Allow, Forbidden, Allow]),
            (Action::Write, false, [NotFound, NotFound, NotFound]),
            (Action::Train, true, [Allow, Forbidden, Allow]),
            (Action::Train, false, [NotFound, NotFound, NotFound]),
            (Action::Review, true, [Forbidden, Allow, Allow]),
            (Action::Review, false, [NotFound, NotFound, NotFound]),
            (Action::Administer, true, [Forbidden, Forbidden, Allow]),
            (Action::Administer, false, [Forbidden, Forbidden, Allow]),
        ];
        for (action, member, want) in table {
            for (role, want) in Role::ALL.into_iter().zip(want) {
                assert_eq!(
                    decide(role, member, action),
                    want,
                    "{role:?} {action:?} member={member}"
                );
            }
        }
    }

    #[test]
    fn check_names_what_was_not_found() {
        assert_eq!(
            check(Role::Admin, false, Action::Read, "that project"),
            Err(AppError::NotFound("that project".into()))
        );
        assert_eq!(
            check(Role::Reviewer, true, Action::Train, "that project"),
            Err(AppError::Forbidden)
        );
    }
}
