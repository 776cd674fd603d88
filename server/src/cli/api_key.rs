//! `hone api-key create`: a key for headless setups (a CI runner, a
//! notebook server), made exactly as the settings page makes one.

use crate::entity::user;
use crate::error::Error;
use crate::state::Services;
use anyhow::{bail, Context};
use hone_app::api::AppError;
use sea_orm::{ColumnTrait, EntityTrait, QueryFilter};

/// Makes a key named `name` for the user `username` in project
/// `project_id`, and returns its value (to be printed once, by the caller).
pub async fn create(
    services: &Services,
    username: &str,
    project_id: i64,
    name: &str,
) -> anyhow::Result<String> {
    let wanted = username.trim().to_lowercase();
    let Some(u) = user::Entity::find()
        .filter(user::Column::Username.eq(wanted.as_str()))
        .one(&services.db)
        .await
        .context("looking up the user")?
    else {
        bail!("there is no user named {username:?} (`hone user create` makes one)");
    };
    if u.disabled_at.is_some() {
        bail!(
            "the account {} is disabled: an administrator must enable it on the admin page first",
            u.username
        );
    }
    match services.create_key(&u, project_id, name).await {
        Ok((_, value)) => Ok(value),
        Err(Error::App(AppError::NotFound(_))) => bail!(
            "project {project_id} does not exist or is not in one of {}'s teams",
            u.username
        ),
        Err(Error::App(e)) => bail!("{e}"),
        Err(e) => Err(anyhow::Error::new(e).context("creating the key")),
    }
}
