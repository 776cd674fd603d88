//! The `audit_log` table: append-only (the database refuses updates and
//! deletes); written by [`crate::audit`].

use sea_orm::entity::prelude::*;

#[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
#[sea_orm(table_name = "audit_log")]
pub struct Model {
    #[sea_orm(primary_key)]
    pub id: i64,
    pub at: i64,
    pub actor_id: Option<i64>,
    pub actor: String,
    pub action: AuditAction,
    pub target_kind: String,
    pub target_id: Option<i64>,
    pub target: String,
    #[sea_orm(column_type = "Text")]
    pub detail: String,
}

/// What was done. Stored as its name; an unknown name read back is an
/// error, never a silent default.
#[derive(Clone, Copy, Debug, PartialEq, Eq, EnumIter, DeriveActiveEnum)]
#[sea_orm(rs_type = "String", db_type = "String(StringLen::None)")]
pub enum AuditAction {
    #[sea_orm(string_value = "instance_set_up")]
    InstanceSetUp,
    #[sea_orm(string_value = "user_created")]
    UserCreated,
    #[sea_orm(string_value = "team_created")]
    TeamCreated,
    #[sea_orm(string_value = "role_changed")]
    RoleChanged,
    #[sea_orm(string_value = "membership_added")]
    MembershipAdded,
    #[sea_orm(string_value = "membership_removed")]
    MembershipRemoved,
    #[sea_orm(string_value = "account_disabled")]
    AccountDisabled,
    #[sea_orm(string_value = "account_enabled")]
    AccountEnabled,
    #[sea_orm(string_value = "password_changed")]
    PasswordChanged,
    #[sea_orm(string_value = "password_reset")]
    PasswordReset,
    #[sea_orm(string_value = "session_revoked")]
    SessionRevoked,
    #[sea_orm(string_value = "api_key_created")]
    ApiKeyCreated,
    #[sea_orm(string_value = "api_key_revoked")]
    ApiKeyRevoked,
    #[sea_orm(string_value = "quota_changed")]
    QuotaChanged,
    #[sea_orm(string_value = "device_weight_changed")]
    DeviceWeightChanged,
    #[sea_orm(string_value = "priority_changed")]
    PriorityChanged,
    #[sea_orm(string_value = "job_paused")]
    JobPaused,
    #[sea_orm(string_value = "job_resumed")]
    JobResumed,
    #[sea_orm(string_value = "job_cancelled")]
    JobCancelled,
    #[sea_orm(string_value = "version_rated")]
    VersionRated,
    #[sea_orm(string_value = "version_approved")]
    VersionApproved,
    #[sea_orm(string_value = "version_rejected")]
    VersionRejected,
    #[sea_orm(string_value = "model_downloaded")]
    ModelDownloaded,
    #[sea_orm(string_value = "dataset_deleted")]
    DatasetDeleted,
    #[sea_orm(string_value = "job_deleted")]
    JobDeleted,
    #[sea_orm(string_value = "version_deleted")]
    VersionDeleted,
    #[sea_orm(string_value = "project_deleted")]
    ProjectDeleted,
    #[sea_orm(string_value = "storage_purged")]
    StoragePurged,
}

impl AuditAction {
    /// Every action's stored name, for the audit page's filter.
    pub fn names() -> Vec<String> {
        use sea_orm::{ActiveEnum, Iterable};
        AuditAction::iter().map(|a| a.to_value()).collect()
    }
}

#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

impl ActiveModelBehavior for ActiveModel {}
