//! The `users` table.

use sea_orm::entity::prelude::*;

#[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
#[sea_orm(table_name = "users")]
pub struct Model {
    #[sea_orm(primary_key)]
    pub id: i64,
    #[sea_orm(unique)]
    pub username: String,
    pub password_hash: String,
    pub role: StoredRole,
    pub created_at: i64,
    /// Set when an admin disabled the account: no sign-in, no session,
    /// no API key works from then on.
    pub disabled_at: Option<i64>,
}

/// A role as stored: an unknown value in the database is an error when
/// read, never a silent default.
#[derive(Clone, Copy, Debug, PartialEq, Eq, EnumIter, DeriveActiveEnum)]
#[sea_orm(rs_type = "String", db_type = "String(StringLen::None)")]
pub enum StoredRole {
    #[sea_orm(string_value = "expert")]
    Expert,
    #[sea_orm(string_value = "reviewer")]
    Reviewer,
    #[sea_orm(string_value = "admin")]
    Admin,
}

impl From<StoredRole> for hone_app::api::Role {
    fn from(r: StoredRole) -> Self {
        match r {
            StoredRole::Expert => hone_app::api::Role::Expert,
            StoredRole::Reviewer => hone_app::api::Role::Reviewer,
            StoredRole::Admin => hone_app::api::Role::Admin,
        }
    }
}

impl From<hone_app::api::Role> for StoredRole {
    fn from(r: hone_app::api::Role) -> Self {
        match r {
            hone_app::api::Role::Expert => StoredRole::Expert,
            hone_app::api::Role::Reviewer => StoredRole::Reviewer,
            hone_app::api::Role::Admin => StoredRole::Admin,
        }
    }
}

#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

impl ActiveModelBehavior for ActiveModel {}
