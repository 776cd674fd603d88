//! The `ratings` table: a reviewer's blind A/B choice on one test example
//! of a model version, with the order the answers were shown in.

use sea_orm::entity::prelude::*;

#[derive(Clone, Debug, PartialEq, DeriveEntityModel)]
#[sea_orm(table_name = "ratings")]
pub struct Model {
    #[sea_orm(primary_key)]
    pub id: i64,
    pub version_id: i64,
    pub reviewer_id: i64,
    /// The example's line in the test split.
    pub line: i32,
    /// The tuned model's answer was shown as A.
    pub tuned_first: bool,
    pub choice: Choice,
    #[sea_orm(column_type = "Text", nullable)]
    pub comment: Option<String>,
    pub created_at: i64,
    pub updated_at: i64,
}

/// What the reviewer chose, in the shown order's terms.
#[derive(Clone, Copy, Debug, PartialEq, Eq, EnumIter, DeriveActiveEnum)]
#[sea_orm(rs_type = "String", db_type = "String(StringLen::None)")]
pub enum Choice {
    #[sea_orm(string_value = "a")]
    A,
    #[sea_orm(string_value = "b")]
    B,
    #[sea_orm(string_value = "tie")]
    Tie,
    #[sea_orm(string_value = "both_bad")]
    BothBad,
}

#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

impl ActiveModelBehavior for ActiveModel {}
